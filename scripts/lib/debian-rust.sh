# Sourced by scripts/check-windows.sh, scripts/check-windows-e2e.sh and scripts/check-macos.sh: Debian's Rust toolchain
# (rustc-web, cargo-web, rust-web-src), which can rebuild the standard library for a
# target rustup has none for here (-Z build-std, unlocked by RUSTC_BOOTSTRAP=1), and the
# environment both checks build in. Set CHECKING (what is checked) and NEEDS (the Debian
# packages it needs) before sourcing; `missing` reports what is not there.

# Named explicitly: ~/.cargo/bin (rustup) comes first on PATH.
DEBIAN_CARGO="${DEBIAN_CARGO:-/usr/bin/cargo}"
DEBIAN_RUSTC="${DEBIAN_RUSTC:-/usr/bin/rustc}"

missing() {
  echo "error: $1" >&2
  echo "  the $CHECKING check needs the Debian packages $NEEDS:" >&2
  echo "  run scripts/install-test-deps.sh (or apt-get install them)" >&2
  exit 1
}
[ -x "$DEBIAN_CARGO" ] || missing "no Debian cargo at $DEBIAN_CARGO"
[ -x "$DEBIAN_RUSTC" ] || missing "no Debian rustc at $DEBIAN_RUSTC"
sysroot="$("$DEBIAN_RUSTC" --print sysroot)" || missing "$DEBIAN_RUSTC does not run"
[ -f "$sysroot/lib/rustlib/src/rust/library/Cargo.lock" ] ||
  missing "no standard library sources under $sysroot/lib/rustlib/src/rust/library (rust-web-src)"

cache="${CODEX_OSS_TEST_CACHE:-$HOME/.cache/codex-oss-test}"
export RUSTC="$DEBIAN_RUSTC"
export RUSTDOC="${DEBIAN_RUSTDOC:-$(dirname "$DEBIAN_RUSTC")/rustdoc}"
export RUSTC_BOOTSTRAP=1
export SKIP_OLLAMA_DOWNLOAD=1 SKIP_CODEX_DOWNLOAD=1
# Nothing routes the compiler through rustup or a wrapper, and the build script sees the
# same environment whether a check runs alone or from scripts/test.sh (no needless reruns).
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET \
  CODEX_OSS_OLLAMA_ARCHIVE CODEX_OSS_CODEX_ARCHIVE \
  CODEX_OSS_OLLAMA_ARCHIVE_VERSION CODEX_OSS_CODEX_ARCHIVE_VERSION \
  CODEX_OSS_PAYLOAD_MIRROR CODEX_OSS_DOWNLOAD_CACHE CODEX_OSS_ZSTD_LEVEL CODEX_OSS_KEEP_GPU_LIBS

# Fails on warnings of codex-oss in cargo's output (the file $1, removed here) as clippy's
# -D warnings does on Linux (RUSTFLAGS would also apply to the standard library and
# rebuild it: cargo's report is read instead); $2 names the build. With a third argument
# `show`, the output is printed first (a build that ran quietly).
refuse_warnings() {
  local log="$1" build="$2" show="${3:-}"
  if grep -q '^warning: `codex-oss`' "$log"; then
    [ "$show" != show ] || cat "$log" >&2
    rm -f "$log"
    echo "error: the $build has warnings (above)" >&2
    exit 1
  fi
  rm -f "$log"
}

# Type-checks the program for $1, failing on its warnings.
check_target() {
  local target="$1" log
  echo "checking the $target build with $("$DEBIAN_CARGO" --version) and $("$RUSTC" --version)" >&2
  log="$(mktemp)"
  "$DEBIAN_CARGO" check --locked -Z build-std=std,panic_abort --target "$target" --bin codex-oss 2>&1 |
    tee "$log" >&2
  refuse_warnings "$log" "$target build"
}

# The Windows checks (scripts/check-windows.sh, scripts/check-windows-e2e.sh): the
# target, MinGW's linker for it and wine to run what it builds (MINGW_GCC and WINE
# override where they are); `missing` names what is not there.
windows_toolchain() {
  MINGW_GCC="${MINGW_GCC:-/usr/bin/x86_64-w64-mingw32-gcc}"
  WINE="${WINE:-/usr/lib/wine/wine64}"
  TARGET=x86_64-pc-windows-gnu
  [ -x "$MINGW_GCC" ] || missing "no MinGW C compiler at $MINGW_GCC"
  [ -x "$WINE" ] || missing "no wine at $WINE"
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER="$MINGW_GCC"
}

# Wine in the prefix $1, quiet, without a display (and without .NET or Gecko prompts).
use_wine_prefix() {
  export WINEPREFIX="$1" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
  unset DISPLAY WAYLAND_DISPLAY
}
