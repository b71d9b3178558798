#!/usr/bin/env bash
# Quick self-tests of the stand-in Ollama test fixture (not of Ollama itself).
# Stages it like a release (bin/ollama + lib/ollama/), starts it on a free port,
# curls each endpoint, checks pull resume and prune, fault knobs, and that
# SIGTERM stops the runner. Prints "N passed, N failed"; non-zero exit on failure.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/stand-in-ollama-selftest.XXXXXX")"
passed=0
failed=0
PID=""
PORT=""
RUNNER=""

cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

check() { # check NAME COMMAND...
  local name="$1"
  shift
  if "$@" >/dev/null 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $name" >&2
  fi
}

stage() { # stage DIR [with-libs]
  mkdir -p "$1/bin" "$1/lib/ollama" "$1/home"
  cp "$here/ollama" "$1/bin/ollama"
  chmod +x "$1/bin/ollama"
  if [ "${2:-with-libs}" = with-libs ]; then
    cp -a "$here/lib/." "$1/lib/ollama/"
  fi
}

start_server() { # start_server [NAME=VALUE...]: sets PID, PORT, RUNNER
  rm -f "$work/server.err"
  (exec env HOME="$work/root/home" OLLAMA_HOST=127.0.0.1:0 OLLAMA_MODELS="$work/models" \
    STAND_IN_OLLAMA_REQUEST_LOG="$work/requests.log" STAND_IN_OLLAMA_CHUNK_DELAY_MS=1 \
    "$@" "$work/root/bin/ollama" serve 2>"$work/server.err" >/dev/null) &
  PID=$!
  for _ in $(seq 100); do
    grep -q 'runner pid=' "$work/server.err" 2>/dev/null && break
    sleep 0.05
  done
  PORT="$(grep -o 'Listening on 127.0.0.1:[0-9]*' "$work/server.err" | cut -d: -f2)"
  RUNNER="$(grep -o 'runner pid=[0-9]*' "$work/server.err" | cut -d= -f2)"
}

stop_server() {
  [ -n "$PID" ] || return 0
  kill -TERM "$PID" 2>/dev/null
  wait "$PID" 2>/dev/null
  PID=""
}

api() { # api METHOD PATH [BODY]: prints the body, then the HTTP status on its own line
  curl -sS -N --max-time 30 -X "$1" "http://127.0.0.1:$PORT$2" ${3:+-d "$3"} -w '\n%{http_code}'
}

contains() { grep -qF -- "$2" <<<"$1"; }
alive() { kill -0 "$1" 2>/dev/null; }
dead() { ! kill -0 "$1" 2>/dev/null; }
partial_file() { ls "$work/models/blobs/"*-partial 2>/dev/null | head -1; }

test_command_line() {
  local out
  out="$(OLLAMA_HOST=127.0.0.1:1 "$work/root/bin/ollama" --version)"
  check "--version without server warns, names client version" \
    contains "$out" "Warning: client version is 0.32.15"
  check "unknown subcommand exits 1" bash -c "! '$work/root/bin/ollama' frobnicate"
  stage "$work/nolibs" without-libs
  local rc=0
  HOME="$work/nolibs/home" OLLAMA_HOST=127.0.0.1:0 "$work/nolibs/bin/ollama" serve \
    2>"$work/nolibs.err" || rc=$?
  check "serve refuses to start without libggml-base" test "$rc" = 1
  check "  ... and says why" grep -q libggml-base "$work/nolibs.err"
}

test_start_up() {
  check "logs Listening on 127.0.0.1:PORT (version 0.32.15)" \
    grep -q "Listening on 127.0.0.1:$PORT (version 0.32.15)" "$work/server.err"
  check "writes \$HOME/.ollama/id_ed25519" test -s "$work/root/home/.ollama/id_ed25519"
  check "starts a runner" alive "$RUNNER"
  check "--version with server" \
    contains "$(OLLAMA_HOST="http://127.0.0.1:$PORT" "$work/root/bin/ollama" -v)" "ollama version is 0.32.15"
}

test_read_only_endpoints() {
  check "GET /api/version" contains "$(api GET /api/version)" '{"version":"0.32.15"}'
  check "GET /api/tags (empty)" contains "$(api GET /api/tags)" '{"models":[]}'
  check "GET /api/ps" contains "$(api GET /api/ps)" '{"models":[]}'
  check "GET /v1/models (empty)" contains "$(api GET /v1/models)" '"data":[]'
  check "POST /api/show unknown -> 404" contains "$(api POST /api/show '{"model":"nope"}')" $'not found"}\n404'
  check "GET / says running" contains "$(api GET /)" "Ollama is running"
}

test_pull() {
  local out
  out="$(api POST /api/pull '{"model":"nosuch:1b"}')"
  check "pull unknown model: error line with HTTP 200" \
    contains "$out" $'{"error":"pull model manifest: file does not exist"}\n200'
  out="$(api POST /api/pull '{"model":"gpt-oss:20b","stream":true}')"
  check "pull streams pulling manifest" contains "$out" '{"status":"pulling manifest"}'
  check "pull streams progress" contains "$out" '"total":8388608,"completed":8388608}'
  check "pull ends with success" contains "$out" $'{"status":"success"}\n200'
  local blob
  blob="$(grep -o 'sha256:[0-9a-f]*' <<<"$out" | head -1)"
  check "blob is stored under its sha256" \
    bash -c "sha256sum '$work/models/blobs/${blob/:/-}' | grep -q '^${blob#sha256:} '"
  check "manifest written" test -s "$work/models/manifests/registry.ollama.ai/library/gpt-oss/20b"
  check "tags lists gpt-oss:20b" contains "$(api GET /api/tags)" '"name":"gpt-oss:20b"'
  check "v1/models lists gpt-oss:20b" contains "$(api GET /v1/models)" '"id":"gpt-oss:20b"'
  check "show installed model" contains "$(api POST /api/show '{"model":"gpt-oss:20b"}')" '"family":"gptoss"'
  check "stream:false answers success only" \
    contains "$(api POST /api/pull '{"name":"gpt-oss:20b","stream":false}')" $'{"status":"success"}\n200'
  check "request log has the pull" grep -qx "POST /api/pull gpt-oss:20b" "$work/requests.log"
}

