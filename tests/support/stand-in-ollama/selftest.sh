#!/usr/bin/env bash
# Quick self-tests of the stand-in Ollama test fixture (not of Ollama itself).
# Stages it like a release (bin/ollama + lib/ollama/), starts it on a free port,
# curls each endpoint, checks GPU discovery's log line, pull resume and prune, fault knobs, and that
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
    "$@" "$work/${STAGE:-root}/bin/ollama" serve 2>"$work/server.err" >/dev/null) &
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

test_inference_compute() {
  local line
  line="$(grep 'msg="inference compute"' "$work/server.err")"
  check "inference compute: logged once" test "$(grep -c 'msg="inference compute"' "$work/server.err")" = 1
  check "inference compute: after Listening on" test \
    "$(grep -n 'Listening on' "$work/server.err" | cut -d: -f1)" -lt \
    "$(grep -n 'msg="inference compute"' "$work/server.err" | cut -d: -f1)"
  check "inference compute: cuda_v13 beside it gives CUDA, as discover.LogDetails logs it" grep -qE \
    '^time=[^ ]+ level=INFO source=types\.go:32 msg="inference compute" id=0 filter_id="" library=CUDA compute=8\.9 name=CUDA0 description="NVIDIA GeForce RTX 4090" libdirs=ollama,cuda_v13 driver=13\.0 pci_id=0000:01:00\.0 type=discrete total="24\.0 GiB" available="23\.5 GiB"$' \
    <<<"$line"
  check "vram-based default context follows" grep -q \
    'msg="vram-based default context" total_vram="24.0 GiB" default_num_ctx=32768' "$work/server.err"
}

test_inference_compute_without_a_gpu() {
  # The payload codex-oss embeds: CPU libraries only (no cuda_* folders).
  mkdir -p "$work/cpu/bin" "$work/cpu/lib/ollama" "$work/cpu/home"
  cp "$here/ollama" "$work/cpu/bin/ollama"
  cp -a "$here/lib/libggml-base.so" "$here/lib/libggml-cpu-x64.so" "$here/lib/llama-server" "$work/cpu/lib/ollama/"
  STAGE=cpu start_server
  check "no cuda_* folder: the CPU, as Ollama logs it" grep -qE \
    'source=types\.go:50 msg="inference compute" id=cpu library=cpu compute="" name=cpu description=cpu libdirs=ollama driver="" pci_id="" type="" total="[0-9.]+ GiB" available="[0-9.]+ GiB"$' \
    "$work/server.err"
  check "  ... and no VRAM" grep -q 'total_vram="0 B" default_num_ctx=4096' "$work/server.err"
  stop_server
  start_server STAND_IN_OLLAMA_GPU=none
  check "STAND_IN_OLLAMA_GPU=none: the CPU despite the libraries" grep -q \
    'msg="inference compute" id=cpu library=cpu ' "$work/server.err"
  stop_server
  start_server STAND_IN_OLLAMA_NVIDIA_DRIVER=560 STAND_IN_OLLAMA_GPU="NVIDIA RTX A2000" STAND_IN_OLLAMA_GPU_MIB=6144
  check "driver 560: cuda_v12, not cuda_v13" grep -q \
    'library=CUDA compute=8.9 name=CUDA0 description="NVIDIA RTX A2000" libdirs=ollama,cuda_v12 driver=12.6 .* total="6.0 GiB"' \
    "$work/server.err"
  stop_server
  start_server STAND_IN_OLLAMA_NVIDIA_DRIVER=535
  check "driver 535: Ollama's WARN NVIDIA driver too old" grep -q \
    'level=WARN source=cuda_compat.go:65 msg="NVIDIA driver too old" device="NVIDIA GeForce RTX 4090" compute=8.9 driver=535 required_driver="550 or newer"' \
    "$work/server.err"
  check "  ... and the CPU" grep -q 'msg="inference compute" id=cpu library=cpu ' "$work/server.err"
  stop_server
}

