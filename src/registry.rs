//! A record of every running embedded server, so that one left behind by a crashed
//! launcher is found and stopped by the next run.
//!
//! Each launcher writes a record of its own under `<home>/run/servers/` (a unique name:
//! launchers in different pid namespaces may share a pid and a home) and holds an
//! exclusive lock on it while it lives. The lock dies with the process, however it
//! dies, so a record whose lock can be taken belongs to a launcher that is gone.
//!
//! A record is a claim, not a proof: its server is stopped only when the process it
//! names is still the very process that was started (same pid, start time, boot and pid
//! namespace), leads its own process tree, and runs the Ollama executable this
//! launcher would run. A record that fails any of these is removed and never acted on.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::read_json;
use crate::home::Home;
use crate::lock;
use crate::platform::{self, ProcessIdentity};

#[derive(Serialize, Deserialize, Debug)]
struct Record {
    launcher: ProcessIdentity,
    server: ProcessIdentity,
    executable: PathBuf,
    log: PathBuf,
}

fn servers_dir(home: &Home) -> PathBuf {
    home.run().join("servers")
}

/// Records a started server, as long as the claim lives. Failing to record is not fatal:
/// the other safeguards remain.
pub fn register(
    home: &Home,
    server_pid: u32,
    executable: &Path,
    log: &Path,
) -> Option<lock::Claim> {
    let record = Record {
        launcher: ProcessIdentity::of(std::process::id())?,
        server: ProcessIdentity::of(server_pid)?,
        executable: executable.to_owned(),
        log: log.to_owned(),
    };
    let dir = servers_dir(home);
    crate::home::make_private_dir(&dir).ok()?;
    let (mut file, path) = tempfile::Builder::new()
        .prefix(&format!("{}-", std::process::id()))
        .suffix(".json")
        .tempfile_in(&dir)
        .ok()?
        .keep()
        .ok()?;
    // A new file of our own: nobody else can hold its lock.
    if lock::try_take(&file, lock::Mode::Exclusive, &path).ok()? == lock::Taken::Busy {
        return None;
    }
    file.write_all(&serde_json::to_vec(&record).ok()?).ok()?;
    Some(lock::Claim { path, file })
}

/// Stops servers whose launcher is gone, and removes their records. `executable` is the
/// Ollama this launcher runs: a record naming a program other than it or an Ollama
/// unpacked in this home is not acted on.
pub fn stop_stale(home: &Home, executable: &Path) {
    let Ok(entries) = std::fs::read_dir(servers_dir(home)) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(Some(_held)) = lock::take_free(&path) else {
            continue; // its launcher is alive (or this filesystem cannot tell)
        };
        // A record from another boot, another pid namespace or an older codex-oss is
        // removed without acting on it: its pids mean nothing here.
        if let Some(record) = read_json::<Record>(&path) {
            if is_our_server(&record, home, executable) {
                caution!(
                    "stopping an Ollama server (pid {}) left by an earlier run that ended abruptly",
                    record.server.pid
                );
                platform::stop_tree(record.server.pid, platform::STOP_GRACE);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// The logs of the servers running now: those whose record is still locked by its
/// launcher (or keeper). On a filesystem without locks every record counts as running.
pub fn live_logs(home: &Home) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(servers_dir(home)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| matches!(lock::take_free(path), Ok(None)))
        .filter_map(|path| read_json::<Record>(&path).map(|r| r.log))
        .collect()
}

/// True when the record's server is still the process that was started, running the
/// Ollama this launcher runs (or one unpacked in this home by another version), at the
/// head of its own process tree.
fn is_our_server(record: &Record, home: &Home, executable: &Path) -> bool {
    let ours = record.executable == executable
        || (record.executable.is_absolute()
            && !record
                .executable
                .components()
                .any(|c| c == std::path::Component::ParentDir)
            && record.executable.starts_with(home.payload_dir("ollama")));
    ours && record.server.is_alive()
        && platform::leads_its_tree(record.server.pid)
        && runs(record.server.pid, &record.executable)
}

/// True when `pid` runs `executable`: the process image or, for a script, one of its
/// first arguments.
fn runs(pid: u32, executable: &Path) -> bool {
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
    system.process(pid).is_some_and(|process| {
        let mut first_args = process.cmd().iter().take(2);
        process.exe() == Some(executable) || first_args.any(|arg| Path::new(arg) == executable)
    })
}
