//! One embedded server for every codex-oss with the same settings: concurrent runs
//! start one server, it outlives the run that started it while others use it, the last
//! run out stops it, and other settings (or `--no-share`) get a server of their own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{
    assert_no_processes_within, exec_with, fs_read, processes_mentioning, run, script, Running,
    Scratch, GONE, REPLY, STEP,
};

/// Servers started so far: Ollama's log files, one per server.
fn servers_started(scratch: &Scratch) -> usize {
    server_logs(scratch).len()
}

/// The log of every server started from `scratch`.
fn server_logs(scratch: &Scratch) -> Vec<PathBuf> {
    std::fs::read_dir(scratch.oss_home().join("logs")).map_or(Vec::new(), |entries| {
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect()
    })
}

/// A Codex that waits until `n` runs have reached it, then runs the real Codex: the
/// runs overlap for certain.
fn codex_behind_a_barrier(scratch: &Scratch, barrier: &Path, n: usize) -> PathBuf {
    std::fs::create_dir_all(barrier).unwrap();
    let real = scratch.unpacked("codex").join("bin/codex");
    script(
        scratch,
        &format!("codex-barrier-{n}"),
        &format!(
            "touch {b}/$$\nwhile [ $(ls {b} | wc -l) -lt {n} ]; do sleep 0.05; done\nexec {real} \"$@\"\n",
            b = barrier.display(),
            real = real.display()
        ),
    )
}

#[test]
fn two_and_then_eight_concurrent_runs_share_one_server() {
    let scratch = Scratch::new();
    assert!(crate::bundle::doctor(&scratch).status.success());
    for n in [2, 8] {
        let before = servers_started(&scratch);
        let codex =
            codex_behind_a_barrier(&scratch, &scratch.home().join(format!("barrier-{n}")), n);
        let runs: Vec<Running> = (0..n)
            .map(|_| Running::start(exec_with(&scratch, &codex)))
            .collect();
        for (i, running) in runs.into_iter().enumerate() {
            let out = running.finish(STEP * 2);
            assert!(out.status.success(), "run {i} of {n}: {}", out.text());
            assert!(out.stdout.contains(REPLY), "run {i} of {n}: {}", out.text());
        }
        assert_eq!(
            servers_started(&scratch) - before,
            1,
            "{n} runs, servers started"
        );
        assert_no_processes_within(scratch.home(), GONE);
    }
}

/// A Codex that says it has started (`touch STARTED`), waits for `go` to exist, then
/// runs `then`.
fn waiting_codex(scratch: &Scratch, name: &str, started: &str, go: &Path, then: &str) -> PathBuf {
    script(
        scratch,
        name,
        &format!(
            "touch {started}\nwhile [ ! -e {} ]; do sleep 0.05; done\n{then}\n",
            go.display()
        ),
    )
}

/// Waits until `path` exists.
fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + STEP;
    while !path.exists() {
        assert!(Instant::now() < deadline, "no {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn the_run_that_started_the_server_is_killed_and_the_other_goes_on() {
    let scratch = Scratch::new();
    let (a_ready, b_ready, go) = (
        scratch.home().join("a-ready"),
        scratch.home().join("b-ready"),
        scratch.home().join("go"),
    );
    let a_codex = script(
        &scratch,
        "codex-a",
        &format!("touch {}\nsleep 60\n", a_ready.display()),
    );
    // B uses the server after A is gone: it must still answer.
    let b_codex = waiting_codex(
        &scratch,
        "codex-b",
        &b_ready.display().to_string(),
        &go,
        "curl -sf \"${CODEX_OSS_BASE_URL%/v1}/api/version\"",
    );
    let a = Running::start(exec_with(&scratch, &a_codex));
    wait_for(&a_ready, "run A");
    let b = Running::start(exec_with(&scratch, &b_codex));
    wait_for(&b_ready, "run B");
    a.signal(Signal::SIGKILL);
    let _ = a.finish(STEP);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&go, b"").unwrap();
    let out = b.finish(STEP);
    assert!(out.status.success(), "B lost its server:\n{}", out.text());
    assert!(out.stdout.contains("\"version\""), "{}", out.text());
    assert_eq!(servers_started(&scratch), 1);
    assert_no_processes_within(scratch.home(), GONE);
}

/// The key of the shared server for the default settings: the name of its lock file.
fn shared_key(scratch: &Scratch) -> String {
    let dir = scratch.oss_home().join("run/shared");
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".lock").map(str::to_owned)
        })
        .expect("a shared server's lock")
}

