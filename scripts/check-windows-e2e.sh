#!/usr/bin/env bash
# The Windows launcher end to end under wine: builds a real, linked codex-oss.exe
# (x86_64-pc-windows-gnu, Debian's toolchain as scripts/check-windows.sh) around the
# Windows stand-ins of tests/support/windows-stand-ins (ollama.exe, codex.exe: test
# fixtures, embedded as the payloads through CODEX_OSS_OLLAMA_ARCHIVE/CODEX_OSS_CODEX_ARCHIVE
# as .zip files in the release layouts), then runs it under wine: first run, a shared
# server, a killed launcher, a crashing client, Ctrl-C, and the MSI. Prints
# "N passed, N failed". Builds are cached in $CODEX_OSS_TEST_CACHE/windows-e2e-target
# (seeded from the Windows check's target folder) and skipped when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

CHECKING="Windows end-to-end" NEEDS="rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64-posix wine64 msitools zip"
. scripts/lib/debian-rust.sh
windows_toolchain
command -v zip >/dev/null || missing "no zip"

export CARGO_TARGET_DIR="$cache/windows-e2e-target"
# A separate target folder: the payload variables would otherwise rebuild the check's
# codex-oss on every alternation. Its dependencies are the check's: start from a copy.
if ! [ -d "$CARGO_TARGET_DIR" ] && [ -d "$cache/windows-target" ]; then
  cp -a "$cache/windows-target" "$CARGO_TARGET_DIR"
fi
out="$CARGO_TARGET_DIR/$TARGET/debug"
started=$SECONDS

# 1. The stand-ins.
(cd tests/support/windows-stand-ins &&
  "$DEBIAN_CARGO" build --locked -Z build-std=std,panic_abort --target "$TARGET" --quiet)

