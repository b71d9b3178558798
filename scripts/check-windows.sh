#!/usr/bin/env bash
# Checks the Windows build of codex-oss (x86_64-pc-windows-gnu) on Linux, so the
# cfg(windows) code (job objects, console events) cannot rot unseen between releases:
# type-checks the whole program, then builds its unit tests and runs them under wine
# (among them the platform ones: the server's job object, stopping process trees, exit
# codes; and unpacking, settings and paths as Windows has them).
# There is no Windows standard library for rustup's toolchain here, so it uses Debian's
# toolchain and rebuilds std for the target from its sources (scripts/lib/debian-rust.sh).
# Payloads are skipped (nothing is downloaded) and the target directory is a cache
# reused between runs, apart from the project's target/. Debian packages:
#   rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64-posix wine64
#   (scripts/install-test-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKING=Windows NEEDS="rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64-posix wine64"
. scripts/lib/debian-rust.sh
windows_toolchain

export CARGO_TARGET_DIR="$cache/windows-target"
check_target "$TARGET"

# The unit tests, run by wine in a prefix of their own (made once, kept in the cache).
use_wine_prefix "$cache/wine-prefix"
log="$(mktemp)"
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
