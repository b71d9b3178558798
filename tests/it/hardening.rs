//! The user's real environment and a home others may control: proxies, `OLLAMA_*`
//! variables, `clean --models` on a store that is not ours, Ctrl-C while another
//! codex-oss unpacks, resumed pulls on a fuller disk, foreign and world-writable homes,
//! forged server records, pid namespaces, filesystems that ignore chmod, and servers
//! that stall or flood the launcher.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

use crate::bundle::doctor;
use crate::support::{
    assert_no_processes_within, assert_user_sees, exec_say_hi, exec_with, fs_read, run, script,
    version_dirs, Finished, Running, Scratch, GONE, REPLY, STEP,
};

// ------------------------------------------------------------------ proxies

/// A proxy that accepts connections and never answers, noting the first line of each
/// request (`GET http://HOST/...` or `CONNECT HOST:443`).
struct BlackHoleProxy {
    url: String,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl BlackHoleProxy {
    fn start() -> BlackHoleProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let noted = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let noted = noted.clone();
                std::thread::spawn(move || {
                    let mut line = String::new();
                    let _ = BufReader::new(&stream).read_line(&mut line);
                    noted.lock().unwrap().push(line.trim().to_owned());
                    // Open and silent, like a proxy that cannot get through.
                    std::thread::sleep(Duration::from_secs(120));
                    drop(stream);
                });
            }
        });
        BlackHoleProxy { url, requests }
    }

    /// The requests the proxy got for this machine's own addresses.
    fn loopback_requests(&self) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| {
                ["127.0.0.1", "localhost", "[::1]"]
                    .iter()
                    .any(|h| r.contains(h))
            })
            .cloned()
            .collect()
    }

    fn apply(&self, cmd: &mut Command) {
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            cmd.env(var, &self.url).env(var.to_lowercase(), &self.url);
        }
    }
}

#[test]
fn a_proxy_in_the_environment_is_not_used_for_the_local_server() {
    let scratch = Scratch::new();
    let proxy = BlackHoleProxy::start();

    let mut list = scratch.codex_oss();
    list.args(["models", "list"]);
    proxy.apply(&mut list);
    let started = Instant::now();
    let out = run(list);
    assert!(out.status.success(), "{}", out.text());
    assert!(out.stdout.contains("no models yet"), "{}", out.text());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );

    // The real Codex, behind the same proxy, with the user's own NO_PROXY kept.
    let mut exec = exec_say_hi(&scratch);
    proxy.apply(&mut exec);
    exec.env("NO_PROXY", "corp.example");
    let out = run(exec);
    assert!(out.status.success(), "{}", out.text());
    assert!(out.stdout.contains(REPLY), "{}", out.text());
    // Codex may reach for the outside world (through the proxy, rightly); never for us.
    assert_eq!(
        proxy.loopback_requests(),
        Vec::<String>::new(),
        "local requests went to the proxy"
    );

    // What Codex is given.
    let record = scratch.home().join("env-record");
    let codex = script(
        &scratch,
        "env-codex",
        &format!("env | grep -i '^no_proxy=' | sort > {}\n", record.display()),
    );
    let mut cmd = exec_with(&scratch, &codex);
    proxy.apply(&mut cmd);
    cmd.env("NO_PROXY", "corp.example").env_remove("no_proxy");
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    let env = fs_read(&record);
    let expected = "corp.example,127.0.0.1,localhost,::1";
    assert_eq!(env, format!("NO_PROXY={expected}\nno_proxy={expected}\n"));
    assert_no_processes_within(scratch.home(), GONE);
}

// ----------------------------------------------------------- OLLAMA_* variables

/// `codex-oss serve` until it says where it listens: (the running launcher, the base
/// URL it printed, the server's log).
fn serve(cmd: Command) -> (Running, String, PathBuf) {
    let mut serving = Running::start(cmd);
    serving.wait_until("the listening line", STEP, |r| {
        r.stdout().contains("Point Codex at it")
    });
    let stdout = serving.stdout();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Ollama is listening on "))
        .unwrap_or_else(|| panic!("no listening line:\n{stdout}"));
    let rest = &line["Ollama is listening on ".len()..];
    let (url, log) = rest.split_once(" (log: ").expect("url and log");
    (
        serving,
        url.to_owned(),
        PathBuf::from(log.trim_end_matches(')')),
    )
}

