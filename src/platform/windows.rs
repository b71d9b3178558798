//! Windows: job objects and console events; file modes and owners are left to ACLs.

use std::io;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use process_wrap::tokio::{ChildWrapper, CommandWrap, CreationFlags, JobObject, KillOnDrop};
use windows::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP;

use super::{Exposure, Received};

/// The launcher's console event handlers, installed once and read as they arrive.
pub struct Signals {
    ctrl_c: tokio::signal::windows::CtrlC,
    ctrl_break: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
}

impl Signals {
    pub fn new() -> io::Result<Signals> {
        Ok(Signals {
            ctrl_c: tokio::signal::windows::ctrl_c()?,
            ctrl_break: tokio::signal::windows::ctrl_break()?,
            close: tokio::signal::windows::ctrl_close()?,
        })
    }

    pub async fn recv(&mut self) -> Received {
        tokio::select! {
            _ = self.ctrl_c.recv() => Received::Interrupt,
            _ = self.ctrl_break.recv() => Received::Interrupt,
            _ = self.close.recv() => Received::Hangup,
        }
    }
}

/// Console events reach every process attached to the console, Codex included: there
/// is nothing to pass on.
pub fn forward(_pid: u32, _received: Received) {}

pub(super) fn signal_exit_code(_status: ExitStatus) -> Option<u8> {
    None
}

/// The server runs in a job object that is killed when its last handle closes (the
/// launcher's, however the launcher ends), and in a new process group, so the
/// console's Ctrl-C goes to Codex and not to Ollama.
pub fn wrap_server(command: tokio::process::Command) -> CommandWrap {
    let mut wrapped = CommandWrap::from(command);
    // CreationFlags must come before JobObject, which adds CREATE_SUSPENDED to them.
    wrapped.wrap(CreationFlags(CREATE_NEW_PROCESS_GROUP));
    wrapped.wrap(JobObject);
    // With JobObject, this sets JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE.
    wrapped.wrap(KillOnDrop);
    wrapped
}

/// Windows has no polite stop for a console-less child: end the job (Ollama and its
/// runners).
pub fn ask_to_stop(child: &mut dyn ChildWrapper) {
    let _ = child.start_kill();
}

/// The server's job object does this for the server; Codex gets its own in
/// `end_with_launcher`.
pub fn die_with_launcher(_command: &mut tokio::process::Command) {}

/// Puts a started child (Codex) in a job object that is killed when its last handle
/// closes: the launcher's, held by the returned guard, so the child and what it starts
/// end with the launcher however it ends (`taskkill /F` too), as Linux's parent-death
/// signal does. Codex without the launcher's relay and server is of no use. Dropped
/// once the child has exited, the guard ends what it left running.
pub fn end_with_launcher(child: &tokio::process::Child) -> ChildJob {
    use windows::Win32::Foundation::HANDLE;
    use windows::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
        SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    };
    let Some(process) = child.raw_handle() else {
        return ChildJob(None);
    };
    // SAFETY: the job handle is ours; the process handle is the live child's.
    unsafe {
        let Ok(job) = CreateJobObjectW(None, windows::core::PCWSTR::null()) else {
            return ChildJob(None);
        };
        let guard = ChildJob(Some(job));
        let mut limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        let set = SetInformationJobObject(
            job,
            JobObjectExtendedLimitInformation,
            std::ptr::from_ref(&limits).cast(),
            u32::try_from(std::mem::size_of_val(&limits)).unwrap_or(0),
        );
        if set.is_err() || AssignProcessToJobObject(job, HANDLE(process)).is_err() {
            return ChildJob(None);
        }
        guard
    }
}

/// The launcher's handle of a child's job object (see `end_with_launcher`).
pub struct ChildJob(Option<windows::Win32::Foundation::HANDLE>);

impl Drop for ChildJob {
    fn drop(&mut self) {
        if let Some(job) = self.0.take() {
            // SAFETY: the handle is ours and closed once.
            let _ = unsafe { windows::Win32::Foundation::CloseHandle(job) };
        }
    }
}

/// Windows needs no watchdog: the job object kills the server when the launcher's
/// handle closes, however the launcher ends.
pub struct Watchdog;

impl Watchdog {
    pub fn spawn(_pgid: u32) -> Option<Watchdog> {
        None
    }

    pub fn disarm(self) {}
}

pub fn run_watchdog(_pgid: &str) -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}

/// Starts the child detached from the console and out of its Ctrl-C group: it outlives
/// the launcher that started it (a shared server's keeper).
pub fn detach(command: &mut tokio::process::Command) {
    const DETACHED_PROCESS: u32 = 0x0000_0008;
    command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP.0);
}

/// Any process can be stopped with its descendants.
pub fn leads_its_tree(_pid: u32) -> bool {
    true
}

