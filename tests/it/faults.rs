//! Faults, as a user meets them: a taken port, a failed pull, Ollama dying under
//! Codex, the launcher killed or signalled, Ctrl-C during a download, and a server
//! left behind by a crashed launcher. Each test checks the exit status, a one-line
//! message on stderr, and that no process of the scratch home is left.
//!
//! Where Codex itself is not the point, `CODEX_OSS_CODEX` names a small shell script
//! in the scratch dir that stands in for it (sleeps, traps signals, leaves markers).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::{assert_no_processes_within, processes_mentioning, Scratch};

pub(crate) const REPLY: &str = "Hello from the stand-in model.";
/// How long any one step may take before the test fails with what it saw.
pub(crate) const STEP: Duration = Duration::from_secs(60);
/// How long Ollama and its runner may take to go away.
pub(crate) const GONE: Duration = Duration::from_secs(10);

/// A `codex-oss` run whose output is collected while it runs.
pub(crate) struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Finished {
    pub(crate) fn text(&self) -> String {
        format!(
            "status: {}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// The launcher's `codex-oss: error: ...` line; there must be exactly one, alone.
    pub(crate) fn error_line(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        let errors: Vec<usize> = (0..lines.len())
            .filter(|i| lines[*i].starts_with("codex-oss: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "expected one error line:\n{}", self.text());
        if let Some(next) = lines.get(errors[0] + 1) {
            assert!(
                !next.starts_with(' '),
                "the error runs over more than one line:\n{}",
                self.text()
            );
        }
        lines[errors[0]].to_owned()
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
    pub(crate) fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start codex-oss");
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

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub(crate) fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal codex-oss");
    }

    /// Waits until `ready` holds, failing with the output so far after `timeout`.
    pub(crate) fn wait_until(
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
                    "codex-oss ended ({status}) before {what}:\nstderr:\n{}",
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
    pub(crate) fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for codex-oss") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "codex-oss did not exit within {timeout:?}:\nstderr:\n{}",
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
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave the launcher running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn run(cmd: Command) -> Finished {
    Running::start(cmd).finish(STEP)
}

/// `codex-oss exec --skip-git-repo-check "say hi"` with the real Codex.
pub(crate) fn exec_say_hi(scratch: &Scratch) -> Command {
    let mut cmd = scratch.codex_oss();
    cmd.args(["exec", "--skip-git-repo-check", "say hi"])
        .env("STAND_IN_OLLAMA_REQUEST_LOG", request_log(scratch));
    cmd
}

fn request_log(scratch: &Scratch) -> PathBuf {
    scratch.home().join("requests.log")
}

fn requests(scratch: &Scratch) -> String {
    std::fs::read_to_string(request_log(scratch)).unwrap_or_default()
}

/// An executable shell script in the scratch home.
pub(crate) fn script(scratch: &Scratch, name: &str, body: &str) -> PathBuf {
    let path = scratch.home().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
    path
}

/// `codex-oss exec` running a stand-in Codex script.
pub(crate) fn exec_with(scratch: &Scratch, codex: &Path) -> Command {
    let mut cmd = scratch.codex_oss();
    cmd.args(["exec", "--skip-git-repo-check", "say hi"])
        .env("CODEX_OSS_CODEX", codex);
    cmd
}

/// A first run that pulls the model, with a Codex that exits at once.
fn pull_model(scratch: &Scratch) {
    let done = script(scratch, "codex-exits", "exit 0\n");
    let out = run(exec_with(scratch, &done));
    assert!(
        out.status.success(),
        "pulling the model failed:\n{}",
        out.text()
    );
    assert!(
        scratch
            .oss_home()
            .join("models/manifests/registry.ollama.ai/library/gpt-oss/20b")
            .is_file(),
        "{}",
        out.text()
    );
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let scratch = Scratch::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().unwrap().port();
    let mut cmd = exec_say_hi(&scratch);
    cmd.env("CODEX_OSS_PORT", port.to_string());
    let out = run(cmd);
    assert!(!out.status.success(), "{}", out.text());
    let error = out.error_line();
    assert!(
        error.contains("already in use")
            && error.contains("CODEX_OSS_PORT")
            && error.contains(&port.to_string()),
        "the error should say port {port} (CODEX_OSS_PORT) is in use: {error}"
    );
    assert!(
        !requests(&scratch).contains("/v1/"),
        "{}",
        requests(&scratch)
    );
    assert_no_processes_within(scratch.home(), GONE);
    drop(taken);
}

/// A pull that fails as `env` makes the stand-in fail: the error line, and no Codex.
fn failed_pull(env: &[(&str, &str)]) -> (Scratch, String) {
    let scratch = Scratch::new();
    let mut cmd = exec_say_hi(&scratch);
    cmd.envs(env.iter().copied());
    let out = run(cmd);
    assert!(!out.status.success(), "{}", out.text());
    let error = out.error_line();
    let requests = requests(&scratch);
    assert!(
        requests.contains("POST /api/pull"),
        "no pull was tried:\n{requests}"
    );
    assert!(
        !requests.contains("/v1/"),
        "Codex started although the pull failed:\n{requests}\n{}",
        out.text()
    );
    assert!(!out.stdout.contains(REPLY), "{}", out.text());
    assert_no_processes_within(scratch.home(), GONE);
    (scratch, error)
}

#[test]
fn an_error_line_in_the_pull_stream_is_reported() {
    let (_scratch, error) =
        failed_pull(&[("STAND_IN_OLLAMA_PULL_ERROR", "registry exploded: try later")]);
    assert!(
        error.contains("registry exploded: try later") && error.contains("gpt-oss:20b"),
        "{error}"
    );
}

#[test]
fn a_404_before_the_pull_stream_is_reported() {
    let (_scratch, error) = failed_pull(&[("STAND_IN_OLLAMA_PULL_HTTP", "404")]);
    assert!(
        error.contains("404") && error.contains("gpt-oss:20b"),
        "{error}"
    );
}

#[test]
fn an_unknown_model_is_named() {
    let (_scratch, error) = failed_pull(&[("CODEX_OSS_MODEL", "nosuch:1b")]);
    assert!(error.contains("nosuch:1b"), "{error}");
}

#[test]
fn a_malformed_pull_line_is_reported() {
    let (_scratch, error) = failed_pull(&[("STAND_IN_OLLAMA_PULL_MALFORMED", "1")]);
    assert!(error.contains("malformed"), "{error}");
}

#[test]
fn ollama_dying_mid_session_is_a_clear_error() {
    let scratch = Scratch::new();
    pull_model(&scratch);
    let started = scratch.home().join("codex-started");
    let codex = script(
        &scratch,
        "codex-outlives-ollama",
        &format!("touch '{}'\nsleep 6\nexit 0\n", started.display()),
    );
    let mut cmd = exec_with(&scratch, &codex);
    cmd.env("STAND_IN_OLLAMA_EXIT_AFTER_MS", "2500");
    let out = run(cmd);
    assert!(started.exists(), "Codex never started:\n{}", out.text());
    assert!(
        !out.status.success(),
        "exit status 0 although Ollama died:\n{}",
        out.text()
    );
    let error = out.error_line();
    let logs = scratch.oss_home().join("logs");
    assert!(
        error.contains("Ollama stopped unexpectedly")
            && error.contains(&logs.display().to_string()),
        "{error}"
    );
    let log = error[error.find(&logs.display().to_string()).unwrap()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let log_text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("read {log}: {e}"));
    assert!(
        log_text.contains("crashing"),
        "the named log is not the server's:\n{log_text}"
    );
    assert_no_processes_within(scratch.home(), GONE);
}

/// The launcher is `SIGKILLed`: no chance to clean up. Ollama and its runner must
/// still go (parent-death signal, watchdog), and so must Codex (parent-death signal):
/// nothing started from the scratch home may survive.
#[test]
fn sigkilled_launcher_leaves_no_server_20_times() {
    let scratch = Scratch::new();
    pull_model(&scratch);
    let started = scratch.home().join("codex-started");
    let codex = script(
        &scratch,
        "codex-sleeps",
        &format!("touch '{}'\nwhile :; do sleep 1; done\n", started.display()),
    );
    let logs = scratch.oss_home().join("logs");
    for round in 0..20 {
        let _ = std::fs::remove_file(&started);
        let mut launcher = Running::start(exec_with(&scratch, &codex));
        let pid = launcher.child.id();
        let listening = |_: &Running| {
            std::fs::read_dir(&logs)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .ends_with(&format!("-{pid}.log"))
                })
                .any(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .contains("Listening on")
                })
        };
        // Alternate the moment: Ollama just listening, or Codex running.
        if round % 2 == 0 {
            launcher.wait_until("`Listening on` in Ollama's log", STEP, listening);
        } else {
            launcher.wait_until("the stand-in Codex", STEP, |_| started.exists());
        }
        launcher.child.kill().expect("SIGKILL the launcher");
        let _ = launcher.child.wait();
        let deadline = Instant::now() + GONE;
        loop {
            let left = processes_mentioning(scratch.home());
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: left behind {GONE:?} after SIGKILL of the launcher: {left:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The next run finds the records of the killed launchers and runs normally.
    let done = script(&scratch, "codex-exits", "exit 0\n");
    let out = run(exec_with(&scratch, &done));
    assert!(out.status.success(), "{}", out.text());
    assert!(!out.stderr.contains("warning"), "{}", out.text());
    assert_no_processes_within(scratch.home(), GONE);
}

/// SIGTERM or SIGHUP reaches Codex, which exits; then Ollama is stopped.
fn signal_during_codex(signal: Signal, name: &str) {
    let scratch = Scratch::new();
    let started = scratch.home().join("codex-started");
    let marker = scratch.home().join("codex-got-signal");
    let code = 128 + signal as i32;
    let codex = script(
        &scratch,
        "codex-traps",
        &format!(
            "trap 'echo {name} > \"{marker}\"; kill $child; exit {code}' {name}\n\
             sleep 60 &\nchild=$!\ntouch '{started}'\nwait $child\n",
            marker = marker.display(),
            started = started.display(),
        ),
    );
    let mut launcher = Running::start(exec_with(&scratch, &codex));
    launcher.wait_until("the stand-in Codex", STEP, |_| started.exists());
    launcher.signal(signal);
    let out = launcher.finish(STEP);
    assert_eq!(out.status.code(), Some(code), "{}", out.text());
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default().trim(),
        name,
        "Codex did not get {name}:\n{}",
        out.text()
    );
    assert_no_processes_within(scratch.home(), GONE);
}

#[test]
fn sigterm_reaches_codex_and_stops_ollama() {
    signal_during_codex(Signal::SIGTERM, "TERM");
}

#[test]
fn sighup_reaches_codex_and_stops_ollama() {
    signal_during_codex(Signal::SIGHUP, "HUP");
}

/// Percentages of the plain progress lines, `codex-oss: pulling 1a2b: 12% of 8.4 MB`.
fn percentages(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter(|l| l.starts_with("codex-oss: pulling ") && l.contains("% of "))
        .filter_map(|l| l.rsplit(": ").next()?.split('%').next()?.parse().ok())
        .collect()
}

#[test]
fn ctrl_c_during_a_pull_stops_cleanly_and_the_next_run_resumes() {
    let scratch = Scratch::new();
    let mut cmd = exec_say_hi(&scratch);
    cmd.env("STAND_IN_OLLAMA_CHUNK_DELAY_MS", "300");
    let mut launcher = Running::start(cmd);
    launcher.wait_until("download progress above 0%", STEP, |r| {
        percentages(&r.stderr()).iter().any(|p| *p > 0)
    });
    launcher.signal(Signal::SIGINT);
    let out = launcher.finish(STEP);
    assert_eq!(out.status.code(), Some(130), "{}", out.text());
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("codex-oss: ") && l.contains("resumes")),
        "no word that the download resumes:\n{}",
        out.text()
    );
    assert!(
        !requests(&scratch).contains("/v1/"),
        "{}",
        requests(&scratch)
    );
    assert_no_processes_within(scratch.home(), GONE);
    let blobs = scratch.oss_home().join("models/blobs");
    let partial: Vec<(String, u64)> = std::fs::read_dir(&blobs)
        .unwrap_or_else(|e| panic!("read {}: {e}", blobs.display()))
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("-partial"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    assert!(
        partial.iter().any(|(_, len)| *len > 0),
        "no partial download kept in {}: {partial:?}",
        blobs.display()
    );

    let out = run(exec_say_hi(&scratch));
    assert!(out.status.success(), "{}", out.text());
    assert!(out.stdout.contains(REPLY), "{}", out.text());
    let resumed = percentages(&out.stderr);
    assert!(
        resumed.first().is_some_and(|p| *p > 0),
        "the second pull started from 0% instead of resuming ({resumed:?}):\n{}",
        out.text()
    );
    assert_no_processes_within(scratch.home(), GONE);
}

#[test]
fn a_stale_server_from_a_crashed_launcher_is_stopped() {
    let scratch = Scratch::new();
    let doctor = run({
        let mut cmd = scratch.codex_oss();
        cmd.arg("doctor");
        cmd
    });
    assert!(doctor.status.success(), "{}", doctor.text());
    let executable = scratch.unpacked("ollama").join("bin/ollama");

    // The server a crashed launcher left: in its own process group, like the real one.
    let stale_home = scratch.home().join("stale");
    std::fs::create_dir_all(&stale_home).unwrap();
    let log = scratch.home().join("stale.log");
    let mut stale = Command::new(&executable)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &stale_home)
        .env("OLLAMA_HOST", "127.0.0.1:0")
        .env("OLLAMA_MODELS", stale_home.join("models"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .process_group(0)
        .spawn()
        .expect("start the stale server");
    let server_pid = stale.id();
    let deadline = Instant::now() + STEP;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Listening on")
    {
        if Instant::now() > deadline {
            let _ = kill(Pid::from_raw(-(server_pid as i32)), Signal::SIGKILL);
            panic!(
                "the stale server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // Reap it when it exits, as init would for an orphan.
    let reaper = std::thread::spawn(move || stale.wait());

    // A launcher pid that is certainly gone.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let launcher_pid = gone.id();
    let servers = scratch.oss_home().join("run/servers");
    std::fs::create_dir_all(&servers).unwrap();
    std::fs::write(
        servers.join(format!("{launcher_pid}-crashed.json")),
        {
            let mut launcher = crate::hardening::identity(server_pid);
            launcher["pid"] = launcher_pid.into();
            serde_json::json!({
                "launcher": launcher,
                "server": crate::hardening::identity(server_pid),
                "executable": executable,
                "log": "x",
            })
        }
        .to_string(),
    )
    .unwrap();

    let out = run(exec_say_hi(&scratch));
    let cleanup = |what: &str| {
        let _ = kill(Pid::from_raw(-(server_pid as i32)), Signal::SIGKILL);
        panic!("{what}");
    };
    if !out.status.success() || !out.stdout.contains(REPLY) {
        cleanup(&out.text());
    }
    let warning = format!("stopping an Ollama server (pid {server_pid}) left by an earlier run");
    if !out
        .stderr
        .lines()
        .any(|l| l.starts_with("codex-oss: warning: ") && l.contains(&warning))
    {
        cleanup(&format!("no warning `{warning}`:\n{}", out.text()));
    }
    let deadline = Instant::now() + GONE;
    while !reaper.is_finished() {
        if Instant::now() > deadline {
            cleanup("the stale server is still running");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = reaper.join();
    assert!(
        !servers
            .join(format!("{launcher_pid}-crashed.json"))
            .exists(),
        "the stale record was not removed"
    );
    assert_no_processes_within(scratch.home(), GONE);
}

/// A model store too small for the model: a plain message before any download, both
/// for a model whose size codex-oss knows (gpt-oss:20b, about 14 GB) and for one whose
/// size only the pull's first progress line tells.
#[test]
fn a_full_model_disk_is_named_before_the_download() {
    let scratch = Scratch::new();
    let requests = scratch.home().join("requests.log");
    let script = r#"
        mkdir -p "$H/models" && mount -t tmpfs -o size=16m none "$H/models" || exit 99
        for model in gpt-oss:20b tiny:1b; do
            CODEX_OSS_MODEL=$model "$BIN" exec --skip-git-repo-check "say hi" </dev/null \
                >"$OUT/$model.stdout" 2>"$OUT/$model.stderr"
            echo $? >"$OUT/$model.status"
        done
        exit 0
    "#;
    let (_, out) = crate::bundle::in_mount_namespace(
        &scratch,
        script,
        &[
            ("STAND_IN_OLLAMA_REQUEST_LOG", &requests),
            ("STAND_IN_OLLAMA_KNOWN", Path::new("tiny:1b")),
            ("STAND_IN_OLLAMA_MODEL_BYTES", Path::new("33554432")),
        ],
    );
    // tiny:1b is pullable with a 32 MiB blob: more than the 16 MiB store holds.
    for (model, needs) in [
        ("gpt-oss:20b", "it needs 14.0 GB"),
        ("tiny:1b", "it needs 33.6 MB"),
    ] {
        let status = fs_read(&out.join(format!("{model}.status")));
        let stderr = fs_read(&out.join(format!("{model}.stderr")));
        assert_ne!(status.trim(), "0", "{model}: {stderr}");
        assert!(
            stderr.contains(&format!("not enough disk space to pull {model}: {needs}")),
            "{model}: {stderr}"
        );
        assert!(
            stderr.contains("set OLLAMA_MODELS to a larger disk"),
            "{model}: {stderr}"
        );
    }
    let requests = fs_read(&requests);
    assert!(
        !requests.contains("POST /api/pull gpt-oss:20b"),
        "pulled although the disk is short:\n{requests}"
    );
    assert!(
        !requests.contains("/v1/responses"),
        "Codex ran:\n{requests}"
    );
    assert_no_processes_within(scratch.home(), GONE);
}

pub(crate) fn fs_read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