#[test]
fn a_stale_record_is_replaced_and_never_acted_on() {
    let scratch = Scratch::new();
    let done = script(&scratch, "codex-exits", "exit 0\n");
    assert!(run(exec_with(&scratch, &done)).status.success());
    let key = shared_key(&scratch);

    // A record left behind: its keeper's pid now belongs to another program.
    let mut victim = Command::new("sleep")
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut keeper = crate::hardening::identity(victim.id());
    keeper["start_time"] = (keeper["start_time"].as_u64().unwrap() - 1).into();
    let record = scratch.oss_home().join(format!("run/shared/{key}.json"));
    std::fs::write(
        &record,
        serde_json::json!({
            "keeper": keeper,
            "addr": "127.0.0.1:9",
            "log": "/nonexistent.log",
            "settings": {"executable": "/x", "models": "/y", "context_length": 32768, "bind": "127.0.0.1:0"},
        })
        .to_string(),
    )
    .unwrap();

    let out = run(crate::support::exec_say_hi(&scratch));
    let alive = victim.try_wait().unwrap().is_none();
    let _ = victim.kill();
    let _ = victim.wait();
    assert!(out.status.success(), "{}", out.text());
    assert!(out.stdout.contains(REPLY), "{}", out.text());
    assert!(alive, "the stale record's pid was acted on");
    // The new server's keeper removes its record when it stops, after the run.
    assert_no_processes_within(scratch.home(), GONE);
    assert!(
        !record.exists(),
        "the stale record is still there after the run"
    );
}