/// The `server config` line the server logged: its OLLAMA_* settings as it read them.
fn server_config(log: &Path) -> String {
    let text = fs_read(log);
    text.lines()
        .find(|l| l.contains("msg=\"server config\""))
        .unwrap_or_else(|| panic!("no server config line in the log:\n{text}"))
        .to_owned()
}

/// Ctrl-C: the server stops, and so does `codex-oss serve`, successfully.
fn stop(serving: Running) -> Finished {
    serving.signal(Signal::SIGINT);
    let out = serving.finish(STEP);
    assert!(out.status.success(), "{}", out.text());
    out
}

#[test]
fn a_variable_that_is_not_unicode_is_passed_over() {
    // A shell can hold any bytes (a Latin-1 title, a path from an old disk).
    use std::os::unix::ffi::OsStrExt;
    let scratch = Scratch::new();
    let mut exec = exec_say_hi(&scratch);
    exec.env("PROJECT_TITLE", std::ffi::OsStr::from_bytes(b"caf\xe9"));
    let out = run(exec);
    assert!(out.status.success(), "{}", out.text());
    assert!(out.stdout.contains(REPLY), "{}", out.text());
}

#[test]
fn ollama_host_and_origins_from_the_shell_do_not_open_the_embedded_server() {
    let scratch = Scratch::new();

    // A non-loopback OLLAMA_HOST (set for the user's own Ollama) is ignored, with a note.
    let mut cmd = scratch.codex_oss();
    cmd.arg("serve")
        .env("OLLAMA_HOST", "0.0.0.0:0")
        .env("OLLAMA_ORIGINS", "https://evil.example");
    let (serving, url, log) = serve(cmd);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let config = server_config(&log);
    assert!(
        config.contains("OLLAMA_HOST:http://127.0.0.1:0 "),
        "{config}"
    );
    assert!(
        !config.contains("evil.example"),
        "OLLAMA_ORIGINS reached the server: {config}"
    );
    let note = stop(serving).line("codex-oss: ignoring OLLAMA_HOST");
    assert_user_sees!(&scratch, "a_non_loopback_ollama_host", note);

    // A loopback OLLAMA_HOST is honoured.
    let port = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = scratch.codex_oss();
    cmd.arg("serve")
        .env("OLLAMA_HOST", format!("127.0.0.2:{port}"));
    let (serving, url, _) = serve(cmd);
    assert_eq!(url, format!("http://127.0.0.2:{port}"));
    assert!(
        !serving.stderr().contains("ignoring"),
        "{}",
        serving.stderr()
    );
    stop(serving);

    // CODEX_OSS_HOST binds elsewhere on purpose, with a warning.
    let mut cmd = scratch.codex_oss();
    cmd.arg("serve")
        .env("CODEX_OSS_HOST", "0.0.0.0:0")
        .env("OLLAMA_HOST", "127.0.0.1:1");
    let (serving, _, log) = serve(cmd);
    assert!(
        server_config(&log).contains("OLLAMA_HOST:http://0.0.0.0:0 "),
        "{}",
        server_config(&log)
    );
    let warning = stop(serving).line("codex-oss: warning: ");
    assert_user_sees!(&scratch, "codex_oss_host_on_every_interface", warning);
    assert_no_processes_within(scratch.home(), GONE);
}

