//! What stops the children when the launcher dies abruptly: a watchdog process for
//! the server's group, and (Linux) the parent-death signal for Ollama and Codex.
//!
//! The launcher starts `codex-oss __watchdog <pgid>` in its own process group with a
//! pipe on its stdin and keeps the write end. A clean shutdown writes `done` before
//! closing it; a launcher killed with SIGKILL closes it without a word, and the
//! watchdog then sends the group SIGTERM, waits, and SIGKILLs what is left. This
//! covers macOS, which has no parent-death signal. Windows needs no watchdog: the
//! server's job object kills it when the launcher's handle closes.

#[cfg(unix)]
pub use unix::*;

#[cfg(unix)]
mod unix {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    use std::process::{Child, ExitCode, Stdio};
    use std::time::Duration;

    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;

    /// The launcher's end of the watchdog.
    pub struct Watchdog {
        child: Child,
    }

    impl Watchdog {
        /// Starts a watchdog for the process group `pgid`; `None` if it cannot start.
        pub fn spawn(pgid: u32) -> Option<Watchdog> {
            let exe = std::env::current_exe().ok()?;
            let child = std::process::Command::new(exe)
                .arg(super::COMMAND)
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
    pub fn run(pgid: &str) -> ExitCode {
        let Ok(pgid) = pgid.parse::<i32>() else {
            return ExitCode::FAILURE;
        };
        let mut message = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut message);
        if message.starts_with(b"done") {
            return ExitCode::SUCCESS;
        }
        let group = Pid::from_raw(pgid);
        let _ = killpg(group, Signal::SIGTERM);
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            if killpg(group, None).is_err() {
                return ExitCode::SUCCESS;
            }
        }
        let _ = killpg(group, Signal::SIGKILL);
        ExitCode::SUCCESS
    }
}

/// Asks the kernel to send the child SIGTERM when the launcher dies (Linux's
/// parent-death signal). Strictly it fires when the launcher's thread that started the
/// child ends: the launcher runs a current-thread runtime, so that is the main thread.
#[cfg(target_os = "linux")]
pub fn die_with_launcher(command: &mut tokio::process::Command) {
    let parent = std::process::id() as i32;
    // SAFETY: prctl and getppid are async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
            if nix::unistd::getppid().as_raw() != parent {
                // The launcher died before the signal was armed.
                std::process::exit(1);
            }
            Ok(())
        });
    }
}

/// The hidden argument that runs the watchdog.
pub const COMMAND: &str = "__watchdog";

#[cfg(windows)]
pub struct Watchdog;

#[cfg(windows)]
impl Watchdog {
    pub fn spawn(_pgid: u32) -> Option<Watchdog> {
        None
    }
    pub fn disarm(self) {}
}

#[cfg(windows)]
pub fn run(_pgid: &str) -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
