//! The Codex TUI through codex-oss, in a real terminal: tmux on a private socket.
//! Start `codex-oss` with no arguments, accept the trust prompt, see the local model
//! in the header, ask something and read the stand-in's reply, quit, and check the
//! launcher's exit status and that no Ollama is left.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{assert_no_processes_within, Scratch, REPLY};

/// A tmux server of its own; killed when dropped, whatever the test did.
struct Tmux {
    socket: String,
    config: PathBuf,
    /// Where the command in the pane writes the launcher's exit status.
    status: PathBuf,
}

impl Tmux {
    fn new(scratch: &Scratch) -> Tmux {
        // The pane stays after the launcher exits, so its last screen can be read.
        let config = scratch.home().join("tmux.conf");
        std::fs::write(&config, "set-option -g remain-on-exit on\n").unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Tmux {
            socket: format!("codex-oss-test-{}-{nanos}", std::process::id()),
            config,
            status: scratch.home().join("launcher-status"),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        // No user config, no environment of the test run (it may hold CODEX_* values).
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SHELL", "/bin/sh")
            .arg("-L")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.config);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "tmux send-keys {keys:?}: {}\nscreen:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.screen()
        );
    }

    /// Typed text, as literal characters.
    fn type_text(&self, text: &str) {
        self.keys(&["-l", text]);
    }

    /// Polls the screen until `ready` holds; fails with the screen after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return;
            }
            if let Ok(code) = std::fs::read_to_string(&self.status) {
                panic!(
                    "codex-oss exited (status {}) before {what}; screen:\n{screen}",
                    code.trim()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

fn wait_for_file(path: &Path, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return Some(text);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn tui_shows_the_local_model_answers_and_quits_leaving_no_ollama() {
    let scratch = Scratch::new();
    let work = scratch.home().join("project");
    std::fs::create_dir_all(&work).unwrap();
    let tmux = Tmux::new(&scratch);
    let status = tmux.status.clone();
    // The launcher with the scratch environment only; its exit status lands in a file.
    let command = format!(
        "cd {work} && env -i PATH={path} TERM=xterm-256color HOME={home} CODEX_OSS_HOME={oss} {bin}; echo $? > {status}; sleep 60",
        work = quote(&work),
        path = quote(Path::new(&std::env::var("PATH").unwrap_or_default())),
        home = quote(scratch.home()),
        oss = quote(&scratch.oss_home()),
        bin = quote(Path::new(env!("CARGO_BIN_EXE_codex-oss"))),
        status = quote(&status),
    );
    let out = tmux.run(&["new-session", "-d", "-x", "200", "-y", "50", &command]);
    assert!(
        out.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // First run: unpack, pull, then Codex starts; it may first ask whether to trust the
    // folder ("Trust this folder?"), and that prompt can be drawn a moment before Codex
    // reads keys (seen once on a loaded machine): while it stays on the screen, Enter is
    // pressed again every 2 s. Then the status line under the composer names the model
    // ("gpt-oss:20b default · <folder>").
    let trust = |s: &str| s.contains("Trust this folder?");
    let header = |s: &str| !trust(s) && s.lines().any(|l| l.contains("gpt-oss:20b"));
    tmux.wait_for("Codex's first screen", Duration::from_secs(90), |s| {
        trust(s) || header(s)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !header(&tmux.screen()) && Instant::now() < deadline {
        if trust(&tmux.screen()) {
            tmux.keys(&["Enter"]);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    tmux.wait_for("gpt-oss:20b in the header", Duration::from_secs(1), header);

    tmux.type_text("say hi");
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys(&["Enter"]);
    // Keys that come fast after typing can be taken for a paste (Codex's paste-burst
    // detection), and then Enter does not send: while the prompt is still in the
    // composer and nothing is under way, Enter is pressed again every 3 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tmux.screen().contains(REPLY) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(3));
        let screen = tmux.screen();
        let unsent = screen.lines().any(|l| l.trim_end() == "› say hi")
            && !screen.contains("Working")
            && !screen.contains(REPLY);
        if unsent {
            tmux.keys(&["Enter"]);
        }
    }
    tmux.wait_for("the stand-in's reply", Duration::from_secs(30), |s| {
        s.contains(REPLY)
    });
    // Codex knows the model (the catalog) and finds its bubblewrap (on its PATH): no
    // warning at all. Codex 0.171 folds warnings into "⚠ N warning · f2 to view".
    let screen = tmux.screen();
    for warning in ["Model metadata", "bubblewrap"] {
        assert!(!screen.contains(warning), "{warning} warning:\n{screen}");
    }
    if screen.contains("f2 to view") {
        tmux.keys(&["F2"]);
        std::thread::sleep(Duration::from_secs(1));
        panic!("Codex warns:\n{}", tmux.screen());
    }

    tmux.type_text("/quit");
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys(&["Enter"]);
    let mut code = wait_for_file(&status, Duration::from_secs(15));
    if code.is_none() {
        let screen = tmux.screen();
        tmux.keys(&["C-c"]);
        std::thread::sleep(Duration::from_millis(300));
        tmux.keys(&["C-c"]);
        code = wait_for_file(&status, Duration::from_secs(15));
        assert!(
            code.is_some(),
            "codex-oss did not exit after /quit or Ctrl-C twice; screen after /quit:\n{screen}\nnow:\n{}",
            tmux.screen()
        );
    }
    assert_eq!(code.unwrap().trim(), "0", "codex-oss exit status");
    // Codex names `codex resume <id>` (the user's cloud Codex); codex-oss the local way,
    // with the same session id.
    let screen = tmux.screen();
    let ours = screen
        .lines()
        .find_map(|l| l.split("run: codex-oss resume ").nth(1))
        .unwrap_or_else(|| panic!("no codex-oss resume hint:\n{screen}"))
        .trim()
        .to_owned();
    assert_eq!(ours.len(), 36, "{screen}");
    assert!(screen.contains(&format!("codex resume {ours}")), "{screen}");
    drop(tmux);
    assert_no_processes_within(scratch.home(), Duration::from_secs(10));
}