#[test]
fn other_settings_or_no_share_get_a_server_of_their_own() {
    let scratch = Scratch::new();
    let (ready, go) = (scratch.home().join("ready"), scratch.home().join("go"));
    let waits = waiting_codex(
        &scratch,
        "codex-waits",
        &format!("{}.$$", ready.display()),
        &go,
        "true",
    );
    let first = Running::start(exec_with(&scratch, &waits));
    let ready_count = |n: usize| {
        let deadline = Instant::now() + STEP;
        loop {
            let count = std::fs::read_dir(scratch.home())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("ready."))
                .count();
            if count >= n {
                return;
            }
            assert!(Instant::now() < deadline, "only {count} runs reached Codex");
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    ready_count(1);
    let mut other_store = exec_with(&scratch, &waits);
    other_store.env("OLLAMA_MODELS", scratch.home().join("other-models"));
    let second = Running::start(other_store);
    ready_count(2);
    let mut private = scratch.codex_oss();
    private
        .args(["--no-share", "exec", "--skip-git-repo-check", "say hi"])
        .env("CODEX_OSS_CODEX", &waits);
    let third = Running::start(private);
    ready_count(3);
    // The user's own Ollama settings make a server of their own too.
    let mut parallel = exec_with(&scratch, &waits);
    parallel.env("OLLAMA_NUM_PARALLEL", "2");
    let fourth = Running::start(parallel);
    ready_count(4);
    assert_eq!(servers_started(&scratch), 4);
    std::fs::write(&go, b"").unwrap();
    let outs = [
        first.finish(STEP),
        second.finish(STEP),
        third.finish(STEP),
        fourth.finish(STEP),
    ];
    for out in &outs {
        assert!(out.status.success(), "{}", out.text());
    }
    assert!(
        outs[1].stderr.lines().any(|l| l.starts_with(
            "codex-oss: another codex-oss shares an Ollama with other settings (model store"
        )),
        "{}",
        outs[1].text()
    );
    assert!(
        outs[3].stderr.lines().any(|l| l.starts_with(
            "codex-oss: another codex-oss shares an Ollama with other settings (OLLAMA_NUM_PARALLEL unset)"
        )),
        "{}",
        outs[3].text()
    );
    assert!(
        server_logs(&scratch)
            .iter()
            .any(|log| fs_read(log).contains(" OLLAMA_NUM_PARALLEL:2 ")),
        "no server got OLLAMA_NUM_PARALLEL"
    );
    assert!(!fs_read(&scratch.home().join("codex-waits")).is_empty());
    assert_no_processes_within(scratch.home(), GONE);
}

/// The pids of the processes started from `scratch` whose command line has `what`.
fn pids_of(scratch: &Scratch, what: &str) -> Vec<i32> {
    processes_mentioning(&scratch.oss_home())
        .iter()
        .filter(|line| line.contains(what))
        .map(|line| line.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// A Codex that asks the shared server for its version, and ends.
fn codex_asking_the_version(scratch: &Scratch) -> PathBuf {
    script(
        scratch,
        "codex-version",
        "curl -sf \"${CODEX_OSS_BASE_URL%/v1}/api/version\"\n",
    )
}

#[test]
fn a_server_slow_to_answer_is_waited_for_and_never_replaced() {
    let scratch = Scratch::new();
    let (a_ready, go) = (scratch.home().join("a-ready"), scratch.home().join("go"));
    let a_codex = waiting_codex(
        &scratch,
        "codex-a",
        &a_ready.display().to_string(),
        &go,
        "true",
    );
    let a = Running::start(exec_with(&scratch, &a_codex));
    wait_for(&a_ready, "run A");
    let servers = pids_of(&scratch, "ollama serve");
    assert_eq!(servers.len(), 1, "{servers:?}");
    // The server does not answer for 3 s (kill -STOP), longer than one request's wait.
    let server = nix::unistd::Pid::from_raw(servers[0]);
    nix::sys::signal::kill(server, Signal::SIGSTOP).unwrap();
    let resume = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        nix::sys::signal::kill(server, Signal::SIGCONT).unwrap();
    });
    let b = run(exec_with(&scratch, &codex_asking_the_version(&scratch)));
    resume.join().unwrap();
    assert!(b.status.success(), "{}", b.text());
    assert_eq!(servers_started(&scratch), 1, "a second server started");
    assert!(
        b.stderr.contains("is slow to answer: waiting for it"),
        "{}",
        b.text()
    );
    std::fs::write(&go, b"").unwrap();
    let a = a.finish(STEP);
    assert!(a.status.success(), "{}", a.text());
    assert_no_processes_within(scratch.home(), GONE);
}

#[test]
fn a_first_run_killed_while_its_keeper_starts_leaves_one_server() {
    let scratch = Scratch::new();
    assert!(crate::bundle::doctor(&scratch).status.success());
    let codex = codex_asking_the_version(&scratch);
    // The server takes 3 s to answer, so the keeper is still starting it.
    let slow = |scratch: &Scratch| {
        let mut cmd = exec_with(scratch, &codex);
        cmd.env("STAND_IN_OLLAMA_HTTP_DELAY_MS", "3000");
        cmd
    };
    let a = Running::start(slow(&scratch));
    let deadline = Instant::now() + STEP;
    while pids_of(&scratch, "ollama serve").is_empty() {
        assert!(Instant::now() < deadline, "no server started");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.signal(Signal::SIGKILL);
    let _ = a.finish(STEP);
    let b = run(slow(&scratch));
    assert!(b.status.success(), "{}", b.text());
    assert_eq!(servers_started(&scratch), 1, "a second server started");
    assert!(
        b.stderr
            .contains("another codex-oss is starting the shared Ollama: waiting for it"),
        "{}",
        b.text()
    );
    assert_no_processes_within(scratch.home(), GONE);
}

/// The working folder and environment of a process, from /proc.
fn cwd_and_environ(pid: i32) -> (PathBuf, Vec<String>) {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    (cwd, vars)
}

#[test]
fn the_keeper_runs_in_the_home_with_only_what_the_server_needs() {
    let scratch = Scratch::new();
    let project = scratch.home().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let (a_ready, go) = (scratch.home().join("a-ready"), scratch.home().join("go"));
    let a_codex = waiting_codex(
        &scratch,
        "codex-a",
        &a_ready.display().to_string(),
        &go,
        "true",
    );
    let mut cmd = exec_with(&scratch, &a_codex);
    cmd.current_dir(&project)
        .env("MY_API_TOKEN", "hunter2")
        .env("LD_LIBRARY_PATH", "/first-terminal-lib")
        .env("HTTPS_PROXY", "http://127.0.0.1:9");
    let a = Running::start(cmd);
    wait_for(&a_ready, "run A");
    for what in ["__keeper", "ollama serve"] {
        let pids = pids_of(&scratch, what);
        assert_eq!(pids.len(), 1, "{what}: {pids:?}");
        let (cwd, vars) = cwd_and_environ(pids[0]);
        assert_eq!(
            cwd,
            scratch.oss_home(),
            "{what} runs in the first run's folder"
        );
        for secret in ["MY_API_TOKEN=", "LD_LIBRARY_PATH=/first-terminal-lib"] {
            assert!(
                !vars.iter().any(|v| v.starts_with(secret)),
                "{what} has {secret}"
            );
        }
        assert!(
            vars.iter().any(|v| v == "HTTPS_PROXY=http://127.0.0.1:9"),
            "{what}"
        );
    }

    // Another proxy changes what the server does: a server of its own.
    let mut cmd = exec_with(&scratch, &codex_asking_the_version(&scratch));
    cmd.env("HTTPS_PROXY", "http://127.0.0.1:10");
    let b = run(cmd);
    assert!(b.status.success(), "{}", b.text());
    assert_eq!(servers_started(&scratch), 2, "{}", b.text());
    assert!(
        b.stderr.contains("HTTPS_PROXY set otherwise"),
        "{}",
        b.text()
    );
    std::fs::write(&go, b"").unwrap();
    let a = a.finish(STEP);
    assert!(a.status.success(), "{}", a.text());
    assert_no_processes_within(scratch.home(), GONE);
}

/// True while `pid` runs (a zombie, which its keeper has yet to reap, has stopped).
fn runs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            != Some("Z")
    })
}

