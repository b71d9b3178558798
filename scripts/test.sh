#!/usr/bin/env bash
# The whole test suite. Builds codex-oss with the pinned Codex CLI (from npm) and the
# stand-in Ollama embedded through the local-archive switches (GitHub is out of reach
# here), compressed at a low zstd level to keep test builds quick.
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests pull gpt-oss:20b (through the stand-in, a few MB), but codex-oss
# checks first that the model's 14 GB would fit: their scratch homes need that much free.
scratch="${TMPDIR:-/tmp}"
free_kb="$(df -Pk "$scratch" | awk 'NR == 2 { print $4 }')"
if [ "${free_kb:-0}" -lt $((15 * 1024 * 1024)) ]; then
  echo "error: $scratch has $((free_kb / 1024 / 1024)) GB free; the end-to-end tests need 15 GB there" >&2
  echo "  (codex-oss refuses to pull gpt-oss:20b without room for it): free some space, or set TMPDIR to a larger disk" >&2
  exit 1
fi

eval "$(bash scripts/fixtures.sh)"
export CODEX_OSS_ZSTD_LEVEL="${CODEX_OSS_ZSTD_LEVEL:-1}"

# The stand-in Ollama checks itself first: the end-to-end tests are only as good as it is.
bash tests/support/stand-in-ollama/selftest.sh

# The Windows build type-checks and its unit tests pass under wine, and the macOS build
# type-checks (Debian's toolchain, -Z build-std, no payloads): their code compiles
# nowhere else before a release.
bash scripts/check-windows.sh
# The launcher itself under wine: codex-oss.exe around Windows stand-ins of Ollama and
# Codex (its life cycle: unpack, serve, share, kill, crash, Ctrl-C, the MSI). Cached: about
# 25 s when nothing changed, under a minute after a change to src/; the first build on a
# machine without the cache takes about 10 min.
bash scripts/check-windows-e2e.sh
bash scripts/check-macos.sh

# --no-fail-fast: one red test binary must not hide the results of the others.
cargo test --locked --all-targets --no-fail-fast "$@"
