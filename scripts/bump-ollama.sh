#!/usr/bin/env bash
# Moves codex-oss to another Ollama release, in one command:
#
#   scripts/bump-ollama.sh VERSION
#
# 1. reads the release's own sha256sum.txt (from BUMP_OLLAMA_BASE_URL, default the
#    GitHub release download URL of vVERSION) and rewrites the [ollama] section of
#    bundle.toml: version, base_url and, for each target, the sha256 of the asset it
#    names today (an asset the release does not list is a one-line error; nothing changes);
# 2. regenerates THIRD-PARTY-NOTICES.txt (scripts/notices.sh; skip with BUMP_SKIP_NOTICES=1);
# 3. prints what changed.
# Run twice with the same VERSION, the second run changes nothing. The download itself is
# checked against these pins by build.rs when codex-oss is next built.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

die() { echo "bump-ollama: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 VERSION"
version="${1#v}"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "'$1' is not a release version (X.Y.Z)"

release_url="https://github.com/ollama/ollama/releases/download/v$version/"
base="${BUMP_OLLAMA_BASE_URL:-$release_url}"
base="${base%/}/"

# Codex refuses an Ollama older than it supports (build.rs would refuse to embed it).
min_ollama="$(awk '$0 == "[codex]" { inside = 1; next } /^\[/ { inside = 0 }
  inside && $1 == "min_ollama" { gsub(/"/, "", $3); print $3; exit }' bundle.toml)"
if [ -n "$min_ollama" ] && [ "$(printf '%s\n%s\n' "$min_ollama" "$version" | sort -V | head -n1)" != "$min_ollama" ]; then
  die "Ollama $version is older than $min_ollama, the oldest the pinned Codex accepts (bundle.toml, min_ollama)"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl --fail --silent --show-error --location --retry 3 --max-time 120 \
  -o "$work/sha256sum.txt" "${base}sha256sum.txt" 2>"$work/err" ||
  die "could not read ${base}sha256sum.txt: $(head -n1 "$work/err") (is $version an Ollama release?)"

old_version="$(bash scripts/lib/pinned.sh ollama)"
cp bundle.toml "$work/before.toml"
python3 scripts/lib/write-ollama-pins.py bundle.toml "$version" "$release_url" "$work/sha256sum.txt" 2>"$work/err" ||
  die "$(tail -n1 "$work/err")"

if [ "${BUMP_SKIP_NOTICES:-}" != 1 ] && ! bash scripts/notices.sh >/dev/null 2>"$work/notices.err"; then
  echo "bump-ollama: notices not regenerated: $(head -n1 "$work/notices.err")" >&2
fi

echo "Ollama $old_version -> $version"
if cmp -s "$work/before.toml" bundle.toml; then
  echo "  bundle.toml unchanged"
else
  echo "  bundle.toml now pins:"
  awk '/^\[/ { inside = ($0 ~ /^\[ollama[].]/) } inside && NF' bundle.toml | sed 's/^/    /'
fi
