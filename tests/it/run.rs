//! Running Codex through codex-oss: the real pinned Codex CLI against the embedded
//! stand-in Ollama, and a recording stand-in Codex where the exact arguments and
//! environment Codex receives are the point.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{
    assert_no_processes_within, assert_user_sees, exec_with, run, script, Finished, Scratch, GONE,
    REPLY,
};

fn exec(scratch: &Scratch, args: &[&str]) -> (Finished, String) {
    let mut cmd = scratch.codex_oss();
    cmd.arg("exec").arg("--skip-git-repo-check").args(args);
    logged(scratch, cmd)
}

/// Runs `cmd` with the stand-in noting its requests: what it printed, and the requests
/// so far (of every run in this scratch home).
fn logged(scratch: &Scratch, mut cmd: Command) -> (Finished, String) {
    cmd.env("STAND_IN_OLLAMA_REQUEST_LOG", scratch.request_log());
    let out = run(cmd);
    (out, scratch.requests())
}

/// How many of the `requests` start with each of `starts`.
fn counts<const N: usize>(requests: &str, starts: [&str; N]) -> [usize; N] {
    starts.map(|start| requests.lines().filter(|l| l.starts_with(start)).count())
}

/// The first run in a new home, as a user without a terminal reads it: the pull of the
/// model, line by line (a stand-in Codex that exits at once).
#[test]
fn the_first_run_tells_what_it_pulls() {
    let scratch = Scratch::new();
    let codex = script(&scratch, "codex-exits", "exit 0\n");
    let out = run(exec_with(&scratch, &codex));
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(out.stdout, "", "{}", out.text());
    assert_user_sees!(&scratch, "the_first_run", out.stderr);
}

