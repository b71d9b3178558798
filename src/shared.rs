//! One embedded server for every codex-oss with the same settings: two terminals with
//! Codex load gpt-oss:20b once, not twice.
//!
//! Theory of operation. The server belongs to a keeper, a small detached `codex-oss
//! __keeper` process in a session of its own, not to any one launcher, so it outlives
//! the launcher that started it (even one killed with `SIGKILL`) while others use it. Each
//! launcher holds a lease: an exclusive lock on a file of its own under
//! `<home>/run/shared/<key>.leases/`, which the kernel releases when the launcher dies,
//! however it dies (with `OLLAMA_KEEP_ALIVE` set, the server stays that long after the
//! last run, so the next one finds the model loaded). The keeper waits on each lease's lock in a thread of its own (the one
//! lock codex-oss waits for in the kernel: the system hands it over the moment its
//! holder ends), so it learns of a run's end at once, and stops the server when no
//! lease is left; a look at the folder a few times a second finds new leases. If the keeper itself is killed, the server goes with it
//! (parent-death signal and watchdog, as for any embedded server).
//!
//! `<key>` names the settings that make servers interchangeable (Ollama executable,
//! model store, context length, bind address). Joining and starting happen under
//! `<key>.lock`, so launchers that start at the same moment end up with one server;
//! the keeper takes the same lock before it stops, so a launcher never joins a server
//! that is going away. `<key>.json` records the server (address, log, the keeper's
//! identity: pid plus start time and boot, so a reused pid is never taken for it). The
//! keeper writes it twice: "starting" (its identity alone) before it starts Ollama, so
//! that a launcher that comes while it starts (the one that started it may have been
//! killed) waits for it rather than starting a second server; then with the address.
//! A live keeper is waited for however slow its server is to answer, never replaced,
//! and a record is removed only by the keeper it names.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncBufReadExt;

use crate::files::read_json;
use crate::home::Home;
use crate::lock::{self, Mode};
use crate::platform::{self, ProcessIdentity};
use crate::server::{self, Server};
use crate::settings::Settings;

/// The hidden first argument that makes `codex-oss` a shared server's keeper.
pub const KEEPER_COMMAND: &str = "__keeper";
/// How often the keeper counts leases.
const LEASE_POLL: Duration = Duration::from_millis(200);
/// How long a launcher waits for another one that is starting the server.
const START_PATIENCE: Duration = Duration::from_secs(120);

/// What makes two servers interchangeable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSettings {
    pub executable: PathBuf,
    pub models: PathBuf,
    pub context_length: u32,
    pub bind: String,
    /// The user's `OLLAMA_*` and GPU settings the server runs with.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl ServerSettings {
    pub fn of(settings: &Settings, executable: &Path) -> ServerSettings {
        ServerSettings {
            executable: executable.to_owned(),
            models: settings.home.models(),
            context_length: settings.context_length,
            bind: settings.bind.ollama_host(),
            env: settings.server_env.clone(),
        }
    }

    /// A short stable name for these settings.
    pub fn key(&self) -> String {
        let text = serde_json::to_string(self).expect("settings serialise");
        crate::files::hex(&Sha256::digest(text.as_bytes())[..8])
    }

    /// The settings in which `other` differs, each said for the user.
    fn differences(&self, other: &ServerSettings) -> Vec<String> {
        let mut found = Vec::new();
        if self.models != other.models {
            found.push(format!("model store {}", other.models.display()));
        }
        if self.context_length != other.context_length {
            found.push(format!("context length {}", other.context_length));
        }
        if self.bind != other.bind {
            found.push(format!("address {}", other.bind));
        }
        if self.executable != other.executable {
            found.push(format!("Ollama {}", other.executable.display()));
        }
        let names: BTreeSet<&String> = self.env.keys().chain(other.env.keys()).collect();
        for name in names {
            if self.env.get(name) != other.env.get(name) {
                // How the other server has it, without its value (it may be a secret).
                let how = if other.env.contains_key(name) {
                    "set otherwise"
                } else {
                    "unset"
                };
                found.push(format!("{name} {how}"));
            }
        }
        found
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    keeper: ProcessIdentity,
    /// The server, once the keeper has started it; none while it starts.
    #[serde(flatten)]
    serving: Option<Serving>,
    settings: ServerSettings,
}

/// Where a keeper's server listens, and its log.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Serving {
    addr: SocketAddr,
    log: PathBuf,
}

