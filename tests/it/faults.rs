//! Faults, as a user meets them: a taken port, a failed pull, Ollama dying under
//! Codex, the launcher killed or signalled, Ctrl-C during a download, and a server
//! left behind by a crashed launcher. Each test checks the exit status, a one-line
//! message on stderr (against its snapshot), and that no process of the scratch home
//! is left.
//!
//! Where Codex itself is not the point, `CODEX_OSS_CODEX` names a small shell script
//! in the scratch dir that stands in for it (sleeps, traps signals, leaves markers).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::{
    assert_no_processes_within, assert_user_sees, exec_say_hi, exec_with, fs_read, run, script,
    Finished, Running, Scratch, GONE, REPLY, STEP,
};

/// A stand-in Codex that runs `body` (shell, in which `$STARTED` names a file for it to
/// create when the test may go on), but accepts codex-oss's model catalog at once
/// (`codex -c model_catalog_json=FILE debug models`, which the launcher runs first).
/// Returns the script and the `$STARTED` file.
fn stand_in_codex(scratch: &Scratch, name: &str, body: &str) -> (PathBuf, PathBuf) {
    let started = scratch.home().join(format!("{name}-started"));
    let codex = script(
        scratch,
        name,
        &format!(
            "[ \"$3 $4\" = 'debug models' ] && exit 0\nSTARTED='{}'\n{body}",
            started.display()
        ),
    );
    (codex, started)
}

/// A scratch home where a first run pulled the model (with a Codex that exits at once)
/// and ended, and a stand-in Codex there (see `stand_in_codex`).
fn pulled_with_codex(name: &str, body: &str) -> (Scratch, PathBuf, PathBuf) {
    let scratch = Scratch::new();
    let done = script(&scratch, "codex-exits", "exit 0\n");
    let out = run(exec_with(&scratch, &done));
    let manifest = scratch
        .oss_home()
        .join("models/manifests/registry.ollama.ai/library/gpt-oss/20b");
    assert!(
        out.status.success() && manifest.is_file(),
        "pulling the model failed:\n{}",
        out.text()
    );
    // The shared server stops when its last run is gone: the next run starts its own.
    assert_no_processes_within(scratch.home(), GONE);
    let (codex, started) = stand_in_codex(&scratch, name, body);
    (scratch, codex, started)
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
    // The snapshot shows any port as [PORT]: this one it must be.
    assert!(
        error.contains(&format!("port {port} ")),
        "the error should name port {port}: {error}"
    );
    assert_user_sees!(&scratch, "a_taken_port", error);
    assert!(
        !scratch.requests().contains("/v1/"),
        "{}",
        scratch.requests()
    );
    assert_no_processes_within(scratch.home(), GONE);
    drop(taken);
}

/// A pull that fails as `env` makes the stand-in fail: the error line (the snapshot
/// `name`), and no Codex.
fn failed_pull(name: &str, env: &[(&str, &str)]) {
    let scratch = Scratch::new();
    let mut cmd = exec_say_hi(&scratch);
    cmd.envs(env.iter().copied());
    let out = run(cmd);
    assert!(!out.status.success(), "{}", out.text());
    let error = out.error_line();
    let requests = scratch.requests();
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
    assert_user_sees!(&scratch, name, error);
}

#[test]
fn an_error_line_in_the_pull_stream_is_reported() {
    failed_pull(
        "an_error_line_in_the_pull_stream",
        &[("STAND_IN_OLLAMA_PULL_ERROR", "registry exploded: try later")],
    );
}

#[test]
fn a_404_before_the_pull_stream_is_reported() {
    failed_pull(
        "a_404_before_the_pull_stream",
        &[("STAND_IN_OLLAMA_PULL_HTTP", "404")],
    );
}

#[test]
fn an_unknown_model_is_named() {
    failed_pull("an_unknown_model", &[("CODEX_OSS_MODEL", "nosuch:1b")]);
}

#[test]
fn a_malformed_pull_line_is_reported() {
    failed_pull(
        "a_malformed_pull_line",
        &[("STAND_IN_OLLAMA_PULL_MALFORMED", "1")],
    );
}