#[test]
fn an_ollama_host_without_a_host_is_every_interface_and_is_ignored() {
    let scratch = Scratch::new();
    // Ollama reads `:PORT` as every interface (the stand-in listens as Go's net.Listen does).
    for host in [":0", "http://:0"] {
        let mut cmd = scratch.codex_oss();
        cmd.arg("serve").env("OLLAMA_HOST", host);
        let (serving, url, log) = serve(cmd);
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "OLLAMA_HOST={host}: {url}"
        );
        let config = server_config(&log);
        assert!(
            config.contains("OLLAMA_HOST:http://127.0.0.1:0 "),
            "OLLAMA_HOST={host}: {config}"
        );
        let note = stop(serving).line("codex-oss: ignoring OLLAMA_HOST");
        assert_eq!(
            note,
            format!("codex-oss: ignoring OLLAMA_HOST={host}: the embedded Ollama listens on this machine only (set CODEX_OSS_HOST to bind it elsewhere)")
        );
    }

    let mut cmd = scratch.codex_oss();
    cmd.arg("serve").env("CODEX_OSS_HOST", ":0");
    let (serving, _, _) = serve(cmd);
    let warning = stop(serving).line("codex-oss: warning: ");
    assert_user_sees!(&scratch, "codex_oss_host_without_a_host", warning);
    assert_no_processes_within(scratch.home(), GONE);
}

// ------------------------------------------------------------------ clean

#[test]
fn clean_models_removes_only_the_store_codex_oss_owns() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.oss_home()).unwrap();
    let theirs = scratch.home().join("their-ollama/models");
    std::fs::create_dir_all(theirs.join("blobs")).unwrap();
    std::fs::write(theirs.join("blobs/sha256-1234"), b"someone's model").unwrap();
    std::fs::write(theirs.join("notes.txt"), b"unrelated").unwrap();

    let mut cmd = scratch.codex_oss();
    cmd.args(["clean", "--models"])
        .env("OLLAMA_MODELS", &theirs);
    let out = run(cmd);
    assert!(!out.status.success(), "{}", out.text());
    assert_user_sees!(
        &scratch,
        "clean_models_on_a_store_not_ours",
        out.error_line()
    );
    assert_eq!(fs_read(&theirs.join("notes.txt")), "unrelated");
    assert!(theirs.join("blobs/sha256-1234").is_file());

    let ours = scratch.oss_home().join("models");
    std::fs::create_dir_all(ours.join("blobs")).unwrap();
    std::fs::write(ours.join("blobs/sha256-5678"), b"ours").unwrap();
    let mut cmd = scratch.codex_oss();
    cmd.args(["clean", "--models"]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    assert!(!ours.exists(), "codex-oss's own store is still there");
    assert!(theirs.join("blobs/sha256-1234").is_file());
}

// ------------------------------------------------------------------ locks