test_responses() {
  local out events
  out="$(api POST /v1/responses '{"model":"gpt-oss:20b","stream":true,"input":"hi"}')"
  events="$(grep '^event: ' <<<"$out" | cut -d' ' -f2 | uniq | tr '\n' ' ')"
  check "responses SSE events in order" test "$events" = "response.created response.in_progress \
response.output_item.added response.content_part.added response.output_text.delta \
response.output_text.done response.content_part.done response.output_item.done response.completed "
  check "responses completed carries usage" contains "$out" '"total_tokens":'
  check "responses non-stream" \
    contains "$(api POST /v1/responses '{"model":"gpt-oss:20b","input":"hi"}')" '"text":"Hello from the stand-in model."'
  check "responses unknown model -> 404" \
    contains "$(api POST /v1/responses '{"model":"nope","stream":true,"input":"hi"}')" $'"type":"not_found_error","param":null,"code":null}}\n404'
  check "chat completions stream" \
    contains "$(api POST /v1/chat/completions '{"model":"gpt-oss:20b","stream":true,"messages":[]}')" 'data: [DONE]'
  check "chat completions non-stream" \
    contains "$(api POST /v1/chat/completions '{"model":"gpt-oss:20b","messages":[]}')" '"object":"chat.completion"'
}

test_delete() {
  api POST /api/pull '{"model":"gpt-oss:120b"}' >/dev/null
  check "delete installed model -> 200" contains "$(api DELETE /api/delete '{"model":"gpt-oss:120b"}')" $'\n200'
  check "delete again -> 404" contains "$(api DELETE /api/delete '{"model":"gpt-oss:120b"}')" $'\n404'
  check "deleted model not in tags" bash -c "! grep -q 120b <<<'$(api GET /api/tags)'"
}

test_stop() {
  local runner="$RUNNER" pid="$PID" rc=0
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  PID=""
  check "SIGTERM: exit status 0" test "$rc" = 0
  sleep 0.2
  check "SIGTERM: runner is gone" dead "$runner"
}

test_resume_and_prune() {
  start_server STAND_IN_OLLAMA_KNOWN=tiny STAND_IN_OLLAMA_PULL_ERROR=boom \
    STAND_IN_OLLAMA_PULL_ERROR_AFTER_BYTES=3000000
  check "PULL_ERROR sends the error line" contains "$(api POST /api/pull '{"model":"tiny"}')" '{"error":"boom"}'
  local partial size
  partial="$(partial_file)"
  size="$(stat -c %s "$partial" 2>/dev/null || echo 0)"
  check "failed pull leaves a partial file" test "$size" -ge 3000000
  stop_server

  start_server STAND_IN_OLLAMA_KNOWN=tiny OLLAMA_NOPRUNE=1
  check "OLLAMA_NOPRUNE=1 keeps the partial" test -f "$partial"
  local out
  out="$(api POST /api/pull '{"model":"tiny:latest"}')"
  check "resume: first progress line completed = partial size" \
    test "$(grep -o '"completed":[0-9]*' <<<"$out" | head -1)" = "\"completed\":$size"
  check "resume: success" contains "$out" '{"status":"success"}'
  check "resume: partial renamed" test ! -e "$partial" -a -s "${partial%-partial}"
  stop_server

  echo junk >"$work/models/blobs/sha256-0000-partial"
  start_server
  check "start-up prunes partial files" test ! -e "$work/models/blobs/sha256-0000-partial"
  stop_server
}

test_fault_knobs() {
  start_server STAND_IN_OLLAMA_PULL_HTTP=404
  check "PULL_HTTP=404" contains "$(api POST /api/pull '{"model":"gpt-oss:20b"}')" $'{"error":"model not found"}\n404'
  stop_server

  start_server STAND_IN_OLLAMA_PULL_MALFORMED=1 STAND_IN_OLLAMA_KNOWN=other
  local out
  out="$(api POST /api/pull '{"model":"other"}')"
  check "PULL_MALFORMED sends a non-JSON line" contains "$out" "this line is not JSON"
  check "PULL_MALFORMED: no success" bash -c "! grep -q success <<<'$out'"
  stop_server

  start_server STAND_IN_OLLAMA_HTTP_DELAY_MS=1000
  local t0 t1
  t0="$(date +%s%N)"
  api GET /api/version >/dev/null
  t1="$(date +%s%N)"
  check "HTTP_DELAY_MS: answers only after the delay" test $(((t1 - t0) / 1000000)) -ge 700
  stop_server

  start_server STAND_IN_OLLAMA_EXIT_AFTER_MS=300
  local pid="$PID" runner="$RUNNER" rc=0
  wait "$pid" || rc=$?
  PID=""
  check "EXIT_AFTER_MS: server exits with status 1" test "$rc" = 1
  sleep 0.2
  check "EXIT_AFTER_MS: runner gone too" dead "$runner"
}

main() {
  stage "$work/root"
  test_command_line
  start_server
  test_start_up
  test_read_only_endpoints
  test_pull
  test_responses
  test_delete
  test_stop
  test_resume_and_prune
  test_fault_knobs
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

main "$@"
