#!/usr/bin/env bash
# The weekly upstream job's work (.github/workflows/upstream.yml), on a Debian 12 machine
# like the one the tests are made for (the workflow runs it in debian:bookworm):
#
#   scripts/upstream-bump.sh OLLAMA_VERSION OUTDIR
#
# moves the pins to the newest Codex on the npm registry (scripts/bump-codex.sh latest)
# and to OLLAMA_VERSION (scripts/bump-ollama.sh), and when a pin changed, checks the
# bubblewrap source pin against the new Codex (scripts/bubblewrap-source.sh) and runs the
# whole test suite (.ci/run). It writes OUTDIR/bump.patch (empty when no pin changed)
# and OUTDIR/summary.md (what changed and how the checks went, for the pull request),
# and fails when a bump or a check failed, after writing both.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

[ $# -eq 2 ] || { echo "usage: $0 OLLAMA_VERSION OUTDIR" >&2; exit 2; }
ollama="${1#v}"
out="$2"
mkdir -p "$out"
summary="$out/summary.md"
: >"$summary"
failed=0

# step TITLE COMMAND...: runs it, its output into the summary under TITLE.
step() {
  local title="$1" status
  shift
  echo "::group::$title"
  "$@" 2>&1 | tee "$out/step.log"
  status=${PIPESTATUS[0]}
  echo "::endgroup::"
  {
    if [ "$status" -eq 0 ]; then echo "### $title: passed"; else echo "### $title: FAILED (exit $status)"; fi
    echo
    echo '```'
    tail -n 40 "$out/step.log"
    echo '```'
    echo
  } >>"$summary"
  [ "$status" -eq 0 ] || failed=1
  return "$status"
}

step "Codex: scripts/bump-codex.sh latest" env BUMP_SKIP_TESTS=1 bash scripts/bump-codex.sh latest
step "Ollama: scripts/bump-ollama.sh $ollama" bash scripts/bump-ollama.sh "$ollama"

git diff --binary >"$out/bump.patch"
if git diff --quiet -- bundle.toml; then
  echo "no pin changed" | tee -a "$summary"
  : >"$out/bump.patch"
  exit "$failed"
fi

step "Notices: scripts/notices.sh --check" bash scripts/notices.sh --check
step "Bubblewrap source: scripts/bubblewrap-source.sh" bash scripts/bubblewrap-source.sh "$out/bubblewrap"
step "Tests: .ci/run" bash .ci/run
exit "$failed"