/// The server dies under Codex: the run fails with one line that gives the server's
/// exit status and its log, whether the server was this run's own or shared (where the
/// keeper, not the launcher, saw it exit).
#[test]
fn ollama_dying_mid_session_is_a_clear_error() {
    let (scratch, codex, started) = pulled_with_codex(
        "codex-outlives-ollama",
        "touch \"$STARTED\"\nsleep 6\nexit 0\n",
    );
    for share in ["1", "0"] {
        let _ = std::fs::remove_file(&started);
        let mut cmd = exec_with(&scratch, &codex);
        cmd.env("STAND_IN_OLLAMA_EXIT_AFTER_MS", "2500")
            .env("CODEX_OSS_SHARE", share);
        let out = run(cmd);
        assert!(started.exists(), "Codex never started:\n{}", out.text());
        assert!(
            !out.status.success(),
            "exit status 0 although Ollama died (CODEX_OSS_SHARE={share}):\n{}",
            out.text()
        );
        let error = out.error_line();
        assert_user_sees!(&scratch, "ollama_dying_mid_session", error);
        let logs = scratch.oss_home().join("logs");
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
}

/// The launcher is `SIGKILLed`: no chance to clean up. Ollama and its runner must
/// still go (the shared server's keeper sees the last lease go; a server's
/// parent-death signal and watchdog if the keeper goes too), and so must Codex
/// (parent-death signal): nothing started from the scratch home may survive.
#[test]
fn sigkilled_launcher_leaves_no_server_20_times() {
    let (scratch, codex, started) = pulled_with_codex(
        "codex-sleeps",
        "touch \"$STARTED\"\nwhile :; do sleep 1; done\n",
    );
    let logs = scratch.oss_home().join("logs");
    let server_logs = || -> Vec<PathBuf> {
        std::fs::read_dir(&logs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    for round in 0..20 {
        let _ = std::fs::remove_file(&started);
        let earlier = server_logs();
        let mut launcher = Running::start(exec_with(&scratch, &codex));
        // This round's server (whoever started it) logs anew.
        let listening = |_: &Running| {
            server_logs()
                .iter()
                .filter(|log| !earlier.contains(log))
                .any(|log| fs_read(log).contains("Listening on"))
        };
        // Alternate the moment: Ollama just listening, or Codex running.
        if round % 2 == 0 {
            launcher.wait_until("`Listening on` in Ollama's log", STEP, listening);
        } else {
            launcher.wait_until("the stand-in Codex", STEP, |_| started.exists());
        }
        // Shown with the test's output when it fails.
        println!("round {round}: SIGKILL of the launcher");
        launcher.kill();
        assert_no_processes_within(scratch.home(), GONE);
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
    let marker = scratch.home().join("codex-got-signal");
    let code = 128 + signal as i32;
    let (codex, started) = stand_in_codex(
        &scratch,
        "codex-traps",
        &format!(
            "trap 'echo {name} > \"{marker}\"; kill $child; exit {code}' {name}\n\
             sleep 60 &\nchild=$!\ntouch \"$STARTED\"\nwait $child\n",
            marker = marker.display(),
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
    assert_user_sees!(
        &scratch,
        "ctrl_c_during_a_pull",
        out.line("codex-oss: stopped")
    );
    assert!(
        !scratch.requests().contains("/v1/"),
        "{}",
        scratch.requests()
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
    let cleanup = |what: &str| -> ! {
        let _ = kill(Pid::from_raw(-(server_pid as i32)), Signal::SIGKILL);
        panic!("{what}");
    };
    if !out.status.success() || !out.stdout.contains(REPLY) {
        cleanup(&out.text());
    }
    // The snapshot shows any pid as [PID]: the warning must name this one.
    let named = format!("(pid {server_pid})");
    let warning = out
        .stderr
        .lines()
        .find(|l| l.starts_with("codex-oss: warning: ") && l.contains(&named))
        .map_or_else(
            || cleanup(&format!("no warning naming {named}:\n{}", out.text())),
            str::to_owned,
        );
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
    assert_eq!(out.line("codex-oss: warning: "), warning, "{}", out.text());
    assert_user_sees!(&scratch, "a_stale_server_from_a_crashed_launcher", warning);
}

/// A model store too small for the model: a plain message before any download, both
/// for a model whose size codex-oss knows (gpt-oss:20b, about 14 GB) and for one whose
/// size only the pull's first progress line tells.
#[test]
fn a_full_model_disk_is_named_before_the_download() {
    let scratch = Scratch::new();
    let script = r#"
        mkdir -p "$H/models" && mount -t tmpfs -o size=16m none "$H/models" || exit 99
        for model in gpt-oss:20b tiny:1b; do
            mkdir "$OUT/$model"
            CODEX_OSS_MODEL=$model "$BIN" exec --skip-git-repo-check "say hi" </dev/null \
                >"$OUT/$model/stdout" 2>"$OUT/$model/stderr"
            echo $? >"$OUT/$model/status"
        done
        exit 0
    "#;
    let out = crate::bundle::in_mount_namespace(
        &scratch,
        script,
        &[
            ("STAND_IN_OLLAMA_REQUEST_LOG", &scratch.request_log()),
            ("STAND_IN_OLLAMA_KNOWN", Path::new("tiny:1b")),
            ("STAND_IN_OLLAMA_MODEL_BYTES", Path::new("33554432")),
        ],
    );
    // tiny:1b is pullable with a 32 MiB blob: more than the 16 MiB store holds.
    for (model, name) in [
        ("gpt-oss:20b", "a_full_model_disk_for_a_known_model"),
        ("tiny:1b", "a_full_model_disk_for_a_model_the_pull_sizes"),
    ] {
        let out = Finished::read_from(&out.join(model));
        assert!(!out.status.success(), "{model}: {}", out.text());
        assert_user_sees!(&scratch, name, out.error_line());
    }
    let requests = scratch.requests();
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

/// `clean` while a run goes on: it removes what nobody uses (another version of a
/// payload, an interrupted unpack, the logs of servers that are gone) and keeps what the
/// run uses (its payloads, its server's log) and, without `--models`, the models.
#[test]
fn clean_during_a_run_keeps_what_the_run_uses() {
    let (scratch, codex, started) = pulled_with_codex(
        "codex-waits",
        "touch \"$STARTED\"\nwhile [ ! -e \"$STARTED.go\" ]; do sleep 0.1; done\n",
    );
    let home = scratch.oss_home();
    let old_version = home.join("codex/0.0.1-aaaaaaaaaaaa");
    std::fs::create_dir_all(old_version.join("bin")).unwrap();
    std::fs::write(old_version.join("bin/codex"), b"an older Codex").unwrap();
    let interrupted = home.join("ollama/.tmp-12345");
    std::fs::create_dir_all(&interrupted).unwrap();
    let logs = home.join("logs");
    let earlier_logs: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(!earlier_logs.is_empty(), "the first run left no log");

    let mut running = Running::start(exec_with(&scratch, &codex));
    running.wait_until("Codex started", STEP, |_| started.exists());
    let mut cmd = scratch.codex_oss();
    cmd.arg("clean");
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(
        out.stdout.trim(),
        format!("cleaned {}", home.display()),
        "{}",
        out.text()
    );
    assert!(!old_version.exists(), "an unused version of Codex is left");
    assert!(!interrupted.exists(), "an interrupted unpack is left");
    // The run's Ollama (its Codex is the stand-in: the embedded one was never unpacked).
    assert!(scratch.unpacked("ollama").join("bin/ollama").is_file());
    assert!(home
        .join("models/manifests/registry.ollama.ai/library/gpt-oss/20b")
        .is_file());
    let left: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(
        left.len(),
        1,
        "expected the running server's log only: {left:?}"
    );
    assert!(
        !earlier_logs.contains(&left[0]),
        "an old log is left: {left:?}"
    );

    std::fs::write(format!("{}.go", started.display()), b"").unwrap();
    let out = running.finish(STEP);
    assert!(out.status.success(), "{}", out.text());
    assert_no_processes_within(scratch.home(), GONE);
}
