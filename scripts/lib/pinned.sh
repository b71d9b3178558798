#!/usr/bin/env bash
# Prints the version bundle.toml pins for a payload: pinned.sh ollama|codex
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
awk -v section="[$1]" '
  $0 == section { inside = 1; next }
  /^\[/ { inside = 0 }
  inside && $1 == "version" { gsub(/"/, "", $3); print $3; exit }
' "$repo/bundle.toml"
