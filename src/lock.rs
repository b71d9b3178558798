//! Lock files, taken the way they work on every filesystem a home may live on.
//!
//! A lock file is opened for reading and writing: `NFSv4` refuses a shared lock on a
//! file opened write-only (EBADF), as uv found. A lock is never waited for by blocking
//! in the kernel: the wait polls, says once what it waits for, and gives up with a
//! clear error after a while, so a hung or foreign holder cannot stall a run forever.
//! Where the filesystem has no locks at all (ENOLCK, ENOTSUP), codex-oss warns once and
//! goes on without them.

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// How long a wait goes before it is said.
const QUIET_WAIT: Duration = Duration::from_millis(700);
/// How often a busy lock is tried again.
const POLL: Duration = Duration::from_millis(50);

/// Opens (creating) `path` for reading and writing; an existing file that cannot be
/// opened for writing (a read-only home) is opened for reading, which still locks.
pub fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .or_else(|e| File::open(path).map_err(|_| e))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    Held,
    /// Another process holds it.
    Busy,
    /// The filesystem has no locks (warned once): go on, but take nothing for granted.
    NoLocks,
}

pub fn try_take(file: &File, mode: Mode, path: &Path) -> io::Result<Taken> {
    let result = match mode {
        Mode::Shared => file.try_lock_shared(),
        Mode::Exclusive => file.try_lock(),
    };
    match result {
        Ok(()) => Ok(Taken::Held),
        Err(TryLockError::WouldBlock) => Ok(Taken::Busy),
        Err(TryLockError::Error(err)) if crate::platform::locks_unsupported(&err) => {
            warn_unsupported(path, &err);
            Ok(Taken::NoLocks)
        }
        Err(TryLockError::Error(err)) => Err(err),
    }
}

/// Opens `path` and takes its exclusive lock if it is free; `None` when another process
/// holds it (or the filesystem cannot tell).
pub fn take_free(path: &Path) -> io::Result<Option<File>> {
    let file = open(path)?;
    Ok((try_take(&file, Mode::Exclusive, path).ok() == Some(Taken::Held)).then_some(file))
}

/// Opens `path` and takes the lock, waiting while another process holds it: says once
/// "waiting for another codex-oss to finish {what}", and gives up after `patience`
/// with an error that names the file. The lock is released when the file is dropped.
pub fn wait(path: &Path, mode: Mode, what: &str, patience: Duration) -> io::Result<File> {
    let file = open(path)?;
    let start = Instant::now();
    let mut said = false;
    while try_take(&file, mode, path)? == Taken::Busy {
        // A wait of a moment (another run starting) goes unsaid.
        if !said && start.elapsed() > QUIET_WAIT {
            say!("waiting for another codex-oss to finish {what}");
            said = true;
        }
        if start.elapsed() > patience {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "another codex-oss has been {what} for over {} minutes (it holds {}): stop it, or if none is running, delete that file",
                    patience.as_secs() / 60,
                    path.display()
                ),
            ));
        }
        std::thread::sleep(POLL);
    }
    Ok(file)
}

/// A file of this process's own whose lock it holds (a launcher's lease, a server's
/// record): the lock goes with the process, however it ends; the file is removed when
/// dropped.
#[derive(Debug)]
pub struct Claim {
    pub path: PathBuf,
    #[allow(dead_code, reason = "held for its lock, never read")]
    pub file: File,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

static WARNED: AtomicBool = AtomicBool::new(false);

fn warn_unsupported(path: &Path, err: &io::Error) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        let dir = path.parent().unwrap_or(path);
        caution!(
            "the filesystem of {} has no file locks ({err}): going on without them, so do not run two codex-oss at once there (CODEX_OSS_HOME can move the home to a local disk)",
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_reported_busy_and_then_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let take = |file: &File, mode| try_take(file, mode, &path).unwrap();
        let first = open(&path).unwrap();
        assert_eq!(take(&first, Mode::Exclusive), Taken::Held);
        let second = open(&path).unwrap();
        assert_eq!(take(&second, Mode::Shared), Taken::Busy);
        drop(first);
        assert_eq!(take(&second, Mode::Shared), Taken::Held);
        // Shared locks coexist.
        let third = open(&path).unwrap();
        assert_eq!(take(&third, Mode::Shared), Taken::Held);
    }

    #[test]
    fn waiting_gives_up_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unpack.lock");
        let holder = open(&path).unwrap();
        assert_eq!(
            try_take(&holder, Mode::Exclusive, &path).unwrap(),
            Taken::Held
        );
        let patience = Duration::from_millis(200);
        let err =
            wait(&path, Mode::Exclusive, "unpacking", patience).expect_err("the lock is held");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn lock_files_are_opened_for_reading_too() {
        // NFSv4 needs read access for a shared lock: check the open mode directly.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.lock");
        let mut file = open(&path).unwrap();
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut file, &mut buf).expect("readable");
    }

    #[cfg(unix)]
    #[test]
    fn no_locks_on_the_filesystem_is_not_an_error() {
        let enolck = io::Error::from_raw_os_error(nix::errno::Errno::ENOLCK as i32);
        assert!(crate::platform::locks_unsupported(&enolck));
        let ebadf = io::Error::from_raw_os_error(nix::errno::Errno::EBADF as i32);
        assert!(!crate::platform::locks_unsupported(&ebadf));
    }
}
