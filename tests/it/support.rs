//! Shared test helpers: a scratch home per test, a `codex-oss` command that runs in it,
//! one way to run a command and read what it printed (`run`, `Running`, `Finished`),
//! stand-in Codex scripts, and snapshots of what users read (`assert_user_sees!`).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// What the stand-in model answers to everything.
pub const REPLY: &str = "Hello from the stand-in model.";
/// How long any one step may take before the test fails with what it saw.
pub const STEP: Duration = Duration::from_secs(60);
/// How long Ollama and its runner may take to go away.
pub const GONE: Duration = Duration::from_secs(10);

/// A scratch HOME with `CODEX_OSS_HOME` inside it; removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("create scratch dir"),
        }
    }

    /// The user's HOME for the test.
    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// `CODEX_OSS_HOME`: everything codex-oss writes.
    pub fn oss_home(&self) -> PathBuf {
        self.dir.path().join(".codex-oss")
    }

    /// `codex-oss` with a clean environment pointing at this scratch home.
    pub fn codex_oss(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_codex-oss"));
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("CODEX_")
                || key.starts_with("OLLAMA_")
                || key.starts_with("STAND_IN_")
                // The width clap wraps help at when there is no terminal.
                || key == "COLUMNS"
                || key == "LINES"
            {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", self.home())
            .env("CODEX_OSS_HOME", self.oss_home())
            .current_dir(self.home());
        cmd
    }

    /// The single unpacked version directory of a payload (`ollama` or `codex`).
    pub fn unpacked(&self, name: &str) -> PathBuf {
        let dirs = version_dirs(&self.oss_home().join(name));
        assert_eq!(
            dirs.len(),
            1,
            "expected one unpacked {name}, found {dirs:?}"
        );
        dirs.into_iter().next().unwrap()
    }

    /// Where the stand-in Ollama notes the requests it gets (`exec_say_hi` sets it).
    pub fn request_log(&self) -> PathBuf {
        self.home().join("requests.log")
    }

    /// The requests noted so far, one `METHOD PATH [model]` a line.
    pub fn requests(&self) -> String {
        std::fs::read_to_string(self.request_log()).unwrap_or_default()
    }
}

/// Visible (non-dot) directories in `dir`.
pub fn version_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

pub fn fs_read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ------------------------------------------------------------ running commands

/// A command whose output is collected while it runs.
pub struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// A command that ended: its exit status and what it printed.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// What a command run in a script left in `dir`: the files `status` (the exit
    /// code, as `echo $?` writes it), `stdout` and `stderr`.
    pub fn read_from(dir: &Path) -> Finished {
        let code: i32 = fs_read(&dir.join("status"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: not an exit code: {e}", dir.join("status").display()));
        Finished {
            status: ExitStatus::from_raw(code << 8),
            stdout: fs_read(&dir.join("stdout")),
            stderr: fs_read(&dir.join("stderr")),
        }
    }

    /// Status, stdout and stderr, for assertion messages.
    pub fn text(&self) -> String {
        format!(
            "status: {}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// The one line, of stdout or stderr, that starts with `start`: there must be
    /// exactly one, and alone (the next line does not continue it, indented).
    pub fn line(&self, start: &str) -> String {
        let mut found = Vec::new();
        for text in [&self.stdout, &self.stderr] {
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.starts_with(start) {
                    assert!(
                        !lines.get(i + 1).is_some_and(|next| next.starts_with(' ')),
                        "the line `{start}...` runs over more than one line:\n{}",
                        self.text()
                    );
                    found.push((*line).to_owned());
                }
            }
        }
        assert_eq!(
            found.len(),
            1,
            "expected one line `{start}...`:\n{}",
            self.text()
        );
        found.pop().unwrap()
    }

    /// The launcher's `codex-oss: error: ...` line; there must be exactly one, alone.
    pub fn error_line(&self) -> String {
        self.line("codex-oss: error: ")
    }
}

fn collect(
    reader: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            into.lock().unwrap().push_str(&line);
            line.clear();
        }
    })
}

impl Running {
    /// Starts `cmd` with no stdin, collecting stdout and stderr.
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", cmd.get_program().display()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Running {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the command");
    }

    /// SIGKILL, and reap it; what it started may live on (and hold its output open).
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the command");
        let _ = self.child.wait();
    }

    /// Waits until `ready` holds, failing with the output so far after `timeout`.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut(&Running) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if ready(self) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the command ended ({status}) before {what}:\nstderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}:\nstderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for the exit (killing it after `timeout`) and returns what it printed.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the command") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the command did not exit within {timeout:?}:\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave the command running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` (no stdin) to its end, within `STEP`.
