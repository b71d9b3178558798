#!/usr/bin/env bash
# Moves codex-oss to another Codex release from the npm registry, in one command:
#
#   scripts/bump-codex.sh VERSION        (or `latest`: the registry's newest)
#
# 1. reads the integrity (sha512) of the five platform packages
#    (@openai/codex@VERSION-linux-x64, -linux-arm64, -darwin-x64, -darwin-arm64, -win32-x64)
#    and rewrites the [codex] section of bundle.toml;
# 2. fetches the linux-x64 package (scripts/fixtures.sh: `npm pack`, the very tarball a
#    release build embeds) and records what that Codex sends by default against the
#    stand-in Ollama: its base instructions go to src/catalog/codex-base-instructions.md;
# 3. refreshes the helper versions and notices (scripts/notices.sh) when licenses/ allows;
# 4. runs the agent tests (skip with BUMP_SKIP_TESTS=1);
# 5. prints what changed: package sizes, the tools Codex sends, the instructions' length.
# Run twice with the same VERSION, the second run changes nothing.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

die() { echo "bump-codex: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 VERSION|latest"
version="$1"
if [ "$version" = latest ]; then
  version="$(npm view @openai/codex dist-tags.latest)" || die "could not ask the npm registry for the newest Codex"
fi
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "'$version' is not a release version (X.Y.Z)"

# target triple codex-oss builds for = npm platform suffix
PLATFORMS=(
  aarch64-apple-darwin=darwin-arm64
  x86_64-apple-darwin=darwin-x64
  aarch64-unknown-linux-gnu=linux-arm64
  x86_64-unknown-linux-gnu=linux-x64
  x86_64-pc-windows-msvc=win32-x64
)

old_version="$(bash scripts/lib/pinned.sh codex)"
old_instructions_chars="$(python3 -c 'import sys; print(len(open(sys.argv[1], encoding="utf-8").read()))' src/catalog/codex-base-instructions.md)"

pins=()
for platform in "${PLATFORMS[@]}"; do
  target="${platform%%=*}" suffix="${platform#*=}"
  integrity="$(npm view "@openai/codex@$version-$suffix" dist.integrity 2>/dev/null)" ||
    die "the npm registry has no @openai/codex@$version-$suffix: is $version a Codex release?"
  [[ "$integrity" == sha512-* ]] || die "@openai/codex@$version-$suffix has no sha512 integrity ('$integrity')"
  pins+=("$target=$suffix=$integrity")
done
python3 scripts/lib/write-codex-pins.py bundle.toml "$version" "${pins[@]}"

# The linux-x64 package, as a release build embeds it, and its vendor folder.
eval "$(bash scripts/fixtures.sh)"
vendor="$CODEX_OSS_TEST_CODEX_VENDOR"

# What this Codex sends by default, recorded against the stand-in Ollama.
capture="$(mktemp -d)"
trap 'rm -rf "$capture"' EXIT
bash scripts/lib/capture-codex-request.sh "$vendor/bin/codex" "$CODEX_OSS_OLLAMA_ARCHIVE" "$capture"
python3 - "$capture/request.json" src/catalog/codex-base-instructions.md "$capture/tools.txt" "$version" <<'PY'
import json, sys
request = json.load(open(sys.argv[1], encoding="utf-8"))
def text(item):
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [])
# Codex >= 0.160 sends its base instructions as the first developer message of `input`;
# earlier ones as `instructions`.
instructions = request.get("instructions") or next(
    text(item) for item in request["input"] if item.get("role") == "developer")
with open(sys.argv[2], "w", encoding="utf-8") as out:
    out.write(instructions)
with open(sys.argv[2].replace(".md", ".version"), "w", encoding="utf-8") as out:
    out.write(sys.argv[4] + "\n")
with open(sys.argv[3], "w", encoding="utf-8") as out:
    out.write(" ".join(f"{t.get('type')}:{t.get('name') or '-'}" for t in request.get("tools", [])) + "\n")
PY

# Notices: the texts in licenses/ must be those of this version (scripts/notices.sh checks).
if ! bash scripts/notices.sh >/dev/null 2>"$capture/notices.err"; then
  echo "bump-codex: notices not regenerated: $(head -1 "$capture/notices.err")" >&2
fi

if [ "${BUMP_SKIP_TESTS:-}" != 1 ]; then
  export CODEX_OSS_ZSTD_LEVEL="${CODEX_OSS_ZSTD_LEVEL:-1}"
  cargo test --locked --test it agent:: -- --test-threads 2
fi

tarball="$(ls "$(dirname "$CODEX_OSS_CODEX_ARCHIVE")"/codex-"$version"-linux-x64.tgz)"
packed_mb=$(( $(stat -c %s "$tarball") / 1000000 ))
unpacked_mb=$(( $(du -sb --apparent-size "$vendor" | cut -f1) / 1000000 ))
voice_mb=$(( $( (du -sb --apparent-size "$vendor/codex-resources/voice" 2>/dev/null || echo 0) | cut -f1) / 1000000 ))
new_instructions_chars="$(python3 -c 'import sys; print(len(open(sys.argv[1], encoding="utf-8").read()))' src/catalog/codex-base-instructions.md)"
echo "Codex $old_version -> $version"
echo "  linux-x64 package: $packed_mb MB packed, $unpacked_mb MB unpacked ($voice_mb MB of it codex-resources/voice, left out of the payload)"
echo "  tools sent by default: $(cat "$capture/tools.txt")"
echo "  base instructions: $old_instructions_chars -> $new_instructions_chars characters"
git --no-pager diff --stat -- bundle.toml src/catalog licenses THIRD-PARTY-NOTICES.txt
