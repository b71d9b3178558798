//! `codex-oss --version`: the launcher's version and what it embeds.

use crate::payload::{self, Payload};

pub fn print() {
    out!("codex-oss {}", env!("CARGO_PKG_VERSION"));
    out!(
        "ollama {}",
        describe(payload::ollama(), "CODEX_OSS_OLLAMA or `ollama` on PATH")
    );
    out!(
        "codex {}",
        describe(payload::codex(), "CODEX_OSS_CODEX or `codex` on PATH")
    );
}

fn describe(payload: Option<&Payload>, fallback: &str) -> String {
    match payload {
        Some(p) => format!("{} (embedded)", p.version),
        None => format!("not embedded (uses {fallback})"),
    }
}