# 2. Their release-shaped archives, rewritten only when their content changes (the build
#    script reruns when an archive's modification time changes).
payloads="$cache/windows-e2e-payloads"
mkdir -p "$payloads"
stage_zip() { # name, then a function filling the stage folder
  local name="$1" fill="$2" stage
  stage="$(mktemp -d)"
  "$fill" "$stage"
  local hash
  hash="$( (cd "$stage" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12)"
  local zip="$payloads/$name-$hash.zip"
  if ! [ -s "$zip" ]; then
    (cd "$stage" && TZ=UTC zip -qrX "$zip.tmp" .) && mv "$zip.tmp" "$zip"
  fi
  rm -rf "$stage"
  echo "$zip"
}
fill_ollama() { # like ollama-windows-amd64.zip: ollama.exe, lib/ollama/...
  cp "$out/ollama.exe" "$1/ollama.exe"
  mkdir -p "$1/lib/ollama/cuda_v13"
  printf 'stand-in library\n' >"$1/lib/ollama/ggml-base.dll"
  printf 'stand-in library\n' >"$1/lib/ollama/ggml-cpu-x64.dll"
  printf 'stand-in GPU library\n' >"$1/lib/ollama/cuda_v13/ggml-cuda.dll"
  touch -d 2026-01-01 "$1/ollama.exe" "$1"/lib/ollama/*.dll "$1"/lib/ollama/cuda_v13/*
}
fill_codex() { # a codex-package layout: codex-package.json, bin/codex.exe
  mkdir -p "$1/bin"
  cp "$out/codex.exe" "$1/bin/codex.exe"
  printf '{"name":"codex","version":"%s","target":"x86_64-pc-windows-msvc","entrypoint":"bin/codex.exe"}\n' \
    "$(bash scripts/lib/pinned.sh codex)" >"$1/codex-package.json"
  touch -d 2026-01-01 "$1/bin/codex.exe" "$1/codex-package.json"
}
export CODEX_OSS_OLLAMA_ARCHIVE CODEX_OSS_CODEX_ARCHIVE
CODEX_OSS_OLLAMA_ARCHIVE="$(stage_zip stand-in-ollama-windows-amd64 fill_ollama)"
CODEX_OSS_CODEX_ARCHIVE="$(stage_zip stand-in-codex-windows-x64 fill_codex)"
unset SKIP_OLLAMA_DOWNLOAD SKIP_CODEX_DOWNLOAD
export CODEX_OSS_ZSTD_LEVEL=1

# 3. codex-oss.exe around them.
echo "building codex-oss.exe with the Windows stand-ins embedded" >&2
build_log="$(mktemp)"
if ! "$DEBIAN_CARGO" build --locked -Z build-std=std,panic_abort --target "$TARGET" --bin codex-oss \
  >"$build_log" 2>&1; then
  cat "$build_log" >&2; rm -f "$build_log"
  echo "error: the Windows build of codex-oss.exe failed (above)" >&2
  exit 1
fi
refuse_warnings "$build_log" "Windows build of codex-oss.exe" show
exe="$out/codex-oss.exe"
[ -f "$exe" ] || { echo "error: no $exe" >&2; exit 1; }
echo "built in $((SECONDS - started)) s" >&2

# 4. The tests, in a wine prefix of their own (a copy of the check's, kept in the cache:
#    the check ends its wineserver when done, which must not end these runs).
use_wine_prefix "$cache/wine-e2e-prefix"
if ! [ -f "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" ]; then
  [ -d "$cache/wine-prefix" ] || bash scripts/check-windows.sh
  rm -rf "$WINEPREFIX" && cp -a "$cache/wine-prefix" "$WINEPREFIX"
fi
scratch="$(mktemp -d "${TMPDIR:-/tmp}/codex-oss-win-e2e.XXXXXX")"
tag="$(basename "$scratch")"
cleanup() {
  "$(dirname "$WINE")/wineserver" -k 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
win() { echo "Z:${1//\//\\}"; } # a Linux path as wine's Z: drive has it
passed=0 failed=0
pass() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { failed=$((failed + 1)); echo "FAILED: $1" >&2; }
# The Windows processes of this scratch folder (their command lines name it), one a line.
procs() { ps -eo pid=,args= | grep -F "$tag" | grep -v -e grep -e check-windows || true; }
count() { procs | grep -c -F "$1" || true; }
wait_until() { # seconds, command...
  local until=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $until ] || return 1; sleep 0.2; done
}
none_left() { [ -z "$(procs)" ]; }
has_line() { grep -q -F -- "$2" "$1" 2>/dev/null; }
# launch NAME [VAR=VALUE...] -- [ARGS...]: codex-oss.exe in the background with home
# $scratch/home, its client recording into $scratch/NAME.record; pid in $scratch/NAME.pid.
launch() {
  local name="$1"; shift
  local vars=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do vars+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  (
    export CODEX_OSS_HOME="$(win "$scratch/home")" STAND_IN_CODEX_RECORD="$(win "$scratch/$name.record")"
    [ ${#vars[@]} -eq 0 ] || export "${vars[@]}"
    exec "$WINE" "$exe" "$@" >"$scratch/$name.out" 2>"$scratch/$name.err" </dev/null
  ) &
  echo $! >"$scratch/$name.pid"
}
finish() { # NAME: waits for the launcher, its status in $scratch/NAME.rc
  local status=0
  wait "$(cat "$scratch/$1.pid")" || status=$?
  echo "$status" >"$scratch/$1.rc"
}
rc() { cat "$scratch/$1.rc"; }
show() { echo "--- $1: status $(cat "$scratch/$1.rc" 2>/dev/null), stderr:" >&2; tail -5 "$scratch/$1.err" >&2 || true; }

# A first run unpacks both payloads, starts the server, pulls the model, runs the client
# with the relay's address, comes back with the client's status and leaves nothing behind.
launch first STAND_IN_CODEX_EXIT=7 -- exec hello
finish first
r="$scratch/first.record"
port="$(sed -n 's/^CODEX_OSS_PORT=//p' "$r" 2>/dev/null)"
if [ "$(rc first)" = 7 ] &&
  has_line "$r" "arg=--no-daemon" && has_line "$r" "arg=exec" && has_line "$r" "arg=hello" &&
  [ -n "$port" ] && has_line "$r" "CODEX_OSS_BASE_URL=http://127.0.0.1:$port/v1" &&
  has_line "$r" "NO_PROXY=127.0.0.1,localhost,::1" &&
  grep -q '^models=200 .*"id":"gpt-oss:20b"' "$r" &&
  ls "$scratch"/home/ollama/*/ollama.exe "$scratch"/home/ollama/*/lib/ollama/ggml-base.dll >/dev/null 2>&1 &&
  ls "$scratch"/home/codex/*/bin/codex.exe >/dev/null 2>&1 &&
  has_line "$scratch/first.err" "pulled gpt-oss:20b"; then
  pass "a first run unpacks, starts the server, runs the client through the relay, exits with its status (7)"
else
  show first; cat "$r" >&2 || true; fail "the first run"
fi
if wait_until 10 none_left; then
  pass "the first run leaves no process behind"
else
  procs >&2; fail "the first run left processes behind"
fi

# Two runs at once share one server, which outlives the run that started it and stops
# when the second ends.
launch one STAND_IN_CODEX_WAIT_FOR="$(win "$scratch/one.cue")" -- exec one
wait_until 60 has_line "$scratch/one.record" "models=" || true
launch two STAND_IN_CODEX_WAIT_FOR="$(win "$scratch/two.cue")" -- exec two
wait_until 60 has_line "$scratch/two.record" "models=" || true
servers_while_both="$(count "ollama.exe serve")"
touch "$scratch/one.cue"; finish one
sleep 2
servers_after_one="$(count "ollama.exe serve")"
touch "$scratch/two.cue"; finish two
if [ "$servers_while_both" = 1 ] && [ "$servers_after_one" = 1 ] &&
  [ "$(rc one)" = 0 ] && [ "$(rc two)" = 0 ] &&
  grep -q '^models=200 ' "$scratch/one.record" && grep -q '^models=200 ' "$scratch/two.record" &&
  wait_until 10 none_left; then
  pass "two runs share one server; it outlives the run that started it and stops after the second"
else
  show one; show two; procs >&2
  fail "sharing: $servers_while_both server(s) with both runs, $servers_after_one after the first ended"
fi

# A launcher killed outright (its wine process, SIGKILL) takes its server along: its lease
# goes, and the keeper stops the server.
launch killed STAND_IN_CODEX_WAIT_FOR="$(win "$scratch/killed.cue")" -- exec killed
wait_until 60 has_line "$scratch/killed.record" "models=" || true
before="$(count "ollama.exe serve")"
kill -9 "$(cat "$scratch/killed.pid")"; { finish killed; } 2>/dev/null
if [ "$before" = 1 ] && wait_until 10 sh -c "! ps -eo args= | grep -F '$tag' | grep -v grep | grep -q -e 'ollama.exe' -e __keeper"; then
  pass "a killed launcher takes its server, runner and keeper along"
else
  procs >&2; fail "a killed launcher left its server running ($before server(s) before)"
fi
if wait_until 10 sh -c "! ps -eo args= | grep -F '$tag' | grep -v grep | grep -q codex.exe"; then
  pass "a killed launcher takes its client along"
else
  procs >&2; fail "a killed launcher left its client running"
fi
touch "$scratch/killed.cue"
wait_until 10 none_left || true

# A keeper killed outright takes its server along (its job object), and the record it
# leaves is cleaned up by the next run, which starts a new server.
launch keeper STAND_IN_CODEX_WAIT_FOR="$(win "$scratch/keeper.cue")" -- exec keeper
wait_until 60 has_line "$scratch/keeper.record" "models=" || true
keeper_pid="$(procs | grep -F __keeper | awk '{ print $1 }' | head -1)"
[ -n "$keeper_pid" ] && kill -9 "$keeper_pid"
server_gone=no
wait_until 10 sh -c "! ps -eo args= | grep -F '$tag' | grep -v grep | grep -q ollama.exe" && server_gone=yes
touch "$scratch/keeper.cue"; finish keeper
stale="$(ls "$scratch"/home/run/shared/*.json 2>/dev/null | head -1)"
launch after -- exec after
finish after
if [ -n "$keeper_pid" ] && [ "$server_gone" = yes ] && [ -n "$stale" ] && [ "$(rc after)" = 0 ] &&
  grep -q '^models=200 .*gpt-oss:20b' "$scratch/after.record" && wait_until 10 none_left &&
  ! [ -e "$stale" ]; then
  pass "a killed keeper takes its server along; the next run cleans its stale record and starts anew"
else
  show keeper; show after; procs >&2
  fail "killed keeper: pid ${keeper_pid:-none}, server gone: $server_gone, record left: ${stale:-none}"
fi

# A client that crashes (access violation, 0xC0000005) is a failure of the run.
launch crash STAND_IN_CODEX_CRASH=1 -- exec crash
finish crash
if [ "$(rc crash)" != 0 ] && has_line "$scratch/crash.record" "models=200" && wait_until 10 none_left; then
  pass "a crashing client (0xC0000005) fails the run (status $(rc crash))"
else
  show crash; fail "a crashing client: status $(rc crash)"
fi

# Ctrl-C, as far as wine delivers console events: the client sends CTRL_C_EVENT to every
# process of its console (GenerateConsoleCtrlEvent, group 0), as a Ctrl-C typed there
# does. Wine gives a program a console only on a terminal: the run is in a pseudo-terminal
# (script). The server (in its own process group, under a keeper without a console) and
# the launcher's relay must still answer the client after the event.
if command -v script >/dev/null; then
  (
    export CODEX_OSS_HOME="$(win "$scratch/home")" STAND_IN_CODEX_RECORD="$(win "$scratch/ctrlc.record")" \
      STAND_IN_CODEX_CTRL_C=1
    script -qec "$(printf '%q ' "$WINE" "$exe" exec ctrlc)" /dev/null >"$scratch/ctrlc.err" 2>&1 </dev/null
  ) && echo 0 >"$scratch/ctrlc.rc" || echo $? >"$scratch/ctrlc.rc"
  sent="$(sed -n 's/^ctrl-c-sent=//p' "$scratch/ctrlc.record" 2>/dev/null)"
  if [ "$sent" = OK ] && has_line "$scratch/ctrlc.record" "console-event=0" &&
    has_line "$scratch/ctrlc.record" "models-after-event=200" && [ "$(rc ctrlc)" != 0 ] &&
    wait_until 10 none_left; then
    pass "Ctrl-C reaches the client, not the server; the run ends (status $(rc ctrlc)) and cleans up"
  else
    grep -v '^arg=' "$scratch/ctrlc.record" >&2 || true; procs >&2
    fail "Ctrl-C: GenerateConsoleCtrlEvent ${sent:-not called}, launcher status $(rc ctrlc)"
  fi
else
  echo "skipped: Ctrl-C: no script(1) (util-linux) to give wine a terminal, so no console" >&2
fi

# The MSI from wix/main.wxs, built with wixl (msitools: cargo-dist's WiX 3 toolset runs only on
# Windows), installed and uninstalled by wine's msiexec, quietly. wixl cannot build three
# parts of it, which are left out of this MSI and so untested here: the PATH entry
# (<Environment>), ARPINSTALLLOCATION (<SetProperty>) and the WixUI dialogs (<UI>; /qn shows none).
if command -v wixl >/dev/null; then
  msi_dir="$cache/windows-e2e-msi"
  msi="$msi_dir/codex-oss.msi"
  mkdir -p "$msi_dir"
  if ! [ -s "$msi" ] || [ "$exe" -nt "$msi" ] || [ wix/main.wxs -nt "$msi" ] || [ LICENSE -nt "$msi" ] ||
    [ THIRD-PARTY-NOTICES.txt -nt "$msi" ]; then
    python3 - wix/main.wxs "$msi_dir/main.wxs" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="cp1252").read().replace("$(sys.BUILDARCH)", "x64")
