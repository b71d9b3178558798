#!/usr/bin/env bash
# Start-up and shut-down benchmarks, printed as ratios against a baseline measured in
# the same run (machines here are noisy; absolute times mean little).
#
#   warm start   `codex-oss exec "say hi"` (payloads unpacked, model pulled) against
#                the same work by hand: start the unpacked Ollama, wait for it, run
#                `codex --oss ... exec "say hi"`, stop Ollama.
#   cold unpack  `codex-oss doctor` on an empty home vs on a warm one.
#   stop         time from Codex's exit to the launcher's (Ollama stopped), vs the
#                time a hand-run `kill` + wait of the same Ollama takes.
#
# Usage: bash benches/startup.sh [runs]   (builds codex-oss like scripts/test.sh does)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"

eval "$(bash scripts/fixtures.sh)"
export CODEX_OSS_ZSTD_LEVEL="${CODEX_OSS_ZSTD_LEVEL:-3}"
profile="${BENCH_PROFILE:-release}"
cargo build --profile "$profile" --quiet
bin="$PWD/target/$([ "$profile" = dev ] && echo debug || echo "$profile")/codex-oss"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export HOME="$work" CODEX_OSS_HOME="$work/.codex-oss"
cd "$work"

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v ns="$1" 'BEGIN {printf "%.0f ms", ns/1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }

# Warm up: unpack and pull once.
"$bin" exec --skip-git-repo-check "warm up" </dev/null >/dev/null 2>&1
ollama="$(ls -d "$CODEX_OSS_HOME"/ollama/*/)bin/ollama"
codex="$(ls -d "$CODEX_OSS_HOME"/codex/*/)bin/codex"

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
  t=$(now); by_hand; hand+=($(( $(now) - t )))
  t=$(now); "$bin" exec --skip-git-repo-check "say hi" </dev/null >/dev/null 2>&1; oss+=($(( $(now) - t )))
done
hand_med=$(printf '%s\n' "${hand[@]}" | median)
oss_med=$(printf '%s\n' "${oss[@]}" | median)
echo "warm start: codex-oss $(ms "$oss_med") vs by hand $(ms "$hand_med"): ratio $(ratio "$oss_med" "$hand_med")"

cold=() warm=()
for i in $(seq "$runs"); do
  export CODEX_OSS_HOME="$work/cold-$i"
  t=$(now); "$bin" doctor >/dev/null; cold+=($(( $(now) - t )))
  t=$(now); "$bin" doctor >/dev/null; warm+=($(( $(now) - t )))
  rm -rf "$CODEX_OSS_HOME"
done
export CODEX_OSS_HOME="$work/.codex-oss"
cold_med=$(printf '%s\n' "${cold[@]}" | median)
warm_med=$(printf '%s\n' "${warm[@]}" | median)
echo "unpack: cold $(ms "$cold_med") vs warm $(ms "$warm_med"): ratio $(ratio "$cold_med" "$warm_med")"

# Codex's exit -> launcher's exit (after Ollama is stopped), with a Codex that only exits.
cat >"$work/quick-codex" <<'SH'
#!/bin/sh
date +%s%N > "$STAMP"
SH
chmod +x "$work/quick-codex"
stop=() kill_by_hand=()
for _ in $(seq "$runs"); do
  STAMP="$work/stamp" CODEX_OSS_CODEX="$work/quick-codex" "$bin" exec hi </dev/null >/dev/null 2>&1
  stop+=($(( $(now) - $(cat "$work/stamp") )))
  OLLAMA_HOST=127.0.0.1:0 OLLAMA_MODELS="$CODEX_OSS_HOME/models" HOME="$CODEX_OSS_HOME/ollama-home" \
    "$ollama" serve >"$work/k.log" 2>&1 &
  pid=$!
  until grep -q 'Listening on' "$work/k.log"; do sleep 0.01; done
  t=$(now); kill "$pid"; wait "$pid" || true; kill_by_hand+=($(( $(now) - t )))
done
stop_med=$(printf '%s\n' "${stop[@]}" | median)
kill_med=$(printf '%s\n' "${kill_by_hand[@]}" | median)
echo "stop: Codex exit -> Ollama stopped $(ms "$stop_med") vs kill+wait by hand $(ms "$kill_med"): ratio $(ratio "$stop_med" "$kill_med")"
