//! A record of every running embedded server, so that one left behind by a crashed
//! launcher is found and stopped by the next run.
//!
//! Each launcher writes `<home>/run/servers/<launcher pid>.json` and holds an exclusive
//! lock on it while it lives. The lock dies with the process, however it dies, so a
//! record whose lock can be taken belongs to a launcher that is gone; its server, if
//! still running from the recorded executable, is stopped.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::home::Home;

#[derive(Serialize, Deserialize, Debug)]
struct Record {
    launcher_pid: u32,
    server_pid: u32,
    executable: PathBuf,
    log: PathBuf,
}

/// This launcher's record; removed when dropped.
#[derive(Debug)]
pub struct Registration {
    path: PathBuf,
    _lock: File,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn servers_dir(home: &Home) -> PathBuf {
    home.run().join("servers")
}

impl Registration {
    /// Records a started server. Failing to record is not fatal: the other safeguards remain.
    pub fn new(
        home: &Home,
        server_pid: u32,
        executable: &Path,
        log: &Path,
    ) -> Option<Registration> {
        let dir = servers_dir(home);
        std::fs::create_dir_all(&dir).ok()?;
        let launcher_pid = std::process::id();
        let path = dir.join(format!("{launcher_pid}.json"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .ok()?;
        file.lock().ok()?;
        let record = Record {
            launcher_pid,
            server_pid,
            executable: executable.to_owned(),
            log: log.to_owned(),
        };
        file.write_all(&serde_json::to_vec(&record).ok()?).ok()?;
        Some(Registration { path, _lock: file })
    }
}

/// Stops servers whose launcher is gone, and removes their records.
pub fn stop_stale(home: &Home) {
    let Ok(entries) = std::fs::read_dir(servers_dir(home)) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // its launcher is alive
        }
        if let Ok(record) =
            serde_json::from_slice::<Record>(&std::fs::read(&path).unwrap_or_default())
        {
            if is_running(record.server_pid, &record.executable) {
                crate::ui::warn(format!(
                    "stopping an Ollama server (pid {}) left by an earlier run that ended abruptly",
                    record.server_pid
                ));
                stop_group(record.server_pid);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// True when `pid` runs `executable` (a pid reused by another program is left alone).
/// The executable is the process image or, for a script, one of its first arguments.
fn is_running(pid: u32, executable: &Path) -> bool {
    let pid = sysinfo::Pid::from_u32(pid);
    let mut system = sysinfo::System::new();
    // refresh_processes() does not read command lines: ask for them, and for the image.
    system.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::Some(&[pid]),
        true,
        sysinfo::ProcessRefreshKind::nothing()
            .with_exe(sysinfo::UpdateKind::Always)
            .with_cmd(sysinfo::UpdateKind::Always),
    );
    let Some(process) = system.process(pid) else {
        return false;
    };
    process.exe() == Some(executable)
        || process
            .cmd()
            .iter()
            .take(2)
            .any(|arg| Path::new(arg) == executable)
}

#[cfg(unix)]
fn stop_group(pid: u32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    for _ in 0..50 {
        if killpg(group, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = killpg(group, Signal::SIGKILL);
}

#[cfg(windows)]
fn stop_group(pid: u32) {
    let mut system = sysinfo::System::new();
    let pid = sysinfo::Pid::from_u32(pid);
    system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
    if let Some(process) = system.process(pid) {
        process.kill();
    }
    std::thread::sleep(Duration::from_millis(100));
}
