//! Integration tests: the built `codex-oss` binary, run as a user runs it, with the
//! payloads `scripts/test.sh` embeds (the pinned Codex CLI from npm and the stand-in
//! Ollama from tests/support), each test in its own scratch HOME and `CODEX_OSS_HOME`.
//! What users read is checked against snapshots in tests/it/snapshots (insta): set
//! `INSTA_UPDATE=always` to write them anew, then read the changes before committing.

mod agent;
mod bundle;
mod faults;
mod gpu;
mod hardening;
mod help;
mod import;
mod run;
mod sharing;
mod support;
mod team;
mod tui;