#[test]
fn the_server_stops_within_50_ms_of_the_last_run() {
    let scratch = Scratch::new();
    assert!(crate::bundle::doctor(&scratch).status.success());
    let mut stops = Vec::new();
    for i in 0..5 {
        let (ready, go, ended) = (
            scratch.home().join(format!("ready-{i}")),
            scratch.home().join(format!("go-{i}")),
            scratch.home().join(format!("ended-{i}")),
        );
        // Codex notes the instant it ends (nanoseconds since 1970).
        let codex = waiting_codex(
            &scratch,
            &format!("codex-{i}"),
            &ready.display().to_string(),
            &go,
            &format!("date +%s%N >{}", ended.display()),
        );
        let run = Running::start(exec_with(&scratch, &codex));
        wait_for(&ready, "Codex");
        let servers = pids_of(&scratch, "ollama serve");
        assert_eq!(servers.len(), 1, "{servers:?}");
        std::fs::write(&go, b"").unwrap();
        let deadline = Instant::now() + STEP;
        while runs(servers[0]) {
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
        let gone = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let ended: u128 = fs_read(&ended).trim().parse().unwrap();
        stops.push(Duration::from_nanos((gone - ended) as u64));
        let out = run.finish(STEP);
        assert!(out.status.success(), "{}", out.text());
        assert_no_processes_within(scratch.home(), GONE);
    }
    stops.sort();
    let median = stops[stops.len() / 2];
    assert!(
        median <= Duration::from_millis(50),
        "from Codex's end to Ollama gone: {stops:?}"
    );
}

#[test]
fn ollama_keep_alive_keeps_the_shared_server_for_the_next_run() {
    let scratch = Scratch::new();
    let codex = codex_asking_the_version(&scratch);
    let kept = |scratch: &Scratch| {
        let mut cmd = exec_with(scratch, &codex);
        cmd.env("OLLAMA_KEEP_ALIVE", "3s");
        cmd
    };
    let a = run(kept(&scratch));
    assert!(a.status.success(), "{}", a.text());
    let servers = pids_of(&scratch, "ollama serve");
    assert_eq!(servers.len(), 1, "{servers:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(runs(servers[0]), "the server stopped with the last run");
    let b = run(kept(&scratch));
    assert!(b.status.success(), "{}", b.text());
    let b_ended = Instant::now();
    assert_eq!(
        servers_started(&scratch),
        1,
        "the next run started a server"
    );

    let mut cmd = scratch.codex_oss();
    cmd.arg("doctor").env("OLLAMA_KEEP_ALIVE", "3s");
    let doctor = run(cmd);
    assert_eq!(
        doctor.line("shared server after the last run: "),
        "shared server after the last run: kept 3s (OLLAMA_KEEP_ALIVE), so the next run finds the model loaded"
    );
    while runs(servers[0]) {
        assert!(b_ended.elapsed() < STEP, "the server was kept too long");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Three seconds after the last run (less what doctor took).
    assert!(
        b_ended.elapsed() >= Duration::from_millis(1500),
        "stopped {:?} after the last run",
        b_ended.elapsed()
    );
    assert_no_processes_within(scratch.home(), GONE);
    // Unset: the server stops with the last run.
    let c = run(exec_with(&scratch, &codex));
    assert!(c.status.success(), "{}", c.text());
    assert_no_processes_within(scratch.home(), Duration::from_secs(1));
}
