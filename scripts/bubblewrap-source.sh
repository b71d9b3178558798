#!/usr/bin/env bash
# Puts bubblewrap's source archive into OUTDIR for the release to publish beside its
# archives (with its .sha256, as dist writes them):
#
#   scripts/bubblewrap-source.sh OUTDIR
#
# Codex's Linux packages carry bubblewrap (codex-resources/bwrap, LGPL-2.0-or-later), so a
# codex-oss release carries its corresponding source. The archive is the one
# licenses/bubblewrap-source.toml pins; the script refuses it unless
#  - its SHA-256 is the pinned one,
#  - the COPYING inside it is licenses/bubblewrap/COPYING (what the notices quote), and
#  - the Codex bundle.toml pins vendors this very bubblewrap version: openai/codex's
#    codex-rs/vendor/bubblewrap/meson.build at tag rust-v<codex version> declares it.
# Run by .github/workflows/bubblewrap-source.yml (a job of the release workflow).
#
# For tests: BUBBLEWRAP_SOURCE_PIN (another pin file), BUBBLEWRAP_CODEX_SOURCE_URL (the base
# URL of openai/codex's files, default https://raw.githubusercontent.com/openai/codex).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

die() { echo "bubblewrap-source: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 OUTDIR"
out="$1"
pin="${BUBBLEWRAP_SOURCE_PIN:-$repo/licenses/bubblewrap-source.toml}"
codex_source="${BUBBLEWRAP_CODEX_SOURCE_URL:-https://raw.githubusercontent.com/openai/codex}"

field() {
  awk -v key="$1" '$1 == key && $2 == "=" { gsub(/"/, "", $3); print $3; exit }' "$pin"
}
version="$(field version)" url="$(field url)" sha256="$(field sha256)"
[ -n "$version" ] && [ -n "$url" ] && [ -n "$sha256" ] || die "$pin pins no version, url or sha256"
name="$(basename "$url")"
codex_version="$(bash "$repo/scripts/lib/pinned.sh" codex)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fetch() { curl --fail --silent --show-error --location --retry 3 --max-time 300 -o "$2" "$1"; }

# The Codex release vendors this version (its build reports none of its own).
meson_url="$codex_source/rust-v$codex_version/codex-rs/vendor/bubblewrap/meson.build"
fetch "$meson_url" "$work/meson.build" 2>"$work/err" ||
  die "could not read $meson_url: $(head -n1 "$work/err")"
vendored="$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$work/meson.build" | head -n1)"
[ "$vendored" = "$version" ] ||
  die "Codex $codex_version vendors bubblewrap ${vendored:-(no version in its meson.build)}, $pin pins $version: pin that version's release archive"

fetch "$url" "$work/$name" 2>"$work/err" || die "could not download $url: $(head -n1 "$work/err")"
got="$(sha256sum "$work/$name" | cut -d' ' -f1)"
[ "$got" = "$sha256" ] || die "$url has SHA-256 $got, $pin pins $sha256"

tar -xOf "$work/$name" "${name%.tar.*}/COPYING" >"$work/COPYING" 2>"$work/err" ||
  die "$name has no ${name%.tar.*}/COPYING: $(head -n1 "$work/err")"
cmp -s "$work/COPYING" "$repo/licenses/bubblewrap/COPYING" ||
  die "the COPYING in $name differs from licenses/bubblewrap/COPYING, which the notices quote: refresh it (licenses/README.md)"

mkdir -p "$out"
mv "$work/$name" "$out/$name"
echo "$sha256 *$name" >"$out/$name.sha256"
echo "$out/$name: bubblewrap $version, the source of Codex $codex_version's bwrap"
