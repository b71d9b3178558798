#!/usr/bin/env bash
# The whole test suite. Builds codex-oss with the pinned Codex CLI (from npm) and the
# stand-in Ollama embedded through the local-archive switches (GitHub is out of reach
# here), compressed at a low zstd level to keep test builds quick.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(bash scripts/fixtures.sh)"
export CODEX_OSS_ZSTD_LEVEL="${CODEX_OSS_ZSTD_LEVEL:-1}"

# The stand-in Ollama checks itself first: the end-to-end tests are only as good as it is.
bash tests/support/stand-in-ollama/selftest.sh

# The Windows build type-checks and its unit tests pass under wine, and the macOS build
# type-checks (Debian's toolchain, -Z build-std, no payloads): their code compiles
# nowhere else before a release.
bash scripts/check-windows.sh
bash scripts/check-macos.sh

# --no-fail-fast: one red test binary must not hide the results of the others.
cargo test --locked --all-targets --no-fail-fast "$@"
