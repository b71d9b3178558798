//! Unix: process groups and signals, parent-death signals on Linux, modes and owners.

use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use process_wrap::tokio::{ChildWrapper, CommandWrap};
use tokio::signal::unix::{signal, SignalKind};

use super::{Exposure, Received};

mod watchdog;
pub use watchdog::{run_watchdog, Watchdog};

/// The launcher's signal handlers, installed once and read as they arrive.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn recv(&mut self) -> Received {
        tokio::select! {
            _ = self.int.recv() => Received::Interrupt,
            _ = self.term.recv() => Received::Terminate,
            _ = self.hup.recv() => Received::Hangup,
        }
    }
}

/// Passes a signal the launcher received on to Codex. Ctrl-C needs no passing: the
/// terminal sends it to Codex's process group (the launcher's) itself.
pub fn forward(pid: u32, received: Received) {
    let signal = match received {
        Received::Interrupt => return,
        Received::Terminate => Signal::SIGTERM,
        Received::Hangup => Signal::SIGHUP,
    };
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

pub(super) fn signal_exit_code(status: ExitStatus) -> Option<u8> {
    use std::os::unix::process::ExitStatusExt;
    status
        .signal()
        .map(|signal| u8::try_from(128 + signal).unwrap_or(1))
}

/// The server runs as the leader of a process group of its own: stopping the group
/// reaches its runners, and the terminal's Ctrl-C (sent to the foreground group, the
/// launcher's and Codex's) does not reach it.
pub fn wrap_server(command: tokio::process::Command) -> CommandWrap {
    let mut wrapped = CommandWrap::from(command);
    wrapped.wrap(process_wrap::tokio::ProcessGroup::leader());
    wrapped
}

/// The polite request to stop: SIGTERM to the server's whole group.
pub fn ask_to_stop(child: &mut dyn ChildWrapper) {
    // process-wrap's ProcessGroupChild signals the whole group.
    let _ = child.signal(Signal::SIGTERM as i32);
}

/// `die_with_launcher` and the watchdog do this on Unix.
pub fn end_with_launcher(_child: &tokio::process::Child) -> ChildJob {
    ChildJob
}

/// Windows holds a job object here; nothing on Unix.
pub struct ChildJob;

/// Asks the kernel to send the child SIGTERM when the launcher dies (Linux's
/// parent-death signal). Strictly it fires when the launcher's thread that started the
/// child ends: the launcher starts children from its main thread (a current-thread
/// runtime). Other Unix systems have no such signal; the watchdog covers them.
pub fn die_with_launcher(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as i32;
        // SAFETY: prctl and getppid are async-signal-safe system calls.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
                if nix::unistd::getppid().as_raw() != parent {
                    // The launcher died before the signal was armed.
                    std::process::exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Starts the child in a session of its own: no terminal's signals reach it, and it
/// outlives the launcher that started it (a shared server's keeper).
pub fn detach(command: &mut tokio::process::Command) {
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
}

/// True when `pid` leads a process group of its own, as the embedded server does: only
/// such a process is stopped as a tree.
pub fn leads_its_tree(pid: u32) -> bool {
    let pid = Pid::from_raw(pid as i32);
    nix::unistd::getpgid(Some(pid)) == Ok(pid)
}

/// Stops the process group led by `pid`: SIGTERM, up to `grace` for it to go, then
/// SIGKILL for whatever is left. Returns when the group is gone or killed.
pub fn stop_tree(pid: u32, grace: Duration) {
    let group = Pid::from_raw(pid as i32);
    if killpg(group, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        if killpg(group, None).is_err() {
            return;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
}

/// When a process started: clock ticks since boot on Linux (field 22 of
/// `/proc/PID/stat`), seconds since the epoch elsewhere.
pub(super) fn process_start_time(pid: u32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces and parentheses: count from its end.
        let after_name = &stat[stat.rfind(')')? + 1..];
        after_name.split_whitespace().nth(19)?.parse().ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let pid = sysinfo::Pid::from_u32(pid);
        let mut system = sysinfo::System::new();
        system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
        system.process(pid).map(sysinfo::Process::start_time)
    }
}

pub(super) fn boot_id() -> String {
    #[cfg(target_os = "linux")]
    if let Ok(id) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        return id.trim().to_owned();
    }
    sysinfo::System::boot_time().to_string()
}

pub(super) fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|link| link.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// True for an executable file.
pub fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && has_exec_bit(&m))
}

/// True when the owner may execute the file.
pub fn has_exec_bit(meta: &std::fs::Metadata) -> bool {
    meta.permissions().mode() & 0o100 != 0
}

/// The permission bits as the filesystem reports them.
pub fn mode_of(meta: &std::fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

/// Creates a file that must not exist yet (no following a link to elsewhere), with the
/// permission bits it is to have (less the umask), in one system call.
pub fn create_new_file(path: &Path, mode: u32) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o777)
        .open(path)
}

/// Opens a file for reading, failing (ELOOP) where `path` itself is a link.
pub fn open_no_follow(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777))
}

/// A recursive directory builder whose new directories are the owner's alone (0700).
pub fn private_dir_builder() -> std::fs::DirBuilder {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
}

pub fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// Whether others could have changed what `meta` describes.
pub fn exposure(meta: &std::fs::Metadata) -> Option<Exposure> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Some(Exposure::OtherOwner(meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    (mode & 0o022 != 0).then_some(Exposure::Writable(mode))
}

/// Takes write access away from group and others (`chmod go-w`, and 0700 for a directory).
pub fn restrict_to_owner(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    let mode = if meta.is_dir() {
        0o700
    } else {
        mode_of(meta) & !0o022
    };
    set_mode(path, mode)
}

/// The user name to show for a uid, else the number.
pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |user| user.name)
}

/// True for the errors of a filesystem that has no file locks (some NFS and FUSE mounts).
pub fn locks_unsupported(err: &io::Error) -> bool {
    use nix::errno::Errno;
    let unsupported = [Errno::ENOLCK, Errno::ENOTSUP, Errno::EOPNOTSUPP].map(|e| e as i32);
    err.raw_os_error()
        .is_some_and(|code| unsupported.contains(&code))
        || err.kind() == io::ErrorKind::Unsupported
}
