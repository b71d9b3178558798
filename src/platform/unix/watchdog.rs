//! The watchdog that stops the server when the launcher dies abruptly on a Unix system
//! (Linux also has the parent-death signal, see `die_with_launcher`).
//!
//! The launcher starts `codex-oss __watchdog <pgid>` in its own process group with a
//! pipe on its stdin and keeps the write end. A clean shutdown writes `done` before
//! closing it; a launcher killed with SIGKILL closes it without a word, and the
//! watchdog then sends the group SIGTERM, waits, and SIGKILLs what is left. This
//! covers macOS, which has no parent-death signal. Windows needs no watchdog: the
//! server's job object kills it when the launcher's handle closes.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitCode, Stdio};

/// The launcher's end of the watchdog.
pub struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts a watchdog for the process group `pgid`; `None` if it cannot start.
    pub fn spawn(pgid: u32) -> Option<Watchdog> {
        let exe = std::env::current_exe().ok()?;
        let child = std::process::Command::new(exe)
            .arg(super::super::WATCHDOG_COMMAND)
            .arg(pgid.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| tracing::warn!("could not start the watchdog: {e}"))
            .ok()?;
        Some(Watchdog { child })
    }

    /// The server has been stopped: let the watchdog exit without acting.
    pub fn disarm(mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"done\n");
        }
        let _ = self.child.wait();
    }
}

/// The watchdog process: waits for its stdin to close, then stops the group.
pub fn run_watchdog(pgid: &str) -> ExitCode {
    let Ok(pgid) = pgid.parse::<u32>() else {
        return ExitCode::FAILURE;
    };
    let mut message = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut message);
    if message.starts_with(b"done") {
        return ExitCode::SUCCESS;
    }
    super::stop_tree(pgid, super::super::STOP_GRACE);
    ExitCode::SUCCESS
}
