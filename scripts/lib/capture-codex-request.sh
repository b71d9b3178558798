#!/usr/bin/env bash
# Records the first /v1/responses request a Codex sends by default, against the stand-in
# Ollama (a test fixture): capture-codex-request.sh CODEX OLLAMA_ARCHIVE OUT_DIR
# writes OUT_DIR/request.json. Used by scripts/bump-codex.sh.
set -euo pipefail
codex="$1" archive="$2" out="$3"
work="$(mktemp -d)"
server=""
cleanup() { [ -z "$server" ] || kill "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/ollama" "$work/home/.codex" "$work/models" "$work/project"
zstd -dcq "$archive" | tar -C "$work/ollama" -xf -
HOME="$work/home" OLLAMA_HOST=127.0.0.1:0 OLLAMA_MODELS="$work/models" \
  STAND_IN_OLLAMA_BODY_LOG="$work/body.log" \
  "$work/ollama/bin/ollama" serve >"$work/serve.log" 2>&1 &
server=$!
port=""
for _ in $(seq 100); do
  port="$(sed -n 's/.*Listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/serve.log" | head -1)"
  [ -n "$port" ] && curl -fsS "http://127.0.0.1:$port/api/version" >/dev/null 2>&1 && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/serve.log" >&2; echo "capture: the stand-in Ollama did not start" >&2; exit 1; }
(cd "$work/project" && git init -q &&
  HOME="$work/home" CODEX_HOME="$work/home/.codex" CODEX_OSS_PORT="$port" \
  timeout 120 "$codex" exec --oss --local-provider ollama -m gpt-oss:20b \
    --skip-git-repo-check "say hi" >"$work/exec.out" 2>"$work/exec.err") ||
  { cat "$work/exec.err" >&2; echo "capture: Codex failed against the stand-in" >&2; exit 1; }
grep -m1 '^POST /v1/responses ' "$work/body.log" | sed 's|^POST /v1/responses ||' >"$out/request.json"
[ -s "$out/request.json" ] || { echo "capture: Codex sent no /v1/responses request" >&2; exit 1; }
