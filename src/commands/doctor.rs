//! `codex-oss doctor`: unpacks and checks the payloads and reports what it finds.

use std::process::ExitCode;

use anyhow::Result;

use crate::payload;

pub fn run() -> Result<ExitCode> {
    let settings = super::settings(None)?;
    let home = &settings.home;
    out!("home: {}", home.root().display());
    let mut healthy = true;
    for payload in [payload::ollama(), payload::codex()].into_iter().flatten() {
        match payload.ensure_unpacked(home) {
            Ok(unpacked) => out!("{}: ok, {}", payload.label(), unpacked.executable.display()),
            Err(err) => {
                healthy = false;
                out!("{}: {err}", payload.label());
            }
        }
    }
    let shared = crate::shared::running(home);
    if shared.is_empty() {
        out!("shared server: none running");
    }
    for (url, leases, log) in shared {
        out!(
            "shared server: {url}, used by {leases} codex-oss run{}, log {}",
            if leases == 1 { "" } else { "s" },
            log.display()
        );
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
