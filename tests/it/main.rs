//! Integration tests: the built `codex-oss` binary, run as a user runs it, with the
//! payloads `scripts/test.sh` embeds (the pinned Codex CLI from npm and the stand-in
//! Ollama from tests/support), each test in its own scratch HOME and `CODEX_OSS_HOME`.

mod bundle;
mod faults;
mod hardening;
mod run;
mod support;
mod tui;