fn dir(home: &Home) -> PathBuf {
    home.run().join("shared")
}

/// `<key>.<ext>` in the shared servers' folder: `leases` (the folder of leases), `json`
/// (the record), `lock`, and `<keeper pid>.exit`, where a keeper leaves its server's exit
/// status when the server dies under it, for the launchers that were using it to report.
fn key_path(home: &Home, key: &str, ext: &str) -> PathBuf {
    dir(home).join(format!("{key}.{ext}"))
}

/// Exit notes older than this were read long ago (launchers read them at once).
const EXIT_NOTE_KEPT: Duration = Duration::from_secs(60);

/// Removes this key's exit notes that nobody can still be waiting to read.
fn remove_old_exit_notes(home: &Home, key: &str) {
    let prefix = format!("{key}.");
    for path in files(&dir(home), "exit") {
        let old = path
            .symlink_metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > EXIT_NOTE_KEPT);
        let ours = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix));
        if ours && old {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The files named `*.<ext>` in `dir`.
fn files(dir: &Path, ext: &'static str) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(move |path| path.extension().is_some_and(|x| x == ext))
}

/// This launcher's lease on a shared server in `dir`; `None` on a filesystem without
/// locks: nobody could tell the lease is alive.
fn take_lease(dir: &Path) -> Result<Option<lock::Claim>> {
    crate::home::make_private_dir(dir)
        .with_context(|| format!("could not create {}", dir.display()))?;
    // Locked under a name the keeper ignores, then renamed: the keeper never sees an
    // unlocked lease of a live launcher.
    let (file, new) = tempfile::Builder::new()
        .prefix(&format!("{}-", std::process::id()))
        .suffix(".new")
        .tempfile_in(dir)
        .with_context(|| format!("could not create a lease in {}", dir.display()))?
        .keep()
        .context("could not keep the lease file")?;
    let path = new.with_extension("lease");
    if lock::try_take(&file, Mode::Exclusive, &new)? == lock::Taken::Held {
        std::fs::rename(&new, &path).context("could not name the lease")?;
        Ok(Some(lock::Claim { path, file }))
    } else {
        let _ = std::fs::remove_file(&new);
        Ok(None)
    }
}

pub struct Shared {
    addr: SocketAddr,
    log: PathBuf,
    keeper: ProcessIdentity,
    exit_note: PathBuf,
    _lease: lock::Claim,
}

impl Shared {
    /// Joins the server for these settings, starting it (with its keeper) if there is
    /// none. `None` where sharing cannot work (a filesystem without locks).
    pub async fn join(settings: &Settings, executable: &Path) -> Result<Option<Shared>> {
        let home = &settings.home;
        let wanted = ServerSettings::of(settings, executable);
        let key = wanted.key();
        let Some(lease) = take_lease(&key_path(home, &key, "leases"))? else {
            return Ok(None);
        };
        let path = key_path(home, &key, "lock");
        let _lock = tokio::task::spawn_blocking(move || {
            lock::wait(&path, Mode::Exclusive, "starting Ollama", START_PATIENCE)
        })
        .await
        .context("waiting for the shared server's lock stopped")??;
        let found = live_server(&key_path(home, &key, "json")).await?;
        let (keeper, serving) = if let Some((keeper, serving)) = found {
            tracing::info!("joining the shared Ollama at {}", serving.addr);
            (keeper, serving)
        } else {
            // No record, or its keeper is gone: never act on it (the new keeper's replaces it).
            explain_new_server(home, &wanted);
            start_keeper(home, &key).await?
        };
        Ok(Some(Shared {
            exit_note: key_path(home, &key, &format!("{}.exit", keeper.pid)),
            addr: serving.addr,
            log: serving.log,
            keeper,
            _lease: lease,
        }))
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Resolves when the server (its keeper) is gone.
    pub async fn wait_gone(&self) {
        while self.keeper.is_alive() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The same account as for a server of this run's own, with the exit status the
    /// keeper noted.
    pub fn died_message(&self) -> String {
        let status = std::fs::read_to_string(&self.exit_note)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| server::UNKNOWN_EXIT.to_owned());
        server::died_message(&status, &self.log)
    }
}

/// The server of the live keeper `path` names, waited for while it starts or is slow
/// to answer (paused, swapping, busy loading a model): a live keeper is never replaced.
/// None when there is no record or its keeper is gone.
async fn live_server(path: &Path) -> Result<Option<(ProcessIdentity, Serving)>> {
    let deadline = std::time::Instant::now() + START_PATIENCE;
    let mut said = false;
    loop {
        let Some(record) = read_json::<Record>(path).filter(|r| r.keeper.is_alive()) else {
            return Ok(None);
        };
        if let Some(serving) = record.serving {
            if answers(serving.addr).await {
                return Ok(Some((record.keeper, serving)));
            }
            if !said {
                say!(
                    "the shared Ollama at {} is slow to answer: waiting for it",
                    serving.addr
                );
            }
        } else if !said {
            say!("another codex-oss is starting the shared Ollama: waiting for it");
        }
        said = true;
        if std::time::Instant::now() > deadline {
            bail!(
                "the shared Ollama (its keeper is pid {}) has not answered for {} s: stop it (kill {}), or run with --no-share",
                record.keeper.pid,
                START_PATIENCE.as_secs(),
                record.keeper.pid
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// True when the server answers `GET /api/version`.
async fn answers(addr: SocketAddr) -> bool {
    let Ok(client) = crate::http::loopback_client_builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    client
        .get(format!("http://{addr}/api/version"))
        .send()
        .await
        .is_ok_and(|resp| resp.status().is_success())
}

/// Says why a second server starts while another runs with other settings.
fn explain_new_server(home: &Home, wanted: &ServerSettings) {
    let other = live_records(home)
        .map(|(_, r)| wanted.differences(&r.settings))
        .filter(|d| !d.is_empty())
        .min_by_key(Vec::len);
    // The nearest server: the fewest settings apart.
    if let Some(difference) = other.map(|d| d.join(", ")) {
        say!(
            "another codex-oss shares an Ollama with other settings ({difference}): starting one for these"
        );
    }
}

/// Starts a keeper for `key` and waits until its server is ready (its first line).
async fn start_keeper(home: &Home, key: &str) -> Result<(ProcessIdentity, Serving)> {
    let exe = std::env::current_exe().context("could not find codex-oss itself")?;
    let mut command = tokio::process::Command::new(exe);
    // In the home, not the first run's project (a drive that could then not be
    // unmounted), and with no more of its environment than the server needs.
    command
        .current_dir(home.root())
        .env_clear()
        .envs(keeper_env())
        .arg(KEEPER_COMMAND)
        .arg(home.root())
        .arg(key)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    platform::detach(&mut command);
    let mut keeper = command.spawn().context("could not start Ollama's keeper")?;
    let stdout = keeper.stdout.take().context("the keeper has no output")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(
        server::READY_DEADLINE + Duration::from_secs(10),
        lines.next_line(),
    )
    .await
    .context("Ollama's keeper did not report within its deadline")?
    .context("could not read from Ollama's keeper")?;
    match first.as_deref() {
        Some("ready") => read_json::<Record>(&key_path(home, key, "json"))
            .and_then(|record| Some((record.keeper, record.serving?)))
            .context("Ollama's keeper said it was ready but left no record"),
        Some(line) => bail!("{}", line.strip_prefix("failed: ").unwrap_or(line)),
        None => bail!("Ollama's keeper stopped before the server was ready"),
    }
}

/// The environment a keeper (and so its server) starts with: what the system needs to
/// run a program, codex-oss's and Ollama's variables, the GPU choice and the proxy
/// (`Settings::server_env`, all in the key), and the stand-in Ollama's knobs the tests
/// set (`STAND_IN_*`). Never the rest of the first run's shell (its secrets, `LD_*`),
/// which every later run would share. A relative path is made absolute from the
/// run's folder, since the keeper starts elsewhere.
fn keeper_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    use crate::env_vars::EnvVars;
    const PATHS: [&str; 4] = [
        EnvVars::CODEX_OSS_HOME,
        EnvVars::OLLAMA_MODELS,
        EnvVars::CODEX_OSS_OLLAMA,
        EnvVars::CODEX_OSS_CODEX,
    ];
    let cwd = std::env::current_dir().unwrap_or_default();
    std::env::vars_os()
        .map(|(name, value)| {
            let relative = Path::new(&value).is_relative() && !value.is_empty();
            if relative && PATHS.iter().any(|path| name == *path) {
                let absolute = cwd.join(&value).into_os_string();
                (name, absolute)
            } else {
                (name, value)
            }
        })
        .filter(|(name, _)| {
            name.to_str().is_some_and(|name| {
                ["CODEX_OSS_", "OLLAMA_", "STAND_IN_"]
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
                    || EnvVars::GPU_VISIBILITY.contains(&name)
                    || EnvVars::SERVER_NETWORK.contains(&name)
                    || EnvVars::SYSTEM
                        .iter()
                        .any(|system| system.eq_ignore_ascii_case(name))
            })
        })
        .collect()
}

/// The keeper: starts the server for `key`, reports `ready` (or `failed: ...`) on its
/// stdout, and stops the server when no lease is left, or on SIGTERM.
pub async fn keep(home_root: &str, key: &str) -> ExitCode {
    match keep_inner(home_root, key).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The launcher reads this line; when it is gone, nobody does, and that is fine.
            out!("failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn keep_inner(home_root: &str, key: &str) -> Result<()> {
    let settings = Settings::load(None)?;
    if settings.home.root() != Path::new(home_root) {
        bail!("the keeper's home differs from its launcher's");
    }
    let tool = crate::tools::ollama(&settings)?;
    let wanted = ServerSettings::of(&settings, &tool.path);
    if wanted.key() != key {
        bail!("the keeper's settings differ from its launcher's");
    }
    let home = &settings.home;
    remove_old_exit_notes(home, key);
    let me = ProcessIdentity::of(std::process::id()).context("no identity for the keeper")?;
    let path = key_path(home, key, "json");
    let mut record = Record {
        keeper: me.clone(),
        serving: None,
        settings: wanted,
    };
    // "Starting": a launcher that comes now waits for this keeper.
    crate::files::write_atomically(&path, &serde_json::to_vec(&record)?)?;
    let mut server = Server::start(&settings, &tool.path)
        .await
        .inspect_err(|_| remove_own_record(&path, &me))?;
    record.serving = Some(Serving {
        addr: server.addr(),
        log: server.log_path().to_owned(),
    });
    crate::files::write_atomically(&path, &serde_json::to_vec(&record)?)?;
    out!("ready");

    let mut signals = platform::Signals::new()?;
    let keep_alive = settings.keep_alive();
    let mut idle_since = None;
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let mut watch = LeaseWatch {
        dir: key_path(home, key, "leases"),
        watched: std::collections::HashSet::new(),
        ended: ended_tx,
    };
    watch.scan();
    let reason = loop {
        tokio::select! {
            status = server.wait_exit() => {
                remove_own_record(&path, &me);
                let status = server::describe_exit(status);
                let note = key_path(home, key, &format!("{}.exit", record.keeper.pid));
                if let Err(err) = crate::files::write_atomically(&note, status.as_bytes()) {
                    tracing::warn!("could not note the server's exit in {}: {err}", note.display());
                }
                break format!("the server stopped ({status})");
            }
            _ = signals.recv() => break "a signal".to_owned(),
            Some(()) = ended.recv() => {}
            () = tokio::time::sleep(LEASE_POLL) => watch.scan(),
        }
        if time_to_stop(home, key, &me, keep_alive, &mut idle_since) {
            break "no launcher uses it any more".to_owned();
        }
    };
    tracing::info!("stopping the shared Ollama: {reason}");
    remove_own_record(&path, &me);
    server.stop().await;
    drop(tool);
    Ok(())
}

/// True when the server has had no run for `keep_alive` (`OLLAMA_KEEP_ALIVE`; none: for
/// ever), counted from `idle_since`, the moment the last lease went (see `last_one_gone`).
/// A run that joins meanwhile finds the server, and its model, still loaded.
fn time_to_stop(
    home: &Home,
    key: &str,
    me: &ProcessIdentity,
    keep_alive: Option<Duration>,
    idle_since: &mut Option<std::time::Instant>,
) -> bool {
    if live_leases(&key_path(home, key, "leases")) > 0 {
        *idle_since = None;
        return false;
    }
    let since = *idle_since.get_or_insert_with(std::time::Instant::now);
    keep_alive.is_some_and(|keep| since.elapsed() >= keep) && last_one_gone(home, key, me)
}

/// True when no lease is alive, checked again under the key's lock so that no launcher
/// joins while the server goes away. The lock is held until the keeper exits.
fn last_one_gone(home: &Home, key: &str, me: &ProcessIdentity) -> bool {
    if !key_path(home, key, "leases").is_dir() {
        return true; // the home was deleted: nobody can hold a lease any more
    }
    let Ok(Some(file)) = lock::take_free(&key_path(home, key, "lock")) else {
        return false; // a launcher is joining: look again later
    };
    if live_leases(&key_path(home, key, "leases")) > 0 {
        return false;
    }
    remove_own_record(&key_path(home, key, "json"), me);
    // Keep the lock until this process ends.
    std::mem::forget(file);
    true
}

/// The leases the keeper waits on, each in a thread blocked on its lock: when the holder
/// ends, the thread gets the lock, removes the lease and says so at once.
struct LeaseWatch {
    dir: PathBuf,
    watched: std::collections::HashSet<PathBuf>,
    ended: tokio::sync::mpsc::UnboundedSender<()>,
}

impl LeaseWatch {
    /// Starts waiting on the leases that appeared since the last look.
    fn scan(&mut self) {
        for path in files(&self.dir, "lease") {
            if self.watched.contains(&path) {
                continue;
            }
            let Ok(file) = lock::open(&path) else {
                continue;
            };
            self.watched.insert(path.clone());
            let ended = self.ended.clone();
            std::thread::spawn(move || {
                if file.lock().is_ok() {
                    let _ = std::fs::remove_file(&path);
                }
                drop(file);
                let _ = ended.send(());
            });
        }
    }
}

/// Counts leases whose holder lives; removes those of holders that are gone.
fn live_leases(dir: &Path) -> usize {
    let mut live = 0;
    for path in files(dir, "lease") {
        match lock::take_free(&path) {
            Ok(Some(_held)) => drop(std::fs::remove_file(&path)),
            Ok(None) => live += 1,
            Err(_) => {}
        }
    }
    live
}

/// Removes the record at `path` if it names this keeper: another keeper's is its own.
fn remove_own_record(path: &Path, me: &ProcessIdentity) {
    if read_json::<Record>(path).is_some_and(|record| record.keeper == *me) {
        let _ = std::fs::remove_file(path);
    }
}

/// The shared servers running now, with their live leases: for `doctor`.
pub fn running(home: &Home) -> Vec<(String, usize, PathBuf)> {
    live_records(home)
        .filter_map(|(path, record)| {
            let serving = record.serving?;
            let key = path.file_stem()?.to_string_lossy().into_owned();
            Some((
                format!("http://{}", serving.addr),
                live_leases(&key_path(home, &key, "leases")),
                serving.log,
            ))
        })
        .collect()
}

/// The records of the keepers alive now, with their paths.
fn live_records(home: &Home) -> impl Iterator<Item = (PathBuf, Record)> {
    files(&dir(home), "json")
        .filter_map(|path| read_json::<Record>(&path).map(|record| (path, record)))
        .filter(|(_, record)| record.keeper.is_alive())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const LEASES: &str = "CODEX_OSS_TEST_LEASES";

    /// Not a test: a process that holds a lease in `$CODEX_OSS_TEST_LEASES` until killed.
    #[test]
    #[ignore = "a helper process of the lease test"]
    fn lease_holder() {
        if let Some(dir) = std::env::var_os(LEASES) {
            let _lease = take_lease(Path::new(&dir)).unwrap().expect("a lease");
            std::thread::sleep(Duration::from_secs(120));
        }
    }

    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "no {what} within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The keeper's count: a lease is live while its process lives, however that process
    /// ends (the system releases a killed process's lock), and a dead one is cleared away.
    #[test]
    fn a_lease_lives_as_long_as_its_process() {
        let dir = tempfile::tempdir().unwrap();
        let leases = dir.path().join("key.leases");
        assert_eq!(live_leases(&leases), 0);
        let ours = take_lease(&leases).unwrap().expect("locks work here");
        assert_eq!(live_leases(&leases), 1);

        let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "shared::tests::lease_holder", "--ignored"])
            .env(LEASES, &leases)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        until("second lease", || live_leases(&leases) == 2);
        holder.kill().unwrap(); // no chance to remove its lease file
        holder.wait().unwrap();
        until("release of the killed process's lease", || {
            live_leases(&leases) == 1
        });
        let files = || std::fs::read_dir(&leases).unwrap().count();
        assert_eq!(files(), 1, "the dead lease's file is left");

        drop(ours);
        assert_eq!(live_leases(&leases), 0);
        assert_eq!(files(), 0);
    }
}