#[test]
fn ctrl_c_while_another_codex_oss_unpacks_stops_at_once_every_time() {
    let scratch = Scratch::new();
    let run_dir = scratch.oss_home().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::set_permissions(scratch.oss_home(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(run_dir.join("unpack-codex.lock"))
        .unwrap();
    lock.lock().expect("hold the unpack lock");

    for attempt in 1..=8 {
        let mut running = Running::start(exec_say_hi(&scratch));
        running.wait_until("the waiting message", STEP, |r| {
            r.stderr()
                .contains("codex-oss: waiting for another codex-oss to finish unpacking")
        });
        running.signal(Signal::SIGINT);
        let started = Instant::now();
        let out = running.finish(Duration::from_secs(10));
        let took = started.elapsed();
        assert_eq!(
            out.status.code(),
            Some(130),
            "attempt {attempt}: {}",
            out.text()
        );
        assert!(
            took < Duration::from_secs(3),
            "attempt {attempt}: stopped after {took:?}"
        );
    }
    drop(lock);
    assert_no_processes_within(scratch.home(), GONE);
}

#[test]
fn launchers_in_two_pid_namespaces_share_a_home() {
    let scratch = Scratch::new();
    assert!(doctor(&scratch).status.success());
    let start = || {
        let template = scratch.codex_oss();
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM"])
            .arg(template.get_program())
            .arg("serve");
        for (key, value) in template.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        cmd.current_dir(scratch.home());
        Running::start(cmd)
    };
    // Both launchers are pid 1 in their namespaces: the same pid, one home.
    let mut first = start();
    first.wait_until("the first server", STEP, |r| {
        r.stdout().contains("Point Codex at it")
    });
    let mut second = start();
    second.wait_until("the second server", STEP, |r| {
        r.stdout().contains("Point Codex at it")
    });
    let records = std::fs::read_dir(scratch.oss_home().join("run/servers"))
        .unwrap()
        .count();
    assert_eq!(records, 2, "one record per launcher");
    for running in [first, second] {
        running.signal(Signal::SIGKILL); // unshare passes SIGTERM to its child
        let _ = running.finish(STEP);
    }
    assert_no_processes_within(scratch.home(), GONE);
}

// --------------------------------------------------------- resumed pulls

#[test]
fn a_resumed_pull_needs_room_only_for_what_is_missing() {
    let scratch = Scratch::new();
    // 13.99 of gpt-oss:20b's 14 GB are down already (Ollama's part file says so); the
    // 16 MiB store has room for the rest.
    let script = r#"
        mkdir -p "$H/models" && mount -t tmpfs -o size=16m none "$H/models" || exit 99
        blob="$H/models/blobs/sha256-$(printf 'a%.0s' $(seq 64))"
        mkdir -p "$H/models/blobs"
        truncate -s 14000000000 "$blob-partial"
        printf '{"N":0,"Offset":0,"Size":14000000000,"Completed":13990000000}\n' > "$blob-partial-0"
        "$BIN" exec --skip-git-repo-check "say hi" </dev/null >"$OUT/stdout" 2>"$OUT/stderr"
        echo $? >"$OUT/status"
        exit 0
    "#;
    let out = crate::bundle::in_mount_namespace(
        &scratch,
        script,
        &[("STAND_IN_OLLAMA_REQUEST_LOG", &scratch.request_log())],
    );
    let out = Finished::read_from(&out);
    assert!(out.status.success(), "{}", out.text());
    assert!(out.stdout.contains(REPLY), "{}", out.text());
    assert!(scratch.requests().contains("POST /api/pull gpt-oss:20b"));
    assert_no_processes_within(scratch.home(), GONE);
}

// ------------------------------------------------------- a home others control

/// A home unpacked by doctor, where the unpacked Ollama is replaced with a program that
/// leaves a marker file (returned) when run, and the manifest is forged so that the
/// copy still looks intact.
fn home_with_a_planted_ollama() -> (Scratch, PathBuf) {
    let scratch = Scratch::new();
    assert!(doctor(&scratch).status.success());
    let marker = scratch.home().join("planted-ran");
    let dir = scratch.unpacked("ollama");
    let exe = dir.join("bin/ollama");
    std::fs::write(
        &exe,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bytes = std::fs::read(&exe).unwrap();
    let meta = std::fs::metadata(&exe).unwrap();
    let manifest_path = dir.join(".codex-oss-manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&fs_read(&manifest_path)).unwrap();
    for file in manifest["files"].as_array_mut().unwrap() {
        if file["path"] == "bin/ollama" {
            file["size"] = bytes.len().into();
            file["sha256"] = hex::encode(Sha256::digest(&bytes)).into();
            let mtime = meta
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            file["mtime_ns"] = serde_json::Value::from(mtime.as_nanos() as u64);
            file["mode"] = 0o755.into();
        }
    }
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    (scratch, marker)
}

fn models_list(scratch: &Scratch) -> Finished {
    let mut cmd = scratch.codex_oss();
    cmd.args(["models", "list"]);
    run(cmd)
}

#[test]
fn a_home_owned_by_another_user_is_refused() {
    let (scratch, marker) = home_with_a_planted_ollama();
    let status = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(scratch.oss_home())
        .status()
        .unwrap();
    assert!(status.success(), "chown (the tests run as root)");

    let out = models_list(&scratch);
    assert!(!out.status.success(), "{}", out.text());
    assert_user_sees!(&scratch, "a_home_owned_by_another_user", out.error_line());
    assert!(!marker.exists(), "the planted program ran");
}

#[test]
fn a_world_writable_home_is_made_private_and_unpacked_again() {
    let (scratch, marker) = home_with_a_planted_ollama();
    std::fs::set_permissions(scratch.oss_home(), std::fs::Permissions::from_mode(0o777)).unwrap();

    let out = models_list(&scratch);
    assert!(out.status.success(), "{}", out.text());
    assert!(!marker.exists(), "the planted program ran:\n{}", out.text());
    assert_user_sees!(
        &scratch,
        "a_world_writable_home",
        out.line("codex-oss: warning: ")
    );
    let mode = std::fs::metadata(scratch.oss_home()).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_no_processes_within(scratch.home(), GONE);
}

/// A folder of the user's with a `codex/` project and notes in `logs/`: what codex-oss
/// must never delete.
fn users_folder(scratch: &Scratch, mode: u32) -> (PathBuf, [PathBuf; 2]) {
    let folder = scratch.home().join("mydata");
    let theirs = [
        folder.join("codex/myproject/main.rs"),
        folder.join("logs/notes.txt"),
    ];
    for file in &theirs {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, b"the user's own").unwrap();
    }
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(mode)).unwrap();
    (folder, theirs)
}

fn assert_kept(files: &[PathBuf]) {
    for file in files {
        assert_eq!(fs_read(file), "the user's own", "{}", file.display());
    }
}

#[test]
fn a_folder_holding_the_users_files_is_refused_as_home_and_keeps_them() {
    let scratch = Scratch::new();
    let (folder, theirs) = users_folder(&scratch, 0o775);
    let mut cmd = scratch.codex_oss();
    cmd.args(["models", "list"]).env("CODEX_OSS_HOME", &folder);
    let out = run(cmd);
    assert!(!out.status.success(), "{}", out.text());
    assert_user_sees!(
        &scratch,
        "a_folder_holding_the_users_files",
        out.error_line()
    );
    assert_kept(&theirs);
    let mode = std::fs::metadata(&folder).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o775, "the user's folder had its mode changed");

    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = scratch.codex_oss();
    cmd.arg("clean").env("CODEX_OSS_HOME", &folder);
    let out = run(cmd);
    assert!(!out.status.success(), "{}", out.text());
    assert_kept(&theirs);
}

#[test]
fn a_home_is_cleaned_and_made_private_of_only_what_codex_oss_wrote() {
    let scratch = Scratch::new();
    assert!(doctor(&scratch).status.success());
    let home = scratch.oss_home();
    // Files the user later put in folders of codex-oss's, beside what it wrote.
    let theirs = [
        home.join("codex/myproject/main.rs"),
        home.join("logs/notes.txt"),
        home.join("models/README.txt"),
    ];
    for file in &theirs {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, b"the user's own").unwrap();
    }
    let old_log = home.join("logs/ollama-1700000000-42.log");
    std::fs::write(&old_log, b"an old server's log").unwrap();
    std::fs::create_dir_all(home.join("models/blobs")).unwrap();

    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = models_list(&scratch);
    assert!(out.status.success(), "{}", out.text());
    assert!(out.stderr.contains("it is private now"), "{}", out.text());
    assert_kept(&theirs);
    // The shared server stops a moment after the run; `clean` keeps what it uses.
    assert_no_processes_within(scratch.home(), GONE);

    let mut cmd = scratch.codex_oss();
    cmd.args(["clean", "--models"]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    assert_kept(&theirs);
    assert!(!old_log.exists(), "clean kept codex-oss's old log");
    assert!(
        !home.join("models/blobs").exists(),
        "clean --models kept the blobs"
    );
    assert_eq!(version_dirs(&home.join("ollama")), Vec::<PathBuf>::new());
    assert_eq!(
        version_dirs(&home.join("codex")),
        vec![home.join("codex/myproject")],
        "clean kept an unpacked Codex"
    );
    assert!(
        home.join(".codex-oss-home").is_file(),
        "the home is not marked"
    );
}

#[test]
fn the_home_of_an_earlier_codex_oss_is_taken_on() {
    let scratch = Scratch::new();
    assert!(doctor(&scratch).status.success());
    let mark = scratch.oss_home().join(".codex-oss-home");
    std::fs::remove_file(&mark).unwrap();
    std::fs::write(
        scratch.oss_home().join("logs/ollama-1700000000-42.log"),
        b"old",
    )
    .unwrap();
    let out = models_list(&scratch);
    assert!(out.status.success(), "{}", out.text());
    assert!(mark.is_file(), "the home was not marked");
}

/// A process's identity as codex-oss records it: pid, start time (clock ticks since
/// boot), boot id and pid namespace.
pub(crate) fn identity(pid: u32) -> serde_json::Value {
    let stat = fs_read(Path::new(&format!("/proc/{pid}/stat")));
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    let started: u64 = after_name
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    serde_json::json!({
        "pid": pid,
        "start_time": started,
        "boot": fs_read(Path::new("/proc/sys/kernel/random/boot_id")).trim(),
        "namespace": std::fs::read_link("/proc/self/ns/pid").unwrap(),
    })
}

#[test]
fn a_forged_server_record_never_stops_another_process() {
    let scratch = Scratch::new();
    assert!(doctor(&scratch).status.success());
    let ollama = scratch.unpacked("ollama").join("bin/ollama");
    // Another program, alone in its own process group, as a server would be.
    let mut victim = Command::new("sleep")
        .arg("300")
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = victim.id();
    let sleep_exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let servers = scratch.oss_home().join("run/servers");
    std::fs::create_dir_all(&servers).unwrap();
    for (name, executable) in [("names-sleep", &sleep_exe), ("names-ollama", &ollama)] {
        let mut launcher = identity(pid);
        launcher["pid"] = gone.id().into();
        std::fs::write(
            servers.join(format!("{name}.json")),
            serde_json::json!({
                // The fields of earlier versions' records too.
                "launcher_pid": gone.id(),
                "server_pid": pid,
                "launcher": launcher,
                "server": identity(pid),
                "executable": executable,
                "log": "x",
            })
            .to_string(),
        )
        .unwrap();
    }

    let out = models_list(&scratch);
    let alive = victim.try_wait().unwrap().is_none();
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    let _ = victim.wait();
    assert!(out.status.success(), "{}", out.text());
    assert!(
        alive,
        "a forged record stopped another process:\n{}",
        out.text()
    );
    assert!(
        !out.stderr.contains("stopping an Ollama server"),
        "{}",
        out.text()
    );
    // The shared server (and its record) goes once the last run is gone.
    assert_no_processes_within(scratch.home(), GONE);
    let kept: Vec<_> = std::fs::read_dir(&servers)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(kept.is_empty(), "forged records kept: {kept:?}");
}

// ------------------------------------------------ filesystems without chmod

/// A shared library that makes file modes do nothing, as on vfat, CIFS or drvfs: chmod
/// succeeds without effect, and new files get no execute bits whatever mode they are
/// created with.
fn chmod_ignored_shim(scratch: &Scratch) -> PathBuf {
    let source = scratch.home().join("nochmod.c");
    std::fs::write(
        &source,
        r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/types.h>
int chmod(const char *p, mode_t m) { (void)p; (void)m; return 0; }
int fchmod(int fd, mode_t m) { (void)fd; (void)m; return 0; }
int fchmodat(int d, const char *p, mode_t m, int f) { (void)d; (void)p; (void)m; (void)f; return 0; }
#define OPEN(name, ...) \
    mode_t m = 0; \
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) { va_list a; va_start(a, flags); m = va_arg(a, mode_t); va_end(a); } \
    static int (*real)(); \
    if (!real) real = (int (*)())dlsym(RTLD_NEXT, name); \
    return real(__VA_ARGS__, flags, m & ~0111);
int open(const char *p, int flags, ...) { OPEN("open", p) }
int open64(const char *p, int flags, ...) { OPEN("open64", p) }
int openat(int d, const char *p, int flags, ...) { OPEN("openat", d, p) }
int openat64(int d, const char *p, int flags, ...) { OPEN("openat64", d, p) }
"#,
    )
    .unwrap();
    let shim = scratch.home().join("nochmod.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("cc (gcc) builds the chmod shim");
    assert!(status.success());
    shim
}

#[test]
fn a_filesystem_that_ignores_chmod_does_not_unpack_on_every_run() {
    let scratch = Scratch::new();
    let shim = chmod_ignored_shim(&scratch);
    let doctor_without_chmod = || {
        let mut cmd = scratch.codex_oss();
        cmd.arg("doctor").env("LD_PRELOAD", &shim);
        let out = run(cmd);
        assert!(out.status.success(), "{}", out.text());
    };
    doctor_without_chmod();
    let exe = scratch.unpacked("codex").join("bin/codex");
    assert_eq!(
        std::fs::metadata(&exe).unwrap().mode() & 0o111,
        0,
        "the shim did not take effect"
    );
    let before = std::fs::metadata(scratch.unpacked("codex")).unwrap().ino();
    doctor_without_chmod();
    let after = std::fs::metadata(scratch.unpacked("codex")).unwrap().ino();
    assert_eq!(before, after, "the second run unpacked Codex again");
}

// ------------------------------------------------- servers that misbehave

#[derive(Clone, Copy)]
enum PullFault {
    /// One progress line, then silence.
    Stall,
    /// A "line" that never ends.
    EndlessLine,
    /// HTTP 500 with a body that never ends.
    EndlessErrorBody,
}

/// Just enough of Ollama's API to start a pull, which then misbehaves. Returns its base
/// URL; it stops serving when `done` is set.
fn misbehaving_ollama(fault: PullFault, done: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let done = done.clone();
            std::thread::spawn(move || answer(stream, fault, &done));
        }
    });
    url
}