text = text.replace(r"$(var.CargoTargetBinDir)\codex-oss.exe", "$(var.CargoTargetBinDir)/codex-oss.exe")
text = re.sub(r"<Environment\b.*?/>", "", text, flags=re.S)
for tag in ("SetProperty", "UI"):
    text = re.sub(r"<%s\b[^>]*/>" % tag, "", text, flags=re.S)
    text = re.sub(r"<%s\b[^>]*>.*?</%s>" % (tag, tag), "", text, flags=re.S)
open(sys.argv[2], "w", encoding="cp1252").write(text)
PY
    cp "$exe" "$msi_dir/codex-oss.exe"
    cp LICENSE THIRD-PARTY-NOTICES.txt "$msi_dir/"
    (cd "$msi_dir" && wixl -a x64 -D Version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)" \
      -D CargoTargetBinDir=. -o codex-oss.msi.tmp main.wxs 2>"$scratch/wixl.err") &&
      mv "$msi_dir/codex-oss.msi.tmp" "$msi" || { cat "$scratch/wixl.err" >&2; rm -f "$msi"; }
  fi
  bin="$WINEPREFIX/drive_c/Program Files/codex-oss/bin"
  if [ -s "$msi" ] && "$WINE" msiexec /i "$(win "$msi")" /qn >/dev/null 2>&1 &&
    [ -f "$bin/codex-oss.exe" ] && [ -f "$bin/LICENSE" ] && [ -f "$bin/THIRD-PARTY-NOTICES.txt" ] &&
    "$WINE" 'C:\Program Files\codex-oss\bin\codex-oss.exe' --version --verbose 2>/dev/null |
      grep -q -F 'third-party notices: C:\Program Files\codex-oss\bin\THIRD-PARTY-NOTICES.txt'; then
    if "$WINE" msiexec /x "$(win "$msi")" /qn >/dev/null 2>&1 && ! [ -e "$bin/codex-oss.exe" ] &&
      ! [ -e "$bin/LICENSE" ] && ! [ -e "$bin/THIRD-PARTY-NOTICES.txt" ]; then
      pass "the MSI installs codex-oss.exe and the licences into C:\\Program Files\\codex-oss\\bin, and uninstalls"
    else
      ls -la "$bin" >&2 || true; fail "msiexec /x left codex-oss behind"
    fi
  else
    ls -la "$bin" >&2 || true; fail "msiexec /i of the MSI"
    "$WINE" msiexec /x "$(win "$msi")" /qn >/dev/null 2>&1 || true
  fi
else
  echo "skipped: the MSI: no wixl (Debian package msitools)" >&2
fi

echo "$passed passed, $failed failed ($((SECONDS - started)) s)"
[ "$failed" = 0 ]
