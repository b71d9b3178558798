#!/usr/bin/env bash
# Prepares the test fixtures and prints them as `export NAME=VALUE` lines:
#  - the pinned Codex CLI from npm (the real client users run), and a release-shaped
#    archive of its vendor folder (same layout as codex-package-<target>.tar.gz);
#  - a release-shaped archive of the stand-in Ollama (tests/support/stand-in-ollama),
#    laid out like ollama-linux-amd64.tar.zst (bin/ollama + lib/ollama/...).
# Everything is cached under $CODEX_OSS_TEST_CACHE and rebuilt only when stale.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

CODEX_VERSION=0.149.0
cache="${CODEX_OSS_TEST_CACHE:-$HOME/.cache/codex-oss-test}"
npm_dir="$cache/npm-codex-$CODEX_VERSION"
vendor="$npm_dir/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl"
archives="$cache/archives"
mkdir -p "$npm_dir" "$archives"

if ! [ -x "$vendor/bin/codex" ] || ! grep -q "\"version\": \"$CODEX_VERSION\"" "$vendor/codex-package.json" 2>/dev/null; then
  echo "installing @openai/codex@$CODEX_VERSION from npm" >&2
  (cd "$npm_dir" && npm install --no-audit --no-fund --silent "@openai/codex@$CODEX_VERSION" >&2)
fi

codex_archive="$archives/codex-package-x86_64-unknown-linux-musl-$CODEX_VERSION.tar.gz"
if ! [ -s "$codex_archive" ]; then
  tar -C "$vendor" -czf "$codex_archive.tmp" . && mv "$codex_archive.tmp" "$codex_archive"
fi

# The stand-in Ollama archive is rebuilt whenever its sources or this script change.
stand_in="$repo/tests/support/stand-in-ollama"
stand_in_hash="$( (cd "$stand_in" && find . -type f -print0 | sort -z | xargs -0 sha256sum; sha256sum < "$repo/scripts/fixtures.sh") | sha256sum | cut -c1-12)"
ollama_archive="$archives/stand-in-ollama-linux-amd64-$stand_in_hash.tar.zst"
if ! [ -s "$ollama_archive" ]; then
  stage="$(mktemp -d)"
  mkdir -p "$stage/bin" "$stage/lib/ollama"
  cp -a "$stand_in/ollama" "$stage/bin/ollama"
  cp -a "$stand_in/lib/." "$stage/lib/ollama/"
  # Versioned library names and links, as in the real release (libggml-base.so ->
  # libggml-base.so.0 -> libggml-base.so.0.0.0).
  mv "$stage/lib/ollama/libggml-base.so" "$stage/lib/ollama/libggml-base.so.0.0.0"
  ln -s libggml-base.so.0.0.0 "$stage/lib/ollama/libggml-base.so.0"
  ln -s libggml-base.so.0 "$stage/lib/ollama/libggml-base.so"
  chmod +x "$stage/bin/ollama"
  tar -C "$stage" -cf - bin lib | zstd -q -3 -o "$ollama_archive.tmp" && mv "$ollama_archive.tmp" "$ollama_archive"
  rm -rf "$stage"
fi

echo "export CODEX_OSS_CODEX_ARCHIVE=$codex_archive"
echo "export CODEX_OSS_OLLAMA_ARCHIVE=$ollama_archive"
echo "export CODEX_OSS_TEST_CODEX_VENDOR=$vendor"
