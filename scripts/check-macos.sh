#!/usr/bin/env bash
# Type-checks the macOS build of codex-oss (aarch64-apple-darwin; the x86_64 half of the
# universal binary has the same cfgs) on Linux, so code that only macOS compiles (no
# parent-death signal, the watchdog, Metal instead of CUDA) cannot rot unseen between
# releases. Debian's toolchain rebuilds std for the target (scripts/lib/debian-rust.sh);
# the C code of build scripts is not compiled (no macOS SDK here, and `check` links
# nothing: scripts/lib/no-object-cc). Payloads are skipped; the target directory is a
# cache reused between runs. Debian packages: rustc-web cargo-web rust-web-src.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKING=macOS NEEDS="rustc-web cargo-web rust-web-src"
. scripts/lib/debian-rust.sh
export CARGO_TARGET_DIR="$cache/macos-target"
export CC_aarch64_apple_darwin="$PWD/scripts/lib/no-object-cc" AR_aarch64_apple_darwin=ar
check_target aarch64-apple-darwin