fn answer(mut stream: TcpStream, fault: PullFault, done: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let json = |stream: &mut TcpStream, body: &str| {
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let endless = |stream: &mut TcpStream, head: &str, byte: u8| {
        let _ = stream.write_all(head.as_bytes());
        let chunk = vec![byte; 64 * 1024];
        while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
    };
    match request_line.split_whitespace().nth(1).unwrap_or_default() {
        "/api/version" => json(&mut stream, r#"{"version":"0.32.15"}"#),
        "/api/tags" => json(&mut stream, r#"{"models":[]}"#),
        "/api/pull" => match fault {
            PullFault::Stall => {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n{\"status\":\"pulling manifest\"}\n",
                );
                while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            PullFault::EndlessLine => endless(
                &mut stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n",
                b'a',
            ),
            PullFault::EndlessErrorBody => endless(
                &mut stream,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
                b'x',
            ),
        },
        _ => {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    }
}

#[test]
fn a_stalled_or_flooding_pull_ends_with_a_clear_error() {
    for (fault, name) in [
        (PullFault::Stall, "a_stalled_pull"),
        (PullFault::EndlessLine, "a_pull_line_that_never_ends"),
        (PullFault::EndlessErrorBody, "a_pull_error_that_never_ends"),
    ] {
        let scratch = Scratch::new();
        let done = Arc::new(AtomicBool::new(false));
        let url = misbehaving_ollama(fault, done.clone());
        let mut cmd = scratch.codex_oss();
        cmd.args(["models", "pull", "tiny:1b"])
            .env("CODEX_OSS_BASE_URL", format!("{url}/v1"))
            .env("CODEX_OSS_PULL_TIMEOUT", "2");
        let started = Instant::now();
        let out = Running::start(cmd).finish(Duration::from_secs(30));
        let took = started.elapsed();
        done.store(true, Ordering::SeqCst);
        assert!(!out.status.success(), "{}", out.text());
        assert!(took < Duration::from_secs(20), "gave up after {took:?}");
        let line = out.error_line();
        assert!(
            line.len() < 400,
            "an unbounded message: {} bytes",
            line.len()
        );
        assert_user_sees!(&scratch, name, line);
    }
}
