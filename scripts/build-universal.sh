#!/usr/bin/env bash
# Joins the two macOS archives cargo-dist built into one universal archive, as the
# release workflow's build-universal job does (cargo-dist itself builds no universal
# binary, its issue 77):
#
#   scripts/build-universal.sh DIST_DIR
#
# reads   DIST_DIR/codex-oss-aarch64-apple-darwin.tar.xz  (+ .sha256)
#         DIST_DIR/codex-oss-x86_64-apple-darwin.tar.xz   (+ .sha256)
# writes  DIST_DIR/codex-oss-universal-apple-darwin.tar.xz (+ .sha256)
#
# Each input is checked against its .sha256 first. The output has the same layout
# (one top directory named after the archive, the binary and the docs beside it) and
# its .sha256 the same `<hex> *<file>` format as cargo-dist's, so whoever can verify
# the per-arch archives can verify this one. The installers and the Homebrew formula
# keep using the per-arch archives; this one is for people who want a single file.
# Needs `lipo` (macOS; tests put a stand-in on PATH), tar with xz, and sha256sum or shasum.
set -euo pipefail

app=codex-oss
dist_dir="${1:?usage: $0 DIST_DIR}"
universal="$app-universal-apple-darwin"

die() { echo "build-universal: $*" >&2; exit 1; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum -b "$1" | cut -d' ' -f1
  else
    shasum -a 256 -b "$1" | cut -d' ' -f1
  fi
}

command -v lipo >/dev/null 2>&1 || die "lipo not found (it comes with Xcode's command line tools)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

binaries=()
for arch in aarch64 x86_64; do
  name="$app-$arch-apple-darwin"
  archive="$dist_dir/$name.tar.xz"
  [ -f "$archive" ] || die "missing $archive"
  [ -f "$archive.sha256" ] || die "missing $archive.sha256"
  expected="$(cut -d' ' -f1 "$archive.sha256" | head -n1)"
  actual="$(sha256_of "$archive")"
  [ "$expected" = "$actual" ] || die "$archive does not match its .sha256 (expected $expected, got $actual)"
  mkdir -p "$work/$arch"
  tar -C "$work/$arch" -xJf "$archive"
  [ -f "$work/$arch/$name/$app" ] || die "$archive holds no $name/$app"
  binaries+=("$work/$arch/$name/$app")
done

# Docs (README, LICENSE...) come from the arm64 archive; the binary is replaced.
out="$work/out/$universal"
mkdir -p "$out"
cp -R "$work/aarch64/$app-aarch64-apple-darwin/." "$out/"
rm -f "$out/$app"
lipo -create -output "$out/$app" "${binaries[@]}"
lipo "$out/$app" -verify_arch arm64 x86_64 || die "lipo output lacks an architecture"
chmod 755 "$out/$app"

# COPYFILE_DISABLE keeps macOS tar from adding ._ resource-fork files.
COPYFILE_DISABLE=1 tar -C "$work/out" -cJf "$dist_dir/$universal.tar.xz.part" "$universal"
mv "$dist_dir/$universal.tar.xz.part" "$dist_dir/$universal.tar.xz"
printf '%s *%s\n' "$(sha256_of "$dist_dir/$universal.tar.xz")" "$universal.tar.xz" >"$dist_dir/$universal.tar.xz.sha256"
echo "wrote $dist_dir/$universal.tar.xz and its .sha256"