pub fn run(cmd: Command) -> Finished {
    Running::start(cmd).finish(STEP)
}

// ------------------------------------------------------------ codex-oss exec

/// `codex-oss exec --skip-git-repo-check "say hi"` with the real Codex, noting the
/// stand-in's requests in `Scratch::request_log`.
pub fn exec_say_hi(scratch: &Scratch) -> Command {
    let mut cmd = scratch.codex_oss();
    cmd.args(["exec", "--skip-git-repo-check", "say hi"])
        .env("STAND_IN_OLLAMA_REQUEST_LOG", scratch.request_log());
    cmd
}

/// An executable shell script in the scratch home.
pub fn script(scratch: &Scratch, name: &str, body: &str) -> PathBuf {
    let path = scratch.home().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
    path
}

/// `codex-oss exec` running a stand-in Codex script.
pub fn exec_with(scratch: &Scratch, codex: &Path) -> Command {
    let mut cmd = scratch.codex_oss();
    cmd.args(["exec", "--skip-git-repo-check", "say hi"])
        .env("CODEX_OSS_CODEX", codex);
    cmd
}

// ------------------------------------------------------------ snapshots

/// Snapshot settings for what a user of `scratch` reads: what differs from run to run
/// is replaced. The scratch home is `[HOME]`; ports `127.0.0.1:[PORT]` and `port [PORT]`; pids
/// `pid [PID]`; Ollama's log names `ollama-[TIME]-[PID].log`; unpacked directories
/// `<version>-[HASH]`; the digest of the stand-in's model blob `[DIGEST]`; free disk
/// space `[SIZE] free` (a pull may have begun to write); doctor's `disk:`, `memory:`,
/// `gpu:` and `gpu libraries:` lines `[MACHINE]`; codex-oss's own version `[VERSION]`;
/// the Codex bundle.toml pins `[CODEX_VERSION]` and the size of its payload `[CODEX_MB] MB`
/// (a Codex bump changes no snapshot).
pub fn redactions(scratch: &Scratch) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_omit_expression(true);
    settings.add_filter(
        &regex_escape(&scratch.home().display().to_string()),
        "[HOME]",
    );
    settings.add_filter(r"\b127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.add_filter(r"\bport \d+\b", "port [PORT]");
    settings.add_filter(r"\bpid \d+", "pid [PID]");
    settings.add_filter(r"\bollama-\d+-\d+\.log\b", "ollama-[TIME]-[PID].log");
    settings.add_filter(r"\b(\d+\.\d+\.\d+)-[0-9a-f]{12}\b", "${1}-[HASH]");
    settings.add_filter(r"\bpulling [0-9a-f]{12}\b", "pulling [DIGEST]");
    settings.add_filter(r"\b\d+(\.\d+)? [KMGT]?B free\b", "[SIZE] free");
    // doctor's lines about this machine: its disk, memory and GPU.
    settings.add_filter(
        r"(?m)^(disk|memory|gpu|gpu libraries): .+$",
        "$1: [MACHINE]",
    );
    settings.add_filter(
        &format!(r"\b{}\b", regex_escape(env!("CARGO_PKG_VERSION"))),
        "[VERSION]",
    );
    let codex = pinned_codex();
    settings.add_filter(
        &format!(r"Codex {} \(\d+ MB\)", regex_escape(&codex)),
        "Codex [CODEX_VERSION] ([CODEX_MB] MB)",
    );
    settings.add_filter(&format!(r"\b{}\b", regex_escape(&codex)), "[CODEX_VERSION]");
    settings
}

/// The Codex version bundle.toml pins (what the test build embeds).
pub fn pinned_codex() -> String {
    let bundle: toml::Table = include_str!("../../bundle.toml").parse().unwrap();
    bundle["codex"]["version"].as_str().unwrap().to_owned()
}

fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Asserts that `text`, redacted for `scratch` (see `redactions`), is the snapshot
/// `tests/it/snapshots/it__<module>__<name>.snap`.
macro_rules! assert_user_sees {
    ($scratch:expr, $name:expr, $text:expr $(,)?) => {
        $crate::support::redactions($scratch).bind(|| insta::assert_snapshot!($name, $text))
    };
}
pub(crate) use assert_user_sees;

// ------------------------------------------------------------ processes

/// Live processes whose command line mentions `needle` (a scratch home: the unpacked
/// Ollama and its runner live under it), as "pid cmdline" lines. Zombies are skipped.
pub fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next());
        if state == Some("Z") {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{name} {cmdline}"));
        }
    }
    found
}

/// Waits up to `timeout` for every process mentioning `needle` to be gone.
pub fn assert_no_processes_within(needle: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left behind after {timeout:?}: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
