//! Everything that works differently on Unix and on Windows, behind one interface:
//! how the server's process tree is grouped and stopped, which signals the launcher
//! answers, file modes and ownership, and how a process is told apart from a later
//! one that reuses its pid.
//!
//! `unix.rs` and `windows.rs` hold the two implementations (the arrangement rustup
//! uses), so that every caller reads the same on every system.

use std::process::ExitStatus;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use self::windows::*;

/// The hidden first argument that makes `codex-oss` a server's watchdog (Unix).
pub const WATCHDOG_COMMAND: &str = "__watchdog";

/// Why a directory that codex-oss runs code from cannot be trusted as it is.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(
    windows,
    allow(
        dead_code,
        reason = "ACLs, not modes, keep a Windows profile folder private"
    )
)]
pub enum Exposure {
    /// Owned by another user (uid).
    OtherOwner(u32),
    /// Ours, but group or others may write to it (its mode).
    Writable(u32),
}

/// How long a process tree gets to stop after the polite request before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A signal (a console event on Windows) that ends the launcher's work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// SIGINT, Ctrl-C, Ctrl-Break.
    Interrupt,
    /// SIGTERM.
    #[cfg_attr(windows, allow(dead_code, reason = "Windows has no SIGTERM"))]
    Terminate,
    /// SIGHUP, or the console window closing.
    Hangup,
}

impl Received {
    /// The launcher's exit status after this signal: `128 + n`, with its conventional
    /// number.
    pub fn exit_code(self) -> std::process::ExitCode {
        std::process::ExitCode::from(match self {
            Received::Interrupt => 128 + 2,
            Received::Terminate => 128 + 15,
            Received::Hangup => 128 + 1,
        })
    }
}

/// Resolves with the first SIGINT, SIGTERM or SIGHUP (Ctrl-C, Ctrl-Break or the console
/// closing on Windows); never, if the handlers cannot be installed.
pub async fn interrupted() -> Received {
    match Signals::new() {
        Ok(mut signals) => signals.recv().await,
        Err(_) => std::future::pending().await,
    }
}

/// The launcher's exit code for a child's exit status: its code when that fits in
/// 0-255, `128 + signal` for a Unix signal, and 1 (failure) for anything else, such as
/// a Windows crash status (0xC0000005), which must never read as success.
pub fn exit_code(status: ExitStatus) -> u8 {
    match status.code() {
        Some(code) => exit_code_from(code),
        None => signal_exit_code(status).unwrap_or(1),
    }
}

/// An exit code as the launcher can return it: 0-255 as it is, anything else failure.
pub fn exit_code_from(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(1)
}

/// A process as the kernel knows it: its pid, when it started, and on which boot and in
/// which pid namespace, so that a reused pid or another container's process is never
/// taken for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// Start time in the system's own unit (clock ticks since boot on Linux).
    pub start_time: u64,
    /// The boot it runs in (Linux's `boot_id`, the boot time elsewhere).
    pub boot: String,
    /// Its pid namespace (Linux), empty elsewhere.
    pub namespace: String,
}

impl ProcessIdentity {
    /// The identity of a running process, if it runs and can be seen from here.
    pub fn of(pid: u32) -> Option<ProcessIdentity> {
        Some(ProcessIdentity {
            pid,
            start_time: process_start_time(pid)?,
            boot: boot_id(),
            namespace: pid_namespace(),
        })
    }

    /// True when this very process still runs (not merely its pid).
    pub fn is_alive(&self) -> bool {
        self.matches(
            &boot_id(),
            &pid_namespace(),
            process_start_time(self.pid),
            CLOCK,
        )
    }

    /// True when the process with this pid, started at `start` (none: no such process),
    /// is this one, seen from `boot` and `namespace`: the pid must mean the same thing
    /// there (same boot on Linux, same pid namespace).
    fn matches(&self, boot: &str, namespace: &str, start: Option<u64>, clock: Clock) -> bool {
        self.namespace == namespace
            && (clock == Clock::Wall || self.boot == boot)
            && start.is_some_and(|start| match clock {
                Clock::Kernel => start == self.start_time,
                Clock::Wall => start.abs_diff(self.start_time) <= START_TOLERANCE_SECS,
            })
    }
}

/// What a process's start time is measured by, and so how it is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    /// Linux: clock ticks since boot, and the kernel's boot id: compared exactly.
    Kernel,
    /// Elsewhere: seconds of the wall clock, and a boot time derived from it (now minus
    /// uptime), which any clock step (or rounding near a whole second, on Windows) moves.
    /// The boot is not compared, and the start time may be off by a little.
    Wall,
}

const CLOCK: Clock = if cfg!(target_os = "linux") {
    Clock::Kernel
} else {
    Clock::Wall
};

/// How far apart two readings of one process's start time may be on the wall clock.
const START_TOLERANCE_SECS: u64 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_outside_a_byte_are_failures() {
        assert_eq!(exit_code_from(0), 0);
        assert_eq!(exit_code_from(3), 3);
        assert_eq!(exit_code_from(255), 255);
        // STATUS_ACCESS_VIOLATION, as Windows reports a crashed process.
        assert_eq!(exit_code_from(0xC000_0005_u32 as i32), 1);
        assert_eq!(exit_code_from(256), 1);
        assert_eq!(exit_code_from(-1), 1);
    }

    #[test]
    fn this_process_has_an_identity_and_a_reused_pid_does_not_match() {
        let me = ProcessIdentity::of(std::process::id()).expect("own identity");
        assert!(me.is_alive());
        // A minute later: another process on every clock (see `START_TOLERANCE_SECS`).
        let later = ProcessIdentity {
            start_time: me.start_time + 60 * 100,
            ..me.clone()
        };
        assert!(!later.is_alive(), "another start time is another process");
        let elsewhere = ProcessIdentity {
            namespace: "pid:[1]".into(),
            ..me.clone()
        };
        assert!(!elsewhere.is_alive(), "a pid from another namespace");
        let other_boot = ProcessIdentity {
            boot: "another boot".into(),
            ..me
        };
        // Off Linux the boot is not compared (it moves with the wall clock).
        assert_eq!(
            other_boot.is_alive(),
            CLOCK == Clock::Wall,
            "a pid of another boot"
        );
    }

    /// Off Linux, the boot time comes from the wall clock: a clock step shifts it (and a
    /// start time read again may round to the next second), and the process still lives.
    #[test]
    fn off_linux_a_clock_step_leaves_a_live_process_alive() {
        let me = ProcessIdentity::of(std::process::id()).expect("own identity");
        let ns = me.namespace.clone();
        let shifted_boot = "1733300437";
        assert!(
            me.matches(shifted_boot, &ns, Some(me.start_time), Clock::Wall),
            "the boot time shifted by a clock step"
        );
        assert!(me.matches(shifted_boot, &ns, Some(me.start_time + 1), Clock::Wall));
        assert!(
            !me.matches(shifted_boot, &ns, Some(me.start_time + 60), Clock::Wall),
            "a reused pid, started a minute later"
        );
        assert!(
            !me.matches(shifted_boot, &ns, None, Clock::Wall),
            "no such process"
        );
        assert!(!me.matches(shifted_boot, "pid:[1]", Some(me.start_time), Clock::Wall));
        // Linux's boot id and tick count are not moved by the clock: compared exactly.
        assert!(!me.matches(shifted_boot, &ns, Some(me.start_time), Clock::Kernel));
        assert!(!me.matches(&me.boot, &ns, Some(me.start_time + 1), Clock::Kernel));
    }
}
