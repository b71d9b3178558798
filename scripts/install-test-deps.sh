#!/usr/bin/env bash
# Installs the tools the test suite needs, each only when the right version is
# missing: Debian packages, the pinned cargo-dist, the pinned npm Codex CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

DIST_VERSION=0.34.0
DEBS=(tmux ruby wixl msitools zstd xz-utils python3 curl util-linux minisign
  # Debian's Rust with its std sources and MinGW, for scripts/check-windows.sh.
  rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64-posix)
# Wine runs the Windows unit tests; installed without its recommended desktop.
DEBS_ALONE=(wine64)

# install_debs [APT OPTIONS] -- PACKAGES: installs those of PACKAGES that are missing.
apt_updated=""
install_debs() {
  local options=() missing=() pkg
  while [ "$1" != -- ]; do options+=("$1"); shift; done
  shift
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  [ -n "$apt_updated" ] || { $sudo apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${options[@]}" "${missing[@]}" >/dev/null
}
install_debs -- "${DEBS[@]}"
install_debs --no-install-recommends -- "${DEBS_ALONE[@]}"

if ! dist --version 2>/dev/null | grep -q " $DIST_VERSION\$"; then
  echo "installing cargo-dist $DIST_VERSION (about 12 minutes)"
  cargo install cargo-dist --version "$DIST_VERSION" --locked --quiet
fi

# The GitHub Actions validator tests/dist.rs runs on .github/workflows, from npm.
ACTION_VALIDATOR_VERSION=0.6.0
validator_dir="${CODEX_OSS_TEST_CACHE:-$HOME/.cache/codex-oss-test}/npm-action-validator-$ACTION_VALIDATOR_VERSION"
if ! [ -x "$validator_dir/node_modules/.bin/action-validator" ]; then
  echo "installing @action-validator/cli@$ACTION_VALIDATOR_VERSION from npm"
  mkdir -p "$validator_dir"
  (cd "$validator_dir" && npm install --no-audit --no-fund --silent "@action-validator/cli@$ACTION_VALIDATOR_VERSION")
fi

# Every crate of Cargo.lock, for every target: `dist generate --check` runs `cargo metadata`
# offline in the tests, and that needs the crates only Windows or macOS builds use
# (anstyle-wincon, windows-sys...), which a Linux build never downloads.
cargo fetch --locked --quiet

# The pinned Codex CLI from npm and the release-shaped test archives.
bash scripts/fixtures.sh >/dev/null
