//! Stand-in `codex.exe` for the Windows end-to-end tests: a TEST FIXTURE, not Codex.
//!
//! `codex ... debug models` (codex-oss's check of its model catalog) exits 0. Any other
//! run appends to STAND_IN_CODEX_RECORD (when set) one `arg=` line per argument, the
//! `CODEX_OSS_BASE_URL=`, `CODEX_OSS_PORT=` and `NO_PROXY=` it was given, its `pid=`,
//! and `models=STATUS BODY`: what GET {CODEX_OSS_BASE_URL}/models answered (through
//! codex-oss's relay, from Ollama). Then, in this order:
//! - STAND_IN_CODEX_CTRL_C=1: sends CTRL_C_EVENT to its console (GenerateConsoleCtrlEvent,
//!   process group 0: every process on the console) and records `ctrl-c-sent=OK|error N`;
//! - STAND_IN_CODEX_WAIT_FOR=FILE: waits until FILE exists (a cue from the test);
//! - STAND_IN_CODEX_CRASH=1: dies of an access violation (0xC0000005);
//! - exits with STAND_IN_CODEX_EXIT (default 0).
//!
//! A console event it receives is recorded as `console-event=N`, followed by
//! `models-after-event=STATUS` (the server asked again), then it exits with
//! STATUS_CONTROL_C_EXIT (0xC000013A), as a console program's default handler does.

use std::io::Write;
use std::time::Duration;

#[link(name = "kernel32")]
extern "system" {
    fn SetConsoleCtrlHandler(
        handler: Option<unsafe extern "system" fn(u32) -> i32>,
        add: i32,
    ) -> i32;
    fn GenerateConsoleCtrlEvent(event: u32, group: u32) -> i32;
    fn GetLastError() -> u32;
}

fn record(line: &str) {
    if let Ok(path) = std::env::var("STAND_IN_CODEX_RECORD") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

unsafe extern "system" fn on_console_event(event: u32) -> i32 {
    record(&format!("console-event={event}"));
    // Whether the server (and codex-oss's relay) still answer: Ctrl-C is the client's.
    let base = std::env::var("CODEX_OSS_BASE_URL").unwrap_or_default();
    match windows_stand_ins::get(&format!("{}/models", base.trim_end_matches('/'))) {
        Ok((status, _)) => record(&format!("models-after-event={status}")),
        Err(err) => record(&format!("models-after-event=error {err}")),
    }
    std::process::exit(0xC000_013Au32 as i32);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.windows(2).any(|w| w[0] == "debug" && w[1] == "models") {
        return;
    }
    unsafe { SetConsoleCtrlHandler(Some(on_console_event), 1) };
    for arg in &args {
        record(&format!("arg={arg}"));
    }
    for name in ["CODEX_OSS_BASE_URL", "CODEX_OSS_PORT", "NO_PROXY"] {
        record(&format!(
            "{name}={}",
            std::env::var(name).unwrap_or_default()
        ));
    }
    record(&format!("pid={}", std::process::id()));
    let base = std::env::var("CODEX_OSS_BASE_URL").unwrap_or_default();
    match windows_stand_ins::get(&format!("{}/models", base.trim_end_matches('/'))) {
        Ok((status, body)) => record(&format!(
            "models={status} {}",
            body.replace(['\r', '\n'], " ")
        )),
        Err(err) => record(&format!("models=error {err}")),
    }
    if std::env::var("STAND_IN_CODEX_CTRL_C").as_deref() == Ok("1") {
        let sent = unsafe { GenerateConsoleCtrlEvent(0, 0) };
        let result = if sent != 0 {
            "OK".to_owned()
        } else {
            format!("error {}", unsafe { GetLastError() })
        };
        record(&format!("ctrl-c-sent={result}"));
        std::thread::sleep(Duration::from_secs(5));
        record("no-console-event-within-5s");
    }
    if let Ok(cue) = std::env::var("STAND_IN_CODEX_WAIT_FOR") {
        while !std::path::Path::new(&cue).exists() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if std::env::var("STAND_IN_CODEX_CRASH").as_deref() == Ok("1") {
        // An access violation: a write to an unmapped page.
        unsafe { std::ptr::write_volatile(0x10 as *mut u64, 1) };
    }
    let code = std::env::var("STAND_IN_CODEX_EXIT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    std::process::exit(code);
}