test_visible_devices() {
  start_server CUDA_VISIBLE_DEVICES=-1 ROCR_VISIBLE_DEVICES=-1
  check "CUDA_VISIBLE_DEVICES=-1: Ollama's WARN for each override" grep -q \
    'level=WARN source=runner.go:722 msg="user overrode visible devices" CUDA_VISIBLE_DEVICES=-1' "$work/server.err"
  check "  ... ROCR_VISIBLE_DEVICES too" grep -q \
    'msg="user overrode visible devices" ROCR_VISIBLE_DEVICES=-1' "$work/server.err"
  check "  ... then its advice once" test "$(grep -c 'msg="if GPUs are not correctly discovered, unset and try again"' "$work/server.err")" = 1
  check "  ... and the CPU despite the libraries" grep -q 'msg="inference compute" id=cpu library=cpu ' "$work/server.err"
  check "  ... and the server config line shows it" grep -q 'CUDA_VISIBLE_DEVICES:-1 ' "$work/server.err"
  stop_server
  start_server CUDA_VISIBLE_DEVICES=0
  check "CUDA_VISIBLE_DEVICES=0: the GPU" grep -q 'msg="inference compute" id=0 filter_id="" library=CUDA ' "$work/server.err"
  stop_server
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
  check "responses unknown model -> 404 (json.Encoder: newline)" \
    contains "$(api POST /v1/responses '{"model":"nope","stream":true,"input":"hi"}')" $'"type":"not_found_error","param":null,"code":null}}\n\n404'
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

post() { # post PATH BODY OUT: the response body to OUT, the HTTP status to OUT.code
  curl -sS -N --max-time 30 -X POST "http://127.0.0.1:$PORT$1" -d "$2" -o "$3" -w '%{http_code}' >"$3.code"
}

sse() { # sse FILE EXPR: Python EXPR holds; body = FILE's text, names/data = its SSE events
  python3 - "$1" "$2" <<'EOF'
import json, re, sys
body = open(sys.argv[1], encoding="utf-8").read()
ev = []
for block in body.split("\n\n"):
    lines = block.strip("\n").split("\n")
    if len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "):
        ev.append((lines[0][7:], json.loads(lines[1][6:])))
names = [n for n, _ in ev]
data = [d for _, d in ev]
sys.exit(0 if eval("(" + sys.argv[2] + "\n)") else 1)
EOF
}

test_scripted_tools() {
  local script="$work/script.json" bodies="$work/bodies.log" out="$work/out"
  local args='{"cmd":"apply_patch <<'"'"'EOF'"'"'\n*** Begin Patch\n*** End Patch\nEOF\n","yield_time_ms":500,"opts":{"z":1,"a":2.0}}'
  printf '[{"call":"exec_command","arguments":%s},{"reply":"Done: {output}"},{"call":"ns.tool","arguments":{"x":"y"},"thinking":"I should look.","deltas":3},{"reply":"Bye {output}","thinking":"All done."}]' \
    "$args" >"$script"
  rm -f "$bodies"
  start_server STAND_IN_OLLAMA_SCRIPT="$script" STAND_IN_OLLAMA_BODY_LOG="$bodies"
  api POST /api/pull '{"model":"gpt-oss:20b"}' >/dev/null
  local tools='"tools":[{"type":"function","name":"exec_command","parameters":{"type":"object","properties":{"cmd":{"type":"string"}}}},{"type":"namespace","name":"ns","tools":[{"type":"function","name":"tool"}]}]'
  local user='{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}'
  local req0='{"model":"gpt-oss:20b","stream":true,"instructions":"Be brief.","reasoning":{"effort":"medium","summary":"auto"},'"$tools"',"input":['"$user"']}'
  post /v1/responses "$req0" "$out"
  check "script turn 0: HTTP 200" test "$(cat "$out.code")" = 200
  check "script call: Ollama's event sequence" sse "$out" 'names == ["response.created", "response.in_progress",
    "response.output_item.added", "response.function_call_arguments.delta",
    "response.function_call_arguments.done", "response.output_item.done", "response.completed"]'
  check "script call: sequence_number 0..6, type = event name" sse "$out" \
    '[d["sequence_number"] for d in data] == list(range(7)) and all(d["type"] == n for n, d in ev)'
  check "script call: output_item.added is the in-progress function_call" sse "$out" \
    'data[2]["output_index"] == 0 and set(data[2]["item"]) == {"id", "type", "status", "call_id", "name", "arguments"}
     and data[2]["item"]["type"] == "function_call" and data[2]["item"]["status"] == "in_progress"
     and data[2]["item"]["arguments"] == "" and data[2]["item"]["name"] == "exec_command"
     and re.fullmatch(r"call_[a-z0-9]{8}", data[2]["item"]["call_id"])
     and re.fullmatch(r"fc_[0-9]+_0", data[2]["item"]["id"])'
  check "script call: arguments as Go marshals them (script order, nested sorted, <>& escaped)" sse "$out" \
    'data[3]["delta"] == data[4]["arguments"] == "{\"cmd\":\"apply_patch \\u003c\\u003c\x27EOF\x27\\n*** Begin Patch\\n*** End Patch\\nEOF\\n\",\"yield_time_ms\":500,\"opts\":{\"a\":2,\"z\":1}}"'
  check "script call: delta/done name the item and its output_index" sse "$out" \
    'all(d["item_id"] == data[2]["item"]["id"] and d["output_index"] == 0 for d in data[3:5])
     and set(data[3]) == {"delta", "item_id", "output_index", "sequence_number", "type"}
     and set(data[4]) == {"arguments", "item_id", "output_index", "sequence_number", "type"}'
  check "script call: output_item.done is the completed call" sse "$out" \
    'data[5]["item"] == dict(data[2]["item"], status="completed", arguments=data[4]["arguments"])
     and data[5]["output_index"] == 0'
  check "script call: response.completed has the call and usage" sse "$out" \
    'data[6]["response"]["output"] == [data[5]["item"]] and data[6]["response"]["status"] == "completed"
     and data[6]["response"]["usage"]["total_tokens"] > 0 and data[6]["response"]["completed_at"]
     and data[0]["response"]["completed_at"] is None and data[0]["response"]["usage"] is None'
  check "script call: response echoes instructions, reasoning, tools (Go map fields)" sse "$out" \
    '(r := data[6]["response"])["instructions"] == "Be brief."
     and r["reasoning"] == {"effort": "medium", "summary": "auto"}
     and r["tools"][1] == {"type": "namespace", "name": "ns", "description": None, "strict": None, "parameters": None}
     and r["temperature"] == 1 and r["top_p"] == 1 and "1.0" not in body'
  check "script call: event data keys sorted, as Go marshals maps" sse "$out" \
    'all(list(d) == sorted(d) and list(d.get("response", {})) == sorted(d.get("response", {})) for d in data)'
  check "script call: the same request again (a retry) gets the same turn" bash -c \
    "curl -sS -X POST 'http://127.0.0.1:$PORT/v1/responses' -d '$req0' | grep -q function_call_arguments.done"
  check "body log: the whole /v1/responses body" grep -qxF "POST /v1/responses $req0" "$bodies"

  local call='{"type":"function_call","call_id":"call_abc","name":"exec_command","arguments":"{}"}'
  local fco='{"type":"function_call_output","call_id":"call_abc","output":"hello <world>\nline 2\n"}'
  post /v1/responses '{"model":"gpt-oss:20b","stream":true,"input":['"$user,$call,$fco"']}' "$out"
  check "script reply: message events in order" sse "$out" 'names == ["response.created", "response.in_progress",
    "response.output_item.added", "response.content_part.added"] + ["response.output_text.delta"] * (len(names) - 8)
    + ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]'
  check "script reply: {output} is the function_call_output's output" sse "$out" \
    'data[-4]["text"] == "Done: hello <world>\nline 2\n" == "".join(d["delta"] for d in data[4:-4])
     and "\\u003cworld\\u003e" in body and data[-1]["response"]["output"][0]["content"][0]["text"] == data[-4]["text"]'

  local msg='{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Done."}]}'
  local user2='{"role":"user","content":"and now?"}'
  post /v1/responses '{"model":"gpt-oss:20b","stream":true,'"$tools"',"input":['"$user,$call,$fco,$msg,$user2"']}' "$out"
  check "script turn 2 (after a reply): thinking, then a namespaced call in 3 deltas" sse "$out" \
    'names[2:] == ["response.output_item.added"] + ["response.reasoning_summary_text.delta"] * 3
      + ["response.reasoning_summary_text.done", "response.output_item.done", "response.output_item.added"]
      + ["response.function_call_arguments.delta"] * 3
      + ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
     and data[2]["item"] == {"id": data[2]["item"]["id"], "type": "reasoning", "summary": []}
     and data[7]["item"]["summary"] == [{"type": "summary_text", "text": "I should look."}]
     and data[7]["output_index"] == 0 and data[8]["output_index"] == 1 and data[8]["item"]["name"] == "ns.tool"
     and "".join(d["delta"] for d in data[9:12]) == data[12]["arguments"] == "{\"x\":\"y\"}"
     and [i["type"] for i in data[-1]["response"]["output"]] == ["reasoning", "function_call"]'
  check "no warning for a declared namespace member" bash -c "! grep -q 'does not declare' '$work/server.err'"
  post /v1/responses '{"model":"gpt-oss:20b","stream":true,"tools":[{"type":"web_search"}],"input":['"$user,$call,$fco,$msg,$user2"']}' "$out"
  check "web_search tool: the reasoning item ends after the call (WebSearchResponsesWriter)" sse "$out" \
    'names[-5:] == ["response.function_call_arguments.done", "response.output_item.done",
      "response.reasoning_summary_text.done", "response.output_item.done", "response.completed"]
     and data[2]["output_index"] == 0 and data[6]["output_index"] == 0 and data[-2]["output_index"] == 1
     and [i["type"] for i in data[-1]["response"]["output"]] == ["function_call", "reasoning"]'
  check "a call of an undeclared tool is logged" grep -q 'level=WARN .*does not declare.*tool=ns.tool' "$work/server.err"

  local call2='{"type":"function_call","call_id":"call_def","name":"ns.tool","arguments":"{\"x\":\"y\"}"}'
  local fco2='{"type":"function_call_output","call_id":"call_def","output":[{"type":"input_text","text":"part one, "},{"type":"input_text","text":"part two"}]}'
  post /v1/responses '{"model":"gpt-oss:20b","stream":true,"input":['"$user,$call,$fco,$msg,$user2,$call2,$fco2"']}' "$out"
  check "script turn 3: thinking, then a reply quoting an output array" sse "$out" \
    'names[2:4] == ["response.output_item.added", "response.reasoning_summary_text.delta"]
     and data[-4]["text"] == "Bye part one, part two" and data[-4]["output_index"] == 1
     and [i["type"] for i in data[-1]["response"]["output"]] == ["reasoning", "message"]'
  local msg2='{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Bye"}]}'
  post /v1/responses '{"model":"gpt-oss:20b","stream":true,"input":['"$user,$call,$fco,$msg,$user2,$call2,$fco2,$msg2"']}' "$out"
  check "past the script's end: STAND_IN_OLLAMA_REPLY" sse "$out" 'data[-4]["text"] == "Hello from the stand-in model."'

  post /v1/responses '{"model":"gpt-oss:20b","input":['"$user"']}' "$out"
  check "non-stream call: ToResponse's function_call item, json.Encoder newline" sse "$out" \
    're.fullmatch(r"fc_resp_[0-9]+_0", (o := json.loads(body)["output"][0])["id"]) and o["status"] == "completed"
     and list(o) == ["id", "type", "status", "call_id", "name", "arguments"] and body.endswith("}\n")'

  local e
  for e in none minimal low medium high xhigh ultra max; do
    post /v1/responses '{"model":"gpt-oss:20b","stream":true,"input":"hi","reasoning":{"effort":"'$e'"}}' "$out"
    check "reasoning effort $e accepted" test "$(cat "$out.code")" = 200
  done
  post /v1/responses '{"model":"gpt-oss:20b","stream":true,"input":"hi","reasoning":{"effort":"extreme"}}' "$out"
  check "invalid effort: HTTP 400" test "$(cat "$out.code")" = 400
  check "invalid effort: Ollama's error body" test "$(cat "$out")" = \
    '{"error":{"message":"invalid reasoning value: \"extreme\" (must be \"minimal\", \"low\", \"medium\", \"high\", \"xhigh\", \"ultra\", \"max\", or \"none\")","type":"invalid_request_error","param":null,"code":null}}'
  post /v1/responses '{"model":"nope","stream":true,"input":"hi","reasoning":{"effort":"extreme"}}' "$out"
  check "invalid effort: checked before the model" test "$(cat "$out.code")" = 400
  post /v1/responses '{"model":"gpt-oss:20b","stream":true,"input":[{"type":"custom_tool_call","call_id":"x"}]}' "$out"
  check "unknown input item type: 400" contains "$(cat "$out")" \
    '"message":"input[0]: unknown input item type: \"custom_tool_call\"","type":"invalid_request_error"'
  post /v1/responses '{"model":"nope","stream":true,"input":"hi","tools":[{"type":"web_search"}]}' "$out"
  check "unknown model, web_search tool, streaming: HTTP 200 + response.failed" sse "$out" \
    'names == ["response.created", "response.in_progress", "response.failed"]
     and data[2]["response"]["error"] == {"code": "api_error", "message": "model \x27nope\x27 not found"}'
  stop_server

  echo '[{"call": 5}]' >"$script"
  start_server STAND_IN_OLLAMA_SCRIPT="$script"
  post /v1/responses '{"model":"gpt-oss:20b","stream":true,"input":"hi"}' "$out"
  check "malformed script: HTTP 500 naming the knob" bash -c \
    "test \"\$(cat '$out.code')\" = 500 && grep -q 'stand-in: STAND_IN_OLLAMA_SCRIPT=' '$out'"
  stop_server
}

