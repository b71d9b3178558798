#!/usr/bin/env bash
# codex-oss's size and speed, as one table of ratios against baselines measured in the
# same run (machines here are noisy; absolute times mean little):
#
#   payload size   the embedded Codex payload against `xz -9e` of the same tar
#   cold unpack    `codex-oss doctor` on an empty home against `zstd -dc | tar -x` of
#                  the same payload (throughput: baseline / ours, higher is better)
#   warm start     `codex-oss exec "say hi"` (unpacked, model pulled) against the same
#                  work by hand: start the unpacked Ollama, wait, `codex --oss exec`, stop
#   stop           Codex's exit to Ollama gone, against a hand-run `kill` + wait
#   launcher RSS   the launcher's own peak memory (VmHWM) while Codex runs
#   back to back   ten sequential `exec` runs whose model takes 3 s to load (the
#                  stand-in's STAND_IN_OLLAMA_LOAD_MS), with OLLAMA_KEEP_ALIVE=10s
#                  (the shared server and its model stay for the next run) against
#                  without it (each run starts a server and loads the model again)
#
# Usage: bash benches/startup.sh [runs]
#   BENCH_PROFILE=release (default) or dev; BENCH_ZSTD_LEVEL=22 (the release level;
#   lower builds faster); BENCH_XZ=0 skips the xz baseline (minutes of CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"

eval "$(bash scripts/fixtures.sh)"
export CODEX_OSS_ZSTD_LEVEL="${BENCH_ZSTD_LEVEL:-22}"
profile="${BENCH_PROFILE:-release}"
cargo build --profile "$profile" --quiet
dir="$PWD/target/$([ "$profile" = dev ] && echo debug || echo "$profile")"
bin="$dir/codex-oss"
payload="$(ls -t "$dir"/build/codex-oss-*/out/codex.tar.zst | head -1)"

