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

blobs_matching() { # blobs_matching GLOB: the matching names in the blob store
  (cd "$work/models/blobs" 2>/dev/null && ls -d -- $1 2>/dev/null)
}
same() { [ -n "$1" ] && [ "$1" = "$2" ]; } # same A B: equal and not empty
first_completed() { grep -o '"completed":[0-9]*' <<<"$1" | head -1 | cut -d: -f2; }
part_completed() { grep -o '"Completed":[0-9]*' "$1" 2>/dev/null | cut -d: -f2; }
allocated() { stat -c '%b %B' "$1" 2>/dev/null | awk '{ print $1 * $2 }' || echo 0; }
backdate() { touch -d '2 hours ago' "$@"; } # older than Ollama's 1 h prune grace period

test_server_config() {
  start_server 'OLLAMA_ORIGINS=http://a.test,https://b.test' OLLAMA_KEEP_ALIVE=90 \
    OLLAMA_DEBUG=2 OLLAMA_NOPRUNE=yes OLLAMA_NUM_PARALLEL=x
  local line keys
  line="$(grep 'msg="server config"' "$work/server.err")"
  check "server config: logged once" test "$(grep -c 'msg="server config"' "$work/server.err")" = 1
  check "server config: slog shape, source routes.go:1951" grep -qE \
    '^time=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}(Z|[+-][0-9]{2}:[0-9]{2}) level=INFO source=routes\.go:1951 msg="server config" env="map\[[^]]*(\[[^]]*\][^]]*)*\]"$' \
    <<<"$line"
  check "server config: before Listening on" test \
    "$(grep -n 'msg="server config"' "$work/server.err" | cut -d: -f1)" -lt \
    "$(grep -n 'Listening on' "$work/server.err" | cut -d: -f1)"
  check "server config: OLLAMA_ORIGINS from the environment, then Ollama's" contains "$line" \
    ' OLLAMA_ORIGINS:[http://a.test https://b.test http://localhost https://localhost http://localhost:* https://localhost:* http://127.0.0.1 https://127.0.0.1 http://127.0.0.1:* https://127.0.0.1:* http://0.0.0.0 https://0.0.0.0 http://0.0.0.0:* https://0.0.0.0:* app://* file://* tauri://* vscode-webview://* vscode-file://*] '
  check "server config: OLLAMA_HOST as envconfig.Host()" contains "$line" ' OLLAMA_HOST:http://127.0.0.1:0 '
  check "server config: OLLAMA_MODELS" contains "$line" " OLLAMA_MODELS:$work/models "
  check "server config: KEEP_ALIVE=90 is 1m30s" contains "$line" ' OLLAMA_KEEP_ALIVE:1m30s '
  check "server config: map starts with the first key in byte order" contains "$line" 'env="map[CUDA_VISIBLE_DEVICES: '
  check "server config: DEBUG=2 is DEBUG-4 (trace)" contains "$line" ' OLLAMA_DEBUG:DEBUG-4 '
  check "server config: NOPRUNE=yes counts as true" contains "$line" ' OLLAMA_NOPRUNE:true '
  check "server config: bad NUM_PARALLEL: default 1" contains "$line" ' OLLAMA_NUM_PARALLEL:1 '
  check "server config: ... and a WARN line before it" grep -q \
    'level=WARN source=config.go:263 msg="invalid environment variable, using default" key=OLLAMA_NUM_PARALLEL value=x default=1' \
    "$work/server.err"
  check "Ollama cloud disabled line" grep -q 'msg="Ollama cloud disabled: false"' "$work/server.err"
  stop_server

  start_server
  line="$(grep 'msg="server config"' "$work/server.err")"
  for kv in OLLAMA_DEBUG:INFO OLLAMA_KEEP_ALIVE:5m0s OLLAMA_LOAD_TIMEOUT:5m0s OLLAMA_NOPRUNE:false \
    OLLAMA_NUM_PARALLEL:1 OLLAMA_MAX_QUEUE:512 OLLAMA_MAX_LOADED_MODELS:0 OLLAMA_CONTEXT_LENGTH:0 \
    OLLAMA_MAX_TRANSFER_STREAMS:4 OLLAMA_GO_TEMPLATE:true OLLAMA_FLASH_ATTENTION:false \
    OLLAMA_NO_CLOUD:false OLLAMA_VULKAN:true 'OLLAMA_REMOTES:[ollama.com]' OLLAMA_GPU_OVERHEAD:0; do
    check "server config default $kv" grep -qF " $kv " <<<"${line/map\[/ }"
  done
  check "server config default OLLAMA_ORIGINS" contains "$line" ' OLLAMA_ORIGINS:[http://localhost https://localhost '
  keys="$(grep -oE '(\[| )[A-Za-z]+(_[A-Za-z]+)+:' <<<"$line" | tr -d '[ :' | tr '\n' ' ')"
  check "server config: Ollama 0.32.15's keys (Linux), sorted" test "$keys" = "CUDA_VISIBLE_DEVICES \
GGML_VK_VISIBLE_DEVICES GPU_DEVICE_ORDINAL HIP_VISIBLE_DEVICES HSA_OVERRIDE_GFX_VERSION HTTPS_PROXY \
HTTP_PROXY LLAMA_ARG_FIT LLAMA_ARG_FIT_TARGET NO_PROXY OLLAMA_CONTEXT_LENGTH OLLAMA_DEBUG \
OLLAMA_DEBUG_LOG_REQUESTS OLLAMA_EDITOR OLLAMA_FLASH_ATTENTION OLLAMA_GO_TEMPLATE OLLAMA_GPU_OVERHEAD \
OLLAMA_HOST OLLAMA_IGPU_ENABLE OLLAMA_KEEP_ALIVE OLLAMA_KV_CACHE_TYPE OLLAMA_LLM_LIBRARY \
OLLAMA_LOAD_TIMEOUT OLLAMA_MAX_LOADED_MODELS OLLAMA_MAX_QUEUE OLLAMA_MAX_TRANSFER_STREAMS OLLAMA_MODELS \
OLLAMA_NOHISTORY OLLAMA_NOPRUNE OLLAMA_NO_CLOUD OLLAMA_NUM_PARALLEL OLLAMA_ORIGINS OLLAMA_REMOTES \
OLLAMA_SCHED_SPREAD OLLAMA_VULKAN ROCR_VISIBLE_DEVICES http_proxy https_proxy no_proxy "
  stop_server
}