test_every_interface() {
  # Go's net.Listen: an empty host (:0, http://:0) or 0.0.0.0 is every interface.
  local host port
  for host in :0 http://:0 0.0.0.0:0; do
    start_server OLLAMA_HOST="$host"
    port="$(grep -o 'Listening on \[::\]:[0-9]*' "$work/server.err" | cut -d: -f4)"
    check "OLLAMA_HOST=$host: logs Listening on [::]:PORT" test -n "$port"
    check "OLLAMA_HOST=$host: answers on 127.0.0.1 and ::1" bash -c \
      "curl -sf http://127.0.0.1:$port/api/version && curl -sf 'http://[::1]:$port/api/version'"
    check "OLLAMA_HOST=$host: listens on every interface" bash -c \
      "ss -Hltn 'sport = :$port' | grep -q '\[::\]:$port\|\*:$port'"
    stop_server
  done
}

test_model_load() {
  # STAND_IN_OLLAMA_LOAD_MS: the first request loads the model; it stays loaded.
  local body='{"model":"gpt-oss:20b","stream":false,"input":"hi"}' t first second
  start_server STAND_IN_OLLAMA_LOAD_MS=600
  api POST /api/pull '{"model":"gpt-oss:20b","stream":false}' >/dev/null
  t=$(date +%s%N); api POST /v1/responses "$body" >/dev/null; first=$(( ($(date +%s%N) - t) / 1000000 ))
  t=$(date +%s%N); api POST /v1/responses "$body" >/dev/null; second=$(( ($(date +%s%N) - t) / 1000000 ))
  check "LOAD_MS: the first request loads the model ($first ms)" test "$first" -ge 600
  check "LOAD_MS: the next finds it loaded ($second ms)" test "$second" -lt 400
  stop_server
  start_server STAND_IN_OLLAMA_LOAD_MS=600 OLLAMA_KEEP_ALIVE=0
  api POST /v1/responses "$body" >/dev/null
  t=$(date +%s%N); api POST /v1/responses "$body" >/dev/null; second=$(( ($(date +%s%N) - t) / 1000000 ))
  check "LOAD_MS with OLLAMA_KEEP_ALIVE=0: every request loads it ($second ms)" test "$second" -ge 600
  stop_server
}

