#!/usr/bin/env bash
# Prepares the test fixtures and prints them as `export NAME=VALUE` lines:
#  - the Codex CLI bundle.toml pins for Linux x86_64: its npm platform package (the very
#    tarball a release embeds) and its unpacked vendor folder (the real client users run);
#  - a release-shaped archive of the stand-in Ollama (tests/support/stand-in-ollama),
#    laid out like ollama-linux-amd64.tar.zst (bin/ollama + lib/ollama/...).
# Everything is cached under $CODEX_OSS_TEST_CACHE and rebuilt only when stale.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

# The Codex bundle.toml pins for Linux x86_64: its npm platform package and integrity.
pin_field() {
  awk -v field="$1" '
    $0 == "[codex.targets.x86_64-unknown-linux-gnu]" { inside = 1; next }
    /^\[/ { inside = 0 }
    inside && $1 == field { gsub(/"/, "", $3); print $3; exit }
  ' "$repo/bundle.toml"
}
CODEX_VERSION="$(bash "$repo/scripts/lib/pinned.sh" codex)"
package="$(pin_field package)" asset="$(pin_field asset)" integrity="$(pin_field integrity)"
[ -n "$package" ] && [ -n "$asset" ] && [ -n "$integrity" ] ||
  { echo "fixtures: bundle.toml pins no npm package for x86_64-unknown-linux-gnu" >&2; exit 1; }
cache="${CODEX_OSS_TEST_CACHE:-$HOME/.cache/codex-oss-test}"
archives="$cache/archives"
vendor="$cache/codex-$CODEX_VERSION-linux-x64/vendor/x86_64-unknown-linux-musl"
mkdir -p "$archives"

# The very tarball a release build downloads and embeds (`npm pack` writes it byte for
# byte as the registry serves it), checked against the pinned integrity.
codex_archive="$archives/$asset"
integrity_of() { printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"; }
if ! [ -s "$codex_archive" ] || [ "$(integrity_of "$codex_archive")" != "$integrity" ]; then
  echo "fetching $package from npm" >&2
  stage="$(mktemp -d)"
  packed="$(cd "$stage" && npm pack --silent "$package" | tail -1)"
  [ -s "$stage/$packed" ] || { echo "fixtures: npm pack $package wrote no tarball" >&2; rm -rf "$stage"; exit 1; }
  mv "$stage/$packed" "$stage/$asset"
  got="$(integrity_of "$stage/$asset")"
  [ "$got" = "$integrity" ] ||
    { echo "fixtures: $package has integrity $got, bundle.toml pins $integrity" >&2; rm -rf "$stage"; exit 1; }
  mv "$stage/$asset" "$codex_archive"
  rm -rf "$stage"
fi
# Its vendor folder, for the tests that run this Codex directly.
if ! [ -x "$vendor/bin/codex" ] || ! grep -q "\"version\": \"$CODEX_VERSION\"" "$vendor/codex-package.json" 2>/dev/null; then
  unpacked="$cache/codex-$CODEX_VERSION-linux-x64"
  rm -rf "$unpacked" "$unpacked.tmp"
  mkdir -p "$unpacked.tmp"
  tar -C "$unpacked.tmp" -xzf "$codex_archive" --strip-components=1 package/vendor
  mv "$unpacked.tmp" "$unpacked"
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