/// Ends `pid` and every process it started (children before parents), as the job
/// object would have.
pub fn stop_tree(pid: u32, _grace: Duration) {
    let mut system = sysinfo::System::new();
    system.refresh_processes(sysinfo::ProcessesToUpdate::All, true);
    let root = sysinfo::Pid::from_u32(pid);
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next];
        let children: Vec<sysinfo::Pid> = system
            .processes()
            .iter()
            .filter(|(child, process)| process.parent() == Some(parent) && !tree.contains(child))
            .map(|(child, _)| *child)
            .collect();
        tree.extend(children);
        next += 1;
    }
    for pid in tree.iter().rev() {
        if let Some(process) = system.process(*pid) {
            process.kill();
        }
    }
}

/// Seconds since the epoch, as sysinfo reports it.
pub(super) fn process_start_time(pid: u32) -> Option<u64> {
    let pid = sysinfo::Pid::from_u32(pid);
    let mut system = sysinfo::System::new();
    system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
    system.process(pid).map(sysinfo::Process::start_time)
}

pub(super) fn boot_id() -> String {
    sysinfo::System::boot_time().to_string()
}

pub(super) fn pid_namespace() -> String {
    String::new()
}

pub fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Windows keeps no executable bit: every file counts as executable.
pub fn has_exec_bit(_meta: &std::fs::Metadata) -> bool {
    true
}

pub fn mode_of(_meta: &std::fs::Metadata) -> u32 {
    0o755
}

/// Creates a file that must not exist yet (no following a link to elsewhere).
pub fn create_new_file(path: &Path, _mode: u32) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Opens a file for reading. Archives make no links on Windows (`make_symlink` copies),
/// and the caller has checked that `path` is a plain file.
pub fn open_no_follow(path: &Path) -> io::Result<std::fs::File> {
    std::fs::File::open(path)
}

pub fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// A recursive directory builder; a profile folder's ACL keeps new directories private.
pub fn private_dir_builder() -> std::fs::DirBuilder {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    builder
}

/// Release archives for Windows carry no links (creating one needs a privilege most
/// users lack); if one appears, what it points to (a file or a folder, unpacked before
/// it) is copied in its place.
pub fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    let folder = link.parent().unwrap_or(Path::new(".")).canonicalize()?;
    let source = folder.join(target).canonicalize()?;
    if folder.starts_with(&source) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} links to a folder that holds it", link.display()),
        ));
    }
    copy_all(&source, link)
}

fn copy_all(from: &Path, to: &Path) -> io::Result<()> {
    if !from.is_dir() {
        return std::fs::copy(from, to).map(|_| ());
    }
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        copy_all(&entry.path(), &to.join(entry.file_name()))?;
    }
    Ok(())
}

/// A profile folder is private to its user by its ACL; codex-oss does not inspect ACLs.
pub fn exposure(_meta: &std::fs::Metadata) -> Option<Exposure> {
    None
}

pub fn restrict_to_owner(_path: &Path, _meta: &std::fs::Metadata) -> io::Result<()> {
    Ok(())
}

pub fn user_name(uid: u32) -> String {
    format!("uid {uid}")
}

/// True for the errors of a filesystem that has no file locks.
pub fn locks_unsupported(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Unsupported
}