main() {
  stage "$work/root"
  test_command_line
  start_server
  test_start_up
  test_inference_compute
  test_read_only_endpoints
  test_pull
  test_responses
  test_delete
  test_stop
  test_server_config
  test_inference_compute_without_a_gpu
  test_visible_devices
  test_resume_and_prune
  test_fault_knobs
  test_scripted_tools
  test_every_interface
  test_model_load
  test_prompt_rendering
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# The prompt gpt-oss is given, rendered as Ollama 0.32.15 does (no server needed).
test_prompt_rendering() {
  local render="import importlib.machinery, json, sys
m = importlib.machinery.SourceFileLoader('so', '$here/ollama').load_module()
print(m.render_gpt_oss_prompt(json.loads(sys.argv[1])))"
  local developer='{"input":[{"type":"message","role":"developer","content":[{"type":"input_text","text":"BE TERSE"}]},{"role":"user","content":"hi"}],"reasoning":{"effort":"low"}}'
  local system='{"instructions":"TOP","input":[{"type":"message","role":"system","content":"BE TERSE"},{"role":"user","content":"hi"}]}'
  check "prompt: a developer message is dropped, as gpt-oss's template does" \
    bash -c "! python3 -c \"\$1\" '$developer' | grep -q 'BE TERSE'" _ "$render"
  check "prompt: the effort is the Reasoning line" \
    bash -c "python3 -c \"\$1\" '$developer' | grep -q '^Reasoning: low'" _ "$render"
  check "prompt: instructions and system messages go under # Instructions, joined" \
    bash -c "python3 -c \"\$1\" '$system' | tr '\n' '~' | grep -q '# Instructions~~TOP~~BE TERSE<|end|><|start|>user<|message|>hi<|end|><|start|>assistant'" _ "$render"
}

main "$@"