test_resume_and_prune() {
  # An interrupted pull leaves Ollama's layout: sparse full-size -partial + part files.
  start_server STAND_IN_OLLAMA_KNOWN=tiny STAND_IN_OLLAMA_PULL_ERROR=boom \
    STAND_IN_OLLAMA_PULL_ERROR_AFTER_BYTES=3000000
  check "PULL_ERROR sends the error line" contains "$(api POST /api/pull '{"model":"tiny"}')" '{"error":"boom"}'
  local partial part done_bytes out
  partial="$(partial_file)"
  part="$partial-0"
  check "failed pull leaves blobs/sha256-<hex>-partial" \
    grep -qE '/sha256-[0-9a-f]{64}-partial$' <<<"$partial"
  check "partial: apparent size is the full blob (truncated up front)" \
    test "$(stat -c %s "$partial" 2>/dev/null)" = 8388608
  check "partial: sparse, fewer bytes allocated than its size" \
    test "$(allocated "$partial")" -lt 8388608
  check "one part file (-partial-0) for a small blob" \
    test "$(blobs_matching "$(basename "$partial")-*" | wc -l)" = 1
  check "part file: Ollama's fields {N,Offset,Size,Completed}" \
    grep -qxE '\{"N":0,"Offset":0,"Size":8388608,"Completed":[0-9]+\}' "$part"
  done_bytes="$(part_completed "$part")"
  check "part file: Completed = bytes written (>= 3000000, < size)" \
    test "${done_bytes:-0}" -ge 3000000 -a "${done_bytes:-0}" -lt 8388608
  check "partial: the bytes written are allocated" test "$(allocated "$partial")" -ge "${done_bytes:-1}"
  check "logs downloading <digest12> in 1 8.4 MB part(s)" \
    grep -qE 'source=download.go:181 msg="downloading [0-9a-f]{12} in 1 8.4 MB part\(s\)"' "$work/server.err"
  stop_server

  start_server STAND_IN_OLLAMA_KNOWN=tiny
  check "start-up prune keeps partial files younger than an hour" test -f "$partial" -a -f "$part"
  check "start-up prune logs total blobs" grep -q 'source=images.go:919 msg="total blobs: ' "$work/server.err"
  stop_server

  start_server STAND_IN_OLLAMA_KNOWN=tiny OLLAMA_NOPRUNE=1
  check "OLLAMA_NOPRUNE=1 keeps the partial" test -f "$partial" -a -f "$part"
  check "OLLAMA_NOPRUNE=1: no prune log" bash -c "! grep -q 'total blobs' '$work/server.err'"
  out="$(api POST /api/pull '{"model":"tiny:latest"}')"
  check "resume: first progress line completed = part file's Completed" \
    same "$(first_completed "$out")" "$done_bytes"
  check "resume: total from the part files" contains "$out" '"total":8388608,"completed":8388608}'
  check "resume: success" contains "$out" '{"status":"success"}'
  check "resume: no partial files left" test -z "$(blobs_matching '*-partial*')"
  check "resume: blob complete, sha256 = its name" bash -c \
    "sha256sum '${partial%-partial}' | grep -q \"^\$(basename '${partial%-partial}' | cut -d- -f2) \""
  stop_server

  # Several parts (STAND_IN_OLLAMA_PART_BYTES): one file per part, resumed per part.
  start_server STAND_IN_OLLAMA_KNOWN=multi STAND_IN_OLLAMA_PART_BYTES=3000000 \
    STAND_IN_OLLAMA_PULL_ERROR=boom STAND_IN_OLLAMA_PULL_ERROR_AFTER_BYTES=4000000
  api POST /api/pull '{"model":"multi"}' >/dev/null
  partial="$(partial_file)"
  check "parts: -partial-0 done" grep -qx '{"N":0,"Offset":0,"Size":3000000,"Completed":3000000}' "$partial-0"
  check "parts: -partial-1 half" grep -qx '{"N":1,"Offset":3000000,"Size":3000000,"Completed":1048576}' "$partial-1"
  check "parts: -partial-2 not begun" grep -qx '{"N":2,"Offset":6000000,"Size":2388608,"Completed":0}' "$partial-2"
  check "parts: logs 3 3 MB part(s) (format.HumanBytes)" grep -q 'in 3 3 MB part(s)' "$work/server.err"
  stop_server
  start_server STAND_IN_OLLAMA_KNOWN=multi OLLAMA_NOPRUNE=1
  out="$(api POST /api/pull '{"model":"multi"}')"
  check "parts: resume reports 4048576 completed" same "$(first_completed "$out")" 4048576
  check "parts: resume logs the parts it read" grep -q 'in 3 3 MB part(s)' "$work/server.err"
  check "parts: success, nothing partial left" bash -c \
    "grep -q success <<<'$out' && test -z \"\$(ls '$work/models/blobs' | grep partial)\""
  check "parts: blob complete, sha256 = its name" bash -c \
    "sha256sum '${partial%-partial}' | grep -q \"^\$(basename '${partial%-partial}' | cut -d- -f2) \""
  stop_server

  # A client gone mid-download: the cancelled transfer records its progress.
  start_server OLLAMA_NOPRUNE=1 STAND_IN_OLLAMA_CHUNK_DELAY_MS=400
  curl -sS --max-time 1 -X POST "http://127.0.0.1:$PORT/api/pull" -d '{"model":"gpt-oss:120b"}' >/dev/null 2>&1
  sleep 1
  partial="$(partial_file)"
  done_bytes="$(part_completed "$partial-0")"
  check "client gone: part file records the bytes written" test "${done_bytes:-0}" -gt 0 -a "${done_bytes:-0}" -lt 8388608
  check "client gone: server still up" alive "$PID"

  # SIGTERM mid-download: like Go's cancelled transfer, the part file is written.
  (curl -sS --max-time 10 -X POST "http://127.0.0.1:$PORT/api/pull" -d '{"model":"gpt-oss:120b"}' >/dev/null 2>&1 &)
  for _ in $(seq 50); do
    [ "$(allocated "$partial")" -gt $((${done_bytes:-0} + 2 * 1048576)) ] && break
    sleep 0.1
  done
  stop_server
  check "SIGTERM: part file records the bytes written" test "$(part_completed "$partial-0")" -gt "${done_bytes:-0}"
  done_bytes="$(part_completed "$partial-0")"
  start_server OLLAMA_NOPRUNE=1
  out="$(api POST /api/pull '{"model":"gpt-oss:120b"}')"
  check "SIGTERM: next pull resumes there" same "$(first_completed "$out")" "$done_bytes"
  check "SIGTERM: next pull succeeds" contains "$out" '{"status":"success"}'
  stop_server

  # Prune at start-up (no OLLAMA_NOPRUNE): files older than an hour go when they
  # are partial downloads (no digest name) or blobs no manifest uses.
  start_server STAND_IN_OLLAMA_KNOWN=stale STAND_IN_OLLAMA_PULL_ERROR=boom \
    STAND_IN_OLLAMA_PULL_ERROR_AFTER_BYTES=1
  api POST /api/pull '{"model":"stale"}' >/dev/null
  stop_server
  check "prune setup: partial + part file" test -n "$(blobs_matching '*-partial')" -a -n "$(blobs_matching '*-partial-0')"
  echo junk >"$work/models/blobs/sha256-0000-partial"
  echo orphan >"$work/models/blobs/sha256-$(printf '%064d' 7)"
  backdate "$work/models/blobs/"*
  local kept
  kept="$(blobs_matching 'sha256-*' | grep -v partial | grep -v "sha256-$(printf '%064d' 7)" | wc -l)"
  start_server
  check "start-up prunes partial files older than an hour" test -z "$(blobs_matching '*partial*')"
  check "start-up prunes an unused blob older than an hour" test ! -e "$work/models/blobs/sha256-$(printf '%064d' 7)"
  check "start-up keeps blobs manifests use" test "$(blobs_matching 'sha256-*' | wc -l)" = "$kept"
  check "prune logs total unused blobs removed: 1" \
    grep -q 'source=images.go:926 msg="total unused blobs removed: 1"' "$work/server.err"
  check "installed models still listed after prune" contains "$(api GET /api/tags)" '"name":"gpt-oss:20b"'
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
  test_server_config
  test_resume_and_prune
  test_fault_knobs
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

main "$@"