/// What the job object must do for users, checked on Windows itself (or under wine:
/// `scripts/test-windows.sh`): the server's whole tree, runners included, ends with the
/// launcher's handle, however the launcher ends. The helper processes are this test
/// binary again, running `helper` in a role.
#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use windows::Win32::Foundation::{CloseHandle, HANDLE, STILL_ACTIVE};
    use windows::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };

    use super::*;

    const ROLE: &str = "CODEX_OSS_TEST_ROLE";
    const PIDS: &str = "CODEX_OSS_TEST_PIDS";
    const HELPER: &str = "platform::windows::tests::helper";
    const PATIENCE: Duration = Duration::from_secs(20);

    /// A process handle held open: its exit is seen even once its pid is reused.
    struct Watched(HANDLE, u32);

    impl Watched {
        fn open(pid: u32) -> Watched {
            let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid) }
                .unwrap_or_else(|e| panic!("open process {pid}: {e}"));
            Watched(handle, pid)
        }

        fn alive(&self) -> bool {
            let mut code = 0;
            unsafe { GetExitCodeProcess(self.0, &raw mut code) }.expect("read an exit code");
            code == STILL_ACTIVE.0 as u32
        }

        fn gone_within(&self, timeout: Duration) -> bool {
            let deadline = Instant::now() + timeout;
            while self.alive() {
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            true
        }
    }

    impl Drop for Watched {
        fn drop(&mut self) {
            let _ = unsafe { CloseHandle(self.0) };
        }
    }

    /// This test binary running `helper` as `role`, told where to write pids.
    fn helper_as(role: &str, pids: &Path) -> std::process::Command {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                HELPER,
                "--ignored",
                "--test-threads=1",
                "--quiet",
            ])
            .env(ROLE, role)
            .env(PIDS, pids)
            .stdout(std::process::Stdio::null());
        command
    }

    /// The two pids a `tree` helper writes: its own and its child's.
    fn tree_pids(file: &Path) -> (u32, u32) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(text) = std::fs::read_to_string(file) {
                let pids: Vec<u32> = text
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                if let [child, grandchild] = pids[..] {
                    return (child, grandchild);
                }
            }
            assert!(
                Instant::now() < deadline,
                "the helper wrote no pids to {}",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Not a test: the processes the tests start. `tree` starts a child (`sleep`) and
    /// writes both pids; `server` is a launcher that runs a `tree` as its server.
    #[test]
    #[ignore = "a helper process of the other tests"]
    fn helper() {
        let pids = std::env::var_os(PIDS).map(PathBuf::from);
        match (std::env::var(ROLE).as_deref(), pids) {
            (Ok("sleep"), _) => std::thread::sleep(Duration::from_secs(120)),
            (Ok("tree"), Some(pids)) => {
                let child = helper_as("sleep", &pids).spawn().unwrap();
                let text = format!("{} {}", std::process::id(), child.id());
                std::fs::write(pids.with_extension("tmp"), text).unwrap();
                std::fs::rename(pids.with_extension("tmp"), &pids).unwrap();
                std::thread::sleep(Duration::from_secs(120));
            }
            (Ok("server"), Some(pids)) => runtime().block_on(async {
                let command = tokio::process::Command::from(helper_as("tree", &pids));
                let _server = wrap_server(command).spawn().unwrap();
                tokio::time::sleep(Duration::from_secs(120)).await;
            }),
            _ => {}
        }
    }

    #[test]
    fn the_servers_runners_end_with_the_launchers_handle() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        runtime().block_on(async {
            let command = tokio::process::Command::from(helper_as("tree", &pids));
            let server = wrap_server(command).spawn().unwrap();
            let (child, grandchild) = tree_pids(&pids);
            let (child, grandchild) = (Watched::open(child), Watched::open(grandchild));
            assert!(child.alive() && grandchild.alive());
            drop(server);
            assert!(child.gone_within(PATIENCE), "the server outlived its job");
            assert!(
                grandchild.gone_within(PATIENCE),
                "the server's child (pid {}) outlived its job: no kill-on-close",
                grandchild.1
            );
        });
    }

    #[test]
    fn a_killed_launcher_takes_its_servers_whole_tree_along() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let mut launcher = helper_as("server", &pids).spawn().unwrap();
        let (child, grandchild) = tree_pids(&pids);
        let (child, grandchild) = (Watched::open(child), Watched::open(grandchild));
        assert!(child.alive() && grandchild.alive());
        launcher.kill().unwrap(); // TerminateProcess: no chance to clean up
        let _ = launcher.wait();
        assert!(
            child.gone_within(PATIENCE),
            "the server outlived its killed launcher"
        );
        assert!(
            grandchild.gone_within(PATIENCE),
            "the server's child outlived its killed launcher"
        );
    }

    #[test]
    fn ask_to_stop_ends_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        runtime().block_on(async {
            let command = tokio::process::Command::from(helper_as("tree", &pids));
            let mut server = wrap_server(command).spawn().unwrap();
            let (child, grandchild) = tree_pids(&pids);
            let grandchild = Watched::open(grandchild);
            ask_to_stop(&mut *server);
            let status = tokio::time::timeout(PATIENCE, server.wait())
                .await
                .expect("the server stopped")
                .unwrap();
            assert!(!status.success(), "pid {child}: {status}");
            assert!(
                grandchild.gone_within(PATIENCE),
                "a runner outlived the stop"
            );
        });
    }

    #[test]
    fn stop_tree_ends_a_stale_server_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let mut stale = helper_as("tree", &pids).spawn().unwrap();
        let (child, grandchild) = tree_pids(&pids);
        let (child, grandchild) = (Watched::open(child), Watched::open(grandchild));
        stop_tree(child.1, crate::platform::STOP_GRACE);
        assert!(
            child.gone_within(PATIENCE),
            "the stale server is still running"
        );
        assert!(
            grandchild.gone_within(PATIENCE),
            "its child is still running"
        );
        let _ = stale.wait();
    }

    #[test]
    fn a_crash_status_is_a_failure_exit_code() {
        let status = std::process::Command::new("cmd")
            .args(["/c", "exit", "-1073741819"]) // 0xC0000005, STATUS_ACCESS_VIOLATION
            .status()
            .expect("run cmd");
        assert_eq!(status.code(), Some(0xC000_0005_u32 as i32));
        assert_eq!(crate::platform::exit_code(status), 1);
    }
}
