#!/usr/bin/env bash
# Signs release archives with minisign, as the release workflow does
# (.github/workflows/sign-release.yml for the per-target archives and the manifest,
# .github/workflows/build-universal.yml for the universal macOS archive):
#
#   scripts/sign-release.sh [--manifest] [--bundle FILE] DIST_DIR VERSION [FILE...]
#
# Signs each FILE of DIST_DIR (default: every codex-oss-*.tar.xz and codex-oss-*.zip
# there) into FILE.minisig beside it. The trusted comment, which the signature covers,
# is `codex-oss VERSION FILE`: `codex-oss update` accepts a signature only for the file
# and the release it downloads, so an older release's archive, or another system's,
# cannot be passed off as this one.
#
# --manifest first writes DIST_DIR/codex-oss-manifest.json, what the release embeds
# ({"version":VERSION,"ollama":...,"codex":...}, the versions --bundle FILE pins,
# default bundle.toml), and signs it the same way: `codex-oss update --check` shows it.
#
# Every signature is then checked against the public key codex-oss is built with
# (keys/update.pub, or the file CODEX_OSS_UPDATE_PUBLIC_KEY names, as for the build), so
# a secret key that does not match it fails the release here, not every user's update.
#
# The secret key comes from the environment, never from a file in the repository:
# MINISIGN_SECRET_KEY holds the key file's content (`minisign -G` writes it) and, for
# a password-protected key, MINISIGN_PASSWORD its password. Needs minisign 0.10 or
# newer (prehashed signatures, which codex-oss requires).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
die() { echo "sign-release: $*" >&2; exit 1; }

manifest=0
bundle="$repo/bundle.toml"
while [ $# -gt 0 ]; do
  case "$1" in
    --manifest) manifest=1; shift ;;
    --bundle) bundle="${2:?--bundle needs a file}"; shift 2 ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
dist_dir="${1:?usage: $0 [--manifest] [--bundle FILE] DIST_DIR VERSION [FILE...]}"
version="${2:?usage: $0 [--manifest] [--bundle FILE] DIST_DIR VERSION [FILE...]}"
shift 2

command -v minisign >/dev/null 2>&1 || die "minisign not found (apt-get install minisign, brew install minisign)"
[ -n "${MINISIGN_SECRET_KEY:-}" ] || die "MINISIGN_SECRET_KEY is not set: it holds the release signing key (README, 'Signing releases')"
[ -d "$dist_dir" ] || die "no folder $dist_dir"
case "$version" in
  v*) die "VERSION is the bare version (0.2.0), not the tag ($version)" ;;
  ''|*[!0-9A-Za-z.+-]*) die "VERSION $version is not a version" ;;
esac
public_key="${CODEX_OSS_UPDATE_PUBLIC_KEY:-keys/update.pub}"
case "$public_key" in /*) ;; *) public_key="$repo/$public_key" ;; esac
[ -f "$public_key" ] || die "no public key $public_key"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
secret="$work/secret.key"
(umask 077 && printf '%s\n' "$MINISIGN_SECRET_KEY" >"$secret")

files=()
if [ "$manifest" = 1 ]; then
  # The version line of a [section] of bundle.toml.
  pinned() {
    sed -n "/^\[$1\]/,/^\[/ s/^version *= *\"\([^\"]*\)\".*/\1/p" "$bundle" | head -n1
  }
  ollama="$(pinned ollama)"
  codex="$(pinned codex)"
  [ -n "$ollama" ] && [ -n "$codex" ] || die "$bundle pins no [ollama] or [codex] version"
  printf '{"version":"%s","ollama":"%s","codex":"%s"}\n' "$version" "$ollama" "$codex" \
    >"$dist_dir/codex-oss-manifest.json"
  files+=(codex-oss-manifest.json)
fi
if [ $# -gt 0 ]; then
  files+=("$@")
else
  for path in "$dist_dir"/codex-oss-*.tar.xz "$dist_dir"/codex-oss-*.zip; do
    [ -f "$path" ] && files+=("$(basename "$path")")
  done
fi
[ ${#files[@]} -gt 0 ] || die "nothing to sign in $dist_dir"

for file in "${files[@]}"; do
  path="$dist_dir/$file"
  [ -f "$path" ] || die "no file $path"
  # minisign reads the password, when the key has one, from standard input (a here-string:
  # a pipe's writer could die of SIGPIPE when minisign needs no password).
  minisign -S -s "$secret" -m "$path" -x "$path.minisig" -t "codex-oss $version $file" \
    >/dev/null <<<"${MINISIGN_PASSWORD:-}" ||
    die "minisign could not sign $file (wrong MINISIGN_PASSWORD?)"
  minisign -V -q -p "$public_key" -m "$path" -x "$path.minisig" ||
    die "the signature of $file does not verify with $public_key: MINISIGN_SECRET_KEY is not the key codex-oss is built with"
  echo "signed $file"
done
