#!/usr/bin/env bash
# Checks the Windows build of codex-oss (x86_64-pc-windows-gnu) on Linux, so the
# cfg(windows) code (job objects, console events) cannot rot unseen between releases:
# type-checks the whole program, then builds its unit tests and runs them under wine
# (among them the platform ones: the server's job object, stopping process trees, exit
# codes; and unpacking, settings and paths as Windows has them).
# There is no Windows standard library for rustup's toolchain here, so it uses Debian's
# toolchain (rustc-web, cargo-web, rust-web-src) and rebuilds std for the target from
# its sources with -Z build-std (RUSTC_BOOTSTRAP=1 unlocks that on a stable compiler).
# Payloads are skipped (nothing is downloaded) and the target directory is a cache
# reused between runs, apart from the project's target/. Debian packages:
#   rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64-posix wine64
#   (scripts/install-test-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's toolchain, named explicitly: ~/.cargo/bin (rustup) comes first on PATH.
DEBIAN_CARGO="${DEBIAN_CARGO:-/usr/bin/cargo}"
DEBIAN_RUSTC="${DEBIAN_RUSTC:-/usr/bin/rustc}"
MINGW_GCC="${MINGW_GCC:-/usr/bin/x86_64-w64-mingw32-gcc}"
WINE="${WINE:-/usr/lib/wine/wine64}"
TARGET=x86_64-pc-windows-gnu

missing() {
  echo "error: $1" >&2
  echo "  the Windows check needs the Debian packages rustc-web cargo-web rust-web-src" >&2
  echo "  gcc-mingw-w64-x86-64-posix wine64: run scripts/install-test-deps.sh (or apt-get install them)" >&2
  exit 1
}
[ -x "$DEBIAN_CARGO" ] || missing "no Debian cargo at $DEBIAN_CARGO"
[ -x "$DEBIAN_RUSTC" ] || missing "no Debian rustc at $DEBIAN_RUSTC"
[ -x "$MINGW_GCC" ] || missing "no MinGW C compiler at $MINGW_GCC"
[ -x "$WINE" ] || missing "no wine at $WINE"
sysroot="$("$DEBIAN_RUSTC" --print sysroot)" || missing "$DEBIAN_RUSTC does not run"
[ -f "$sysroot/lib/rustlib/src/rust/library/Cargo.lock" ] ||
  missing "no standard library sources under $sysroot/lib/rustlib/src/rust/library (rust-web-src)"

cache="${CODEX_OSS_TEST_CACHE:-$HOME/.cache/codex-oss-test}"
export CARGO_TARGET_DIR="$cache/windows-target"
export RUSTC="$DEBIAN_RUSTC"
export RUSTDOC="${DEBIAN_RUSTDOC:-$(dirname "$DEBIAN_RUSTC")/rustdoc}"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER="$MINGW_GCC"
export SKIP_OLLAMA_DOWNLOAD=1 SKIP_CODEX_DOWNLOAD=1
# Nothing routes the compiler through rustup or a wrapper, and the build script sees the
# same environment whether this runs alone or from scripts/test.sh (no needless reruns).
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET \
  CODEX_OSS_OLLAMA_ARCHIVE CODEX_OSS_CODEX_ARCHIVE \
  CODEX_OSS_OLLAMA_ARCHIVE_VERSION CODEX_OSS_CODEX_ARCHIVE_VERSION \
  CODEX_OSS_PAYLOAD_MIRROR CODEX_OSS_DOWNLOAD_CACHE CODEX_OSS_ZSTD_LEVEL CODEX_OSS_KEEP_GPU_LIBS

echo "checking the $TARGET build with $("$DEBIAN_CARGO" --version) and $("$RUSTC" --version)" >&2
# Warnings fail the check as clippy's -D warnings does on Linux (RUSTFLAGS would also
# apply to the standard library and rebuild it: read cargo's report instead).
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$DEBIAN_CARGO" check --locked -Z build-std=std,panic_abort --target "$TARGET" --bin codex-oss 2>&1 | tee "$log" >&2
if grep -q '^warning: `codex-oss`' "$log"; then
  echo "error: the Windows build has warnings (above)" >&2
  exit 1
fi

# The unit tests, run by wine in a prefix of their own (made once, kept in the cache).
export WINEPREFIX="$cache/wine-prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY
trap 'rm -f "$log"; "$(dirname "$WINE")/wineserver" -k 2>/dev/null || true' EXIT
shim="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if ! [ -f "$shim" ] || [ tests/windows/bcryptprimitives.c -nt "$shim" ]; then
  echo "preparing the wine prefix $WINEPREFIX" >&2
  "$WINE" wineboot --init >/dev/null 2>&1
  "$MINGW_GCC" -shared -O2 -o "$shim.tmp" tests/windows/bcryptprimitives.c -lbcrypt
  # A crashing test program ends with its status, not in wine's debugger.
  "$WINE" reg add 'HKLM\Software\Microsoft\Windows NT\CurrentVersion\AeDebug' /v Auto /d 0 /f >/dev/null 2>&1
  "$WINE" reg add 'HKLM\Software\Microsoft\Windows NT\CurrentVersion\AeDebug' /v Debugger /d "" /f >/dev/null 2>&1
  mv "$shim.tmp" "$shim"
fi
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$WINE"
echo "running the Windows unit tests under $("$WINE" --version)" >&2
"$DEBIAN_CARGO" test --locked -Z build-std=std,panic_abort --target "$TARGET" --bin codex-oss \
  2>&1 | tee "$log" >&2
grep -q '^test result: ok\. [1-9]' "$log" || { echo "error: the Windows unit tests failed (above)" >&2; exit 1; }