work="$(mktemp -d)"
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
export HOME="$work" CODEX_OSS_HOME="$work/.codex-oss"
mkdir -p "$work/project"
cd "$work/project"

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v ns="$1" 'BEGIN {printf "%.0f ms", ns/1e6}'; }
mb() { awk -v b="$1" 'BEGIN {printf "%.1f MB", b/1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
row() { printf '| %-13s | %-22s | %-24s | %6s | %-10s |\n' "$@"; }

echo "codex-oss benchmarks: $profile build, payload zstd -$CODEX_OSS_ZSTD_LEVEL, median of $runs runs"
row "measure" "codex-oss" "baseline" "ratio" "goal"
row "---" "---" "---" "---" "---"

# Payload size against xz -9e of the same tar.
ours_size=$(stat -c %s "$payload")
if [ "${BENCH_XZ:-1}" = 1 ]; then
  xz_size=$(zstd -dc --long=27 "$payload" | xz -9e -T2 -c | wc -c)
  row "payload size" "$(mb "$ours_size")" "xz -9e $(mb "$xz_size")" "$(ratio "$ours_size" "$xz_size")" "<= 1.10"
else
  row "payload size" "$(mb "$ours_size")" "(BENCH_XZ=0)" "-" "<= 1.10"
fi

# Cold unpack against zstd -dc | tar -x of the same bytes.
cold=() pipe=()
for i in $(seq "$runs"); do
  export CODEX_OSS_HOME="$work/cold-$i"
  t=$(now); "$bin" doctor >/dev/null; cold+=($(( $(now) - t )))
  mkdir -p "$work/pipe-$i"
  t=$(now); zstd -dc --long=27 "$payload" | tar -x --warning=no-unknown-keyword -C "$work/pipe-$i"; pipe+=($(( $(now) - t )))
  rm -rf "$CODEX_OSS_HOME" "$work/pipe-$i"
done
export CODEX_OSS_HOME="$work/.codex-oss"
cold_med=$(printf '%s\n' "${cold[@]}" | median)
pipe_med=$(printf '%s\n' "${pipe[@]}" | median)
row "cold unpack" "$(ms "$cold_med")" "zstd -dc | tar -x $(ms "$pipe_med")" "$(ratio "$pipe_med" "$cold_med")" ">= 1.0"

# Warm up: unpack and pull once.
"$bin" exec --skip-git-repo-check "warm up" </dev/null >/dev/null 2>&1
ollama="$(ls -d "$CODEX_OSS_HOME"/ollama/*/)bin/ollama"
codex="$(ls -d "$CODEX_OSS_HOME"/codex/*/)bin/codex"
gone() { ! pgrep -f "$CODEX_OSS_HOME/ollama" >/dev/null; }
wait_gone() { until gone; do sleep 0.005; done; }

by_hand() {
  local log="$work/hand.log"
  OLLAMA_HOST=127.0.0.1:0 OLLAMA_MODELS="$CODEX_OSS_HOME/models" HOME="$CODEX_OSS_HOME/ollama-home" \
    "$ollama" serve >"$log" 2>&1 &
  local pid=$! port=""
  until [ -n "$port" ]; do port="$(grep -o "Listening on 127.0.0.1:[0-9]*" "$log" | head -1 | cut -d: -f2 || true)"; sleep 0.01; done
  until curl -sf "http://127.0.0.1:$port/api/version" >/dev/null; do sleep 0.01; done
  CODEX_OSS_BASE_URL="http://127.0.0.1:$port/v1" "$codex" --oss --local-provider ollama -m gpt-oss:20b \
    exec --skip-git-repo-check "say hi" </dev/null >/dev/null 2>&1
  kill "$pid"; wait "$pid" || true
}

hand=() oss=()
for _ in $(seq "$runs"); do
  wait_gone
  t=$(now); by_hand; hand+=($(( $(now) - t )))
  wait_gone
  t=$(now); "$bin" exec --skip-git-repo-check "say hi" </dev/null >/dev/null 2>&1; oss+=($(( $(now) - t )))
done
hand_med=$(printf '%s\n' "${hand[@]}" | median)
oss_med=$(printf '%s\n' "${oss[@]}" | median)
row "warm start" "$(ms "$oss_med")" "by hand $(ms "$hand_med")" "$(ratio "$oss_med" "$hand_med")" "<= 1.03"

# Codex's exit -> Ollama gone, and the launcher's peak RSS while Codex runs (its parent).
cat >"$work/quick-codex" <<'SH'
#!/bin/sh
grep VmHWM "/proc/$PPID/status" | awk '{print $2}' > "$STAMP.rss"
date +%s%N > "$STAMP"
SH
chmod +x "$work/quick-codex"
stop=() kill_by_hand=() rss=()
for _ in $(seq "$runs"); do
  wait_gone
  STAMP="$work/stamp" CODEX_OSS_CODEX="$work/quick-codex" "$bin" exec hi </dev/null >/dev/null 2>&1
  wait_gone
  stop+=($(( $(now) - $(cat "$work/stamp") )))
  rss+=($(cat "$work/stamp.rss"))
  OLLAMA_HOST=127.0.0.1:0 OLLAMA_MODELS="$CODEX_OSS_HOME/models" HOME="$CODEX_OSS_HOME/ollama-home" \
    "$ollama" serve >"$work/k.log" 2>&1 &
  pid=$!
  until grep -q 'Listening on' "$work/k.log"; do sleep 0.01; done
  t=$(now); kill "$pid"; wait "$pid" || true; kill_by_hand+=($(( $(now) - t )))
done
stop_med=$(printf '%s\n' "${stop[@]}" | median)
kill_med=$(printf '%s\n' "${kill_by_hand[@]}" | median)
rss_med=$(printf '%s\n' "${rss[@]}" | median)
row "stop" "$(ms "$stop_med")" "kill+wait $(ms "$kill_med")" "$(ratio "$stop_med" "$kill_med")" "<= 500 ms"
row "launcher RSS" "$(awk -v k="$rss_med" 'BEGIN {printf "%.1f MB", k/1024}')" "-" "-" "<= 10 MB"

# Ten back-to-back runs with a model load of 3 s, with and without OLLAMA_KEEP_ALIVE.
ten_runs() {
  wait_gone
  local t; t=$(now)
  for _ in $(seq 10); do
    STAND_IN_OLLAMA_LOAD_MS=3000 "$bin" exec --skip-git-repo-check "say hi" </dev/null >/dev/null 2>&1
  done
  echo $(( $(now) - t ))
}
unset_ten=$(ten_runs)
kept_ten=$(OLLAMA_KEEP_ALIVE=10s ten_runs)
row "back to back" "$(ms "$kept_ten") kept 10s" "unset $(ms "$unset_ten")" "$(ratio "$kept_ten" "$unset_ten")" "<= 0.5"
wait_gone