#[test]
fn exec_with_real_codex_answers_and_pulls_the_model_once() {
    let scratch = Scratch::new();
    let (first, requests) = exec(&scratch, &["say hi"]);
    assert!(first.status.success(), "{}", first.text());
    assert!(first.stdout.contains(REPLY), "{}", first.text());
    assert!(
        first.stderr.contains("pulling gpt-oss:20b"),
        "{}",
        first.text()
    );
    assert_eq!(
        counts(&requests, ["POST /api/pull gpt-oss:20b"]),
        [1],
        "{requests}"
    );
    assert_no_processes_within(scratch.home(), Duration::from_secs(5));

    let (second, requests) = exec(&scratch, &["say hi again"]);
    assert!(second.status.success(), "{}", second.text());
    assert!(second.stdout.contains(REPLY), "{}", second.text());
    assert!(!second.stderr.contains("pulling"), "{}", second.text());
    assert_eq!(
        counts(
            &requests,
            ["POST /api/pull", "POST /v1/responses gpt-oss:20b"]
        ),
        [1, 2],
        "pulled once, answered twice:\n{requests}"
    );
    assert_no_processes_within(scratch.home(), Duration::from_secs(5));

    // Everything Ollama writes stays inside CODEX_OSS_HOME.
    let oss = scratch.oss_home();
    assert!(oss
        .join("models/manifests/registry.ollama.ai/library/gpt-oss/20b")
        .is_file());
    assert!(oss.join("ollama-home/.ollama/id_ed25519").is_file());
    assert!(
        !scratch.home().join(".ollama").exists(),
        "Ollama wrote into the user's ~/.ollama"
    );
    let logs: Vec<_> = std::fs::read_dir(oss.join("logs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(logs.len(), 2, "one Ollama log per run");
}

/// tiny:1b pulled and asked, gpt-oss:20b never pulled.
const TINY_NOT_20B: [&str; 3] = [
    "POST /api/pull tiny:1b",
    "POST /v1/responses tiny:1b",
    "POST /api/pull gpt-oss:20b",
];

#[test]
fn root_flags_reach_the_subcommand_in_the_pinned_codex() {
    // The launcher puts `-m MODEL` before `exec`: the model Codex asks for proves it applied.
    // A small model the stand-in knows: gpt-oss:120b would need 65 GB of free disk.
    let scratch = Scratch::new();
    let mut cmd = scratch.codex_oss();
    cmd.env("STAND_IN_OLLAMA_KNOWN", "tiny:1b")
        .env("CODEX_OSS_MODEL", "tiny:1b")
        .args(["exec", "--skip-git-repo-check", "say hi"]);
    let (out, requests) = logged(&scratch, cmd);
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(counts(&requests, TINY_NOT_20B), [1, 1, 0], "{requests}");
}

#[test]
fn the_users_model_flag_wins_and_strict_config_accepts_our_settings() {
    let scratch = Scratch::new();
    let mut cmd = scratch.codex_oss();
    cmd.env("STAND_IN_OLLAMA_KNOWN", "tiny:1b").args([
        "--strict-config",
        "exec",
        "--skip-git-repo-check",
        "-m",
        "tiny:1b",
        "say hi",
    ]);
    let (out, requests) = logged(&scratch, cmd);
    assert!(out.status.success(), "{}", out.text());
    assert!(out.stdout.contains(REPLY), "{}", out.text());
    assert_eq!(counts(&requests, TINY_NOT_20B), [1, 1, 0], "{requests}");
}

/// A stand-in Codex that records its arguments and environment, then exits with $`EXIT_WITH`.
fn recording_codex(scratch: &Scratch) -> PathBuf {
    script(
        scratch,
        "recording-codex",
        "printf '%s\\n' \"$@\" > \"$RECORD_DIR/args\"\n\
         env | grep -E '^(CODEX_OSS|OLLAMA)_' | sort > \"$RECORD_DIR/env\"\n\
         [ -z \"$RECORD_VERSION\" ] || curl -s \"${CODEX_OSS_BASE_URL%/v1}/api/version\" > \"$RECORD_DIR/version\"\n\
         exit \"${EXIT_WITH:-0}\"\n",
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn codex_gets_the_local_provider_the_context_window_and_the_server_address() {
    let scratch = Scratch::new();
    let record = scratch.home().join("record");
    std::fs::create_dir_all(&record).unwrap();
    let port = free_port();
    let mut cmd = scratch.codex_oss();
    cmd.env("CODEX_OSS_CODEX", recording_codex(&scratch))
        .env("RECORD_DIR", &record)
        .env("EXIT_WITH", "7")
        .env("RECORD_VERSION", "1")
        .env("CODEX_OSS_PORT", port.to_string())
        .env("OLLAMA_CONTEXT_LENGTH", "40000")
        .args(["review", "--uncommitted", "--", "-m is not a flag here"]);
    let out = run(cmd);
    assert_eq!(
        out.status.code(),
        Some(7),
        "Codex's exit status is ours:\n{}",
        out.text()
    );
    let args = std::fs::read_to_string(record.join("args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "--oss",
            "--local-provider",
            "ollama",
            "-m",
            "gpt-oss:20b",
            "--no-daemon",
            "-c",
            "model_context_window=40000",
            "-c",
            "model_auto_compact_token_limit=36000",
            "-c",
            "model_reasoning_effort=medium",
            "-c",
            "web_search=\"disabled\"",
            "-c",
            "check_for_update_on_startup=false",
            "-c",
            "tui.show_tooltips=false",
            "review",
            "--uncommitted",
            "--",
            "-m is not a flag here"
        ]
    );
    // Codex talks to Ollama through the run's relay: its own loopback port, the same
    // in both variables, and Ollama answers there.
    let env = std::fs::read_to_string(record.join("env")).unwrap();
    let relay = env
        .lines()
        .find_map(|l| l.strip_prefix("CODEX_OSS_PORT="))
        .unwrap_or_else(|| panic!("no CODEX_OSS_PORT: {env}"));
    assert_ne!(relay, port.to_string(), "Codex is given Ollama's own port");
    assert!(
        env.contains(&format!("CODEX_OSS_BASE_URL=http://127.0.0.1:{relay}/v1\n")),
        "{env}"
    );
    let version = std::fs::read_to_string(record.join("version")).unwrap();
    assert!(version.contains("\"version\":\"0.32.15\""), "{version}");
    assert_no_processes_within(&scratch.oss_home().join("ollama"), Duration::from_secs(5));

    // Ollama was started with the same context, a resumable model store, in our home.
    let log = std::fs::read_dir(scratch.oss_home().join("logs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains(&format!("Listening on 127.0.0.1:{port}")),
        "{log}"
    );
}

/// The user's own Ollama (the unpacked stand-in, models in `own-models`), answering;
/// with `request_log`, it notes its requests there. Returns it and its `/v1` address.
fn own_server(scratch: &Scratch, request_log: Option<&std::path::Path>) -> (Child, String) {
    let doctor = crate::bundle::doctor(scratch);
    assert!(doctor.status.success(), "{}", doctor.text());
    let ollama = scratch.unpacked("ollama").join("bin/ollama");
    let port = free_port();
    let mut cmd = Command::new(&ollama);
    cmd.arg("serve")
        .env("OLLAMA_HOST", format!("127.0.0.1:{port}"))
        .env("OLLAMA_MODELS", scratch.home().join("own-models"))
        .env("HOME", scratch.home())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(log) = request_log {
        cmd.env("STAND_IN_OLLAMA_REQUEST_LOG", log);
    }
    let server = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "own server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, format!("http://127.0.0.1:{port}/v1"))
}

#[test]
fn a_users_own_server_is_used_and_none_is_started() {
    let scratch = Scratch::new();
    let (mut server, base) = own_server(&scratch, None);
    let mut cmd = scratch.codex_oss();
    cmd.env("CODEX_OSS_BASE_URL", &base)
        .args(["exec", "--skip-git-repo-check", "say hi"]);
    let out = run(cmd);
    // doctor says what answers there.
    let mut doctor = scratch.codex_oss();
    doctor
        .env("CODEX_OSS_BASE_URL", &base)
        .args(["doctor", "--json"]);
    let report = run(doctor);
    let report: serde_json::Value =
        serde_json::from_str(&report.stdout).unwrap_or_else(|e| panic!("{e}: {}", report.text()));
    assert_eq!(report["server"]["kind"], "ollama", "{report}");
    assert_eq!(report["server"]["version"], "0.32.15", "{report}");
    // SIGTERM, as a user stops it: Ollama then stops its runner too.
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    assert_no_processes_within(scratch.home(), Duration::from_secs(10));
    assert!(out.status.success(), "{}", out.text());
    assert!(out.stdout.contains(REPLY), "{}", out.text());
    let logs =
        std::fs::read_dir(scratch.oss_home().join("logs")).map_or(0, std::iter::Iterator::count);
    assert_eq!(
        logs, 0,
        "an embedded server was started although CODEX_OSS_BASE_URL was set"
    );
    assert!(
        scratch.home().join("own-models/manifests").exists(),
        "the model went to the user's server"
    );

    // An unreachable server is a clear error, not a hang.
    let mut cmd = scratch.codex_oss();
    cmd.env(
        "CODEX_OSS_BASE_URL",
        format!("http://127.0.0.1:{}/v1", free_port()),
    )
    .args(["exec", "hi"]);
    let out = run(cmd);
    assert!(!out.status.success(), "{}", out.text());
    assert_user_sees!(&scratch, "an_unreachable_own_server", out.error_line());
}

/// A run asks the user's server what it is once (`GET /api/version`), not once to tell
/// Ollama from an OpenAI-compatible server and again to connect.
#[test]
fn a_run_asks_the_users_server_what_it_is_once() {
    let scratch = Scratch::new();
    let log = scratch.home().join("own-requests.log");
    let (mut server, base) = own_server(&scratch, Some(&log));
    let codex = script(&scratch, "codex-exits", "exit 0\n");
    let mut cmd = exec_with(&scratch, &codex);
    cmd.env("CODEX_OSS_BASE_URL", &base);
    let out = run(cmd);
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    assert!(out.status.success(), "{}", out.text());
    let requests = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(counts(&requests, ["GET /api/version"]), [1], "{requests}");
    assert_no_processes_within(scratch.home(), Duration::from_secs(10));
}

#[test]
fn models_pull_list_and_remove() {
    let scratch = Scratch::new();
    let models = |args: &[&str]| {
        let mut cmd = scratch.codex_oss();
        cmd.arg("models").args(args);
        let out = run(cmd);
        assert!(out.status.success(), "{}", out.text());
        out.stdout
    };
    let empty = models(&["list"]);
    assert_user_sees!(&scratch, "models_list_with_no_models", empty);
    models(&["pull"]);
    assert!(models(&["list"]).contains("gpt-oss:20b"));
    assert_user_sees!(&scratch, "models_rm", models(&["rm", "gpt-oss:20b"]));
    assert_eq!(models(&["list"]), empty);
    assert_no_processes_within(&scratch.oss_home().join("ollama"), Duration::from_secs(5));
}

/// `CODEX_OSS_LOG=debug` shows the launcher's diagnostics (how it runs Codex, among
/// them); without it a run prints none.
#[test]
fn codex_oss_log_shows_the_launchers_diagnostics() {
    let scratch = Scratch::new();
    let codex = script(&scratch, "codex-exits", "exit 0\n");
    let quiet = run(exec_with(&scratch, &codex));
    assert!(quiet.status.success(), "{}", quiet.text());
    let mut cmd = exec_with(&scratch, &codex);
    cmd.env("CODEX_OSS_LOG", "debug");
    let loud = run(cmd);
    assert!(loud.status.success(), "{}", loud.text());
    let running = format!("running {}", codex.display());
    assert!(
        loud.stderr
            .lines()
            .any(|l| l.contains("DEBUG") && l.contains(&running)),
        "{}",
        loud.text()
    );
    assert!(
        !quiet.stderr.contains("DEBUG") && !quiet.stderr.contains(&running),
        "{}",
        quiet.text()
    );
    assert_no_processes_within(scratch.home(), GONE);
}
