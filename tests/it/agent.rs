//! The agent at work on the local model, with the real pinned Codex: Codex knows the
//! model (the catalog codex-oss writes), sends what gpt-oss supports, its instructions
//! reach gpt-oss where the model takes them, a user's cloud settings stay out of the
//! local run, and its tool calls change files on disk.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{
    assert_no_processes_within, exec_say_hi, fs_read, run, script, Finished, Running, Scratch,
    GONE, REPLY, STEP,
};

/// The `/v1/responses` requests the stand-in recorded, as JSON.
fn responses_requests(log: &Path) -> Vec<serde_json::Value> {
    fs_read(log)
        .lines()
        .filter_map(|line| line.strip_prefix("POST /v1/responses "))
        .map(|body| serde_json::from_str(body).expect("a JSON request body"))
        .collect()
}

fn body_log(scratch: &Scratch) -> PathBuf {
    scratch.home().join("bodies.log")
}

fn prompt_log(scratch: &Scratch) -> PathBuf {
    scratch.home().join("prompts.log")
}

/// The prompts gpt-oss was given, as the stand-in renders them the way Ollama does.
fn prompts(scratch: &Scratch) -> Vec<String> {
    fs_read(&prompt_log(scratch))
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            entry["prompt"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The text of the `index`th message of `role` in a request's `input`.
fn message_text(request: &serde_json::Value, role: &str, index: usize) -> Option<String> {
    let message = request["input"]
        .as_array()?
        .iter()
        .filter(|item| item["role"] == role)
        .nth(index)?;
    Some(match &message["content"] {
        serde_json::Value::String(text) => text.clone(),
        parts => parts
            .as_array()?
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect(),
    })
}

/// Where gpt-oss's harmony prompt takes its instructions: the developer block, under
/// "# Instructions".
fn harmony_instructions(instructions: &str) -> String {
    format!("# Instructions\n\n{instructions}")
}

/// The one catalog codex-oss wrote, as JSON.
fn catalog(scratch: &Scratch) -> serde_json::Value {
    let dir = scratch.oss_home().join("catalogs");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    serde_json::from_str(&fs_read(&files[0])).unwrap()
}

fn tool_names(request: &serde_json::Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["name"]
                .as_str()
                .or_else(|| t["type"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// A user's `~/.codex/config.toml` written for cloud models.
fn cloud_codex_config(scratch: &Scratch) {
    let dir = scratch.home().join(".codex");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "model = \"gpt-5.1-codex\"\nmodel_reasoning_effort = \"xhigh\"\nmodel_provider = \"openai\"\n",
    )
    .unwrap();
}

#[test]
fn codex_knows_the_model_and_a_cloud_config_does_not_leak_in() {
    let scratch = Scratch::new();
    cloud_codex_config(&scratch);
    // A project folder: Codex trusts no helper on PATH inside the folder it works in,
    // and the scratch home (cwd by default) holds the codex-oss home.
    let project = scratch.home().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let mut cmd = scratch.codex_oss();
    // --strict-config: every key codex-oss sets is one this Codex knows.
    cmd.args(["--strict-config", "exec", "--skip-git-repo-check", "say hi"])
        .current_dir(&project)
        .env("STAND_IN_OLLAMA_BODY_LOG", body_log(&scratch))
        .env("STAND_IN_OLLAMA_PROMPT_LOG", prompt_log(&scratch));
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    assert!(out.stdout.contains(REPLY), "{}", out.text());
    assert!(!out.stderr.contains("Model metadata"), "{}", out.text());
    assert!(!out.stderr.contains("bubblewrap"), "{}", out.text());

    let requests = responses_requests(&body_log(&scratch));
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request["model"], "gpt-oss:20b");
    assert_eq!(
        request["reasoning"]["effort"], "medium",
        "{}",
        request["reasoning"]
    );
    let tools = tool_names(request);
    assert!(!tools.iter().any(|t| t == "web_search"), "{tools:?}");
    assert!(tools.iter().any(|t| t == "exec_command"), "{tools:?}");

    let catalog = catalog(&scratch);
    let model = &catalog["models"][0];
    assert_eq!(model["slug"], "gpt-oss:20b");
    // Codex's instructions reach Ollama as its first system message (the relay's doing)
    // and gpt-oss finds them in its developer block.
    let instructions = model["base_instructions"].as_str().unwrap();
    assert_eq!(
        message_text(request, "system", 0).as_deref(),
        Some(instructions)
    );
    assert!(message_text(request, "developer", 0).is_none());
    let prompts = prompts(&scratch);
    assert!(
        prompts[0].contains(&harmony_instructions(instructions)),
        "gpt-oss was not given Codex's instructions: {}",
        &prompts[0][..prompts[0].len().min(2000)]
    );
    // The window Ollama serves (32768 on a machine under 32 GB, else 65536).
    let window = model["context_window"].as_u64().unwrap();
    assert!(window == 32_768 || window == 65_536, "{window}");
    assert_no_processes_within(scratch.home(), GONE);
}

/// What the pinned Codex sends under its fallback metadata (no catalog) is what the
/// catalog carries: a Codex bump that changes its instructions is caught here.
#[test]
fn the_catalog_carries_the_instructions_the_pinned_codex_sends_by_default() {
    let scratch = Scratch::new();
    // Codex through codex-oss: the catalog is written.
    let out = run(exec_say_hi(&scratch));
    assert!(out.status.success(), "{}", out.text());
    let catalog = catalog(&scratch);

    // The same Codex on its own against the embedded server: fallback metadata.
    let mut serve = scratch.codex_oss();
    serve
        .arg("serve")
        .env("STAND_IN_OLLAMA_BODY_LOG", body_log(&scratch))
        .env("STAND_IN_OLLAMA_PROMPT_LOG", prompt_log(&scratch));
    let mut serving = Running::start(serve);
    serving.wait_until("the server", STEP, |r| {
        r.stdout().contains("Point Codex at it")
    });
    // Ollama itself, not the relay `serve` points Codex at.
    let url = serving
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("Ollama is listening on "))
        .and_then(|rest| rest.split(' ').next())
        .map(|base| format!("{base}/v1"))
        .expect("the server's URL");
    let codex = scratch.unpacked("codex").join("bin/codex");
    let codex_home = scratch.home().join("plain-codex-home");
    std::fs::create_dir_all(&codex_home).unwrap();
    let plain = Command::new(&codex)
        .args(["--oss", "--local-provider", "ollama", "-m", "gpt-oss:20b"])
        .args(["exec", "--skip-git-repo-check", "say hi"])
        .env("CODEX_OSS_BASE_URL", &url)
        .env("CODEX_HOME", &codex_home)
        .env("HOME", scratch.home())
        .current_dir(scratch.home())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    serving.signal(nix::sys::signal::Signal::SIGINT);
    let _ = serving.finish(STEP);
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(plain.status.success(), "{stderr}");
    assert!(
        stderr.contains("Model metadata for `gpt-oss:20b` not found"),
        "{stderr}"
    );
    let requests = responses_requests(&body_log(&scratch));
    let fallback = requests.last().expect("a request from the plain Codex");
    // Codex >= 0.160 sends them as its first developer message.
    let sent = message_text(fallback, "developer", 0).expect("a developer message");
    assert_eq!(
        sent,
        catalog["models"][0]["base_instructions"].as_str().unwrap(),
        "the pinned Codex's default instructions changed: run scripts/bump-codex.sh"
    );
    // Straight to Ollama, a developer message never reaches gpt-oss (its template
    // renders none): what the relay of a codex-oss run is for.
    let prompt = prompts(&scratch).pop().expect("the plain Codex's prompt");
    assert!(!prompt.contains(&sent), "{prompt}");
    assert_no_processes_within(scratch.home(), GONE);
}

/// A scratch git repository with `hello.txt`.
fn repository(scratch: &Scratch) -> PathBuf {
    let repo = scratch.home().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("hello.txt"), "hello\n").unwrap();
    for args in [
        &["init", "-q"][..],
        &["-c", "user.email=t@t", "-c", "user.name=t", "add", "."][..],
        &[
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "start",
        ][..],
    ] {
        let status = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }
    repo
}

/// `codex-oss exec -s workspace-write PROMPT` in `repo`, the model scripted to call
/// `exec_command` with `cmd`, then to reply quoting what it printed.
fn scripted_exec(scratch: &Scratch, repo: &Path, cmd: &str, prompt: &str) -> Finished {
    let script_file = scratch.home().join("model-script.json");
    std::fs::write(
        &script_file,
        serde_json::json!([
            {"call": "exec_command", "arguments": {"cmd": cmd}},
            {"reply": "Done: {output}"},
        ])
        .to_string(),
    )
    .unwrap();
    let mut exec = scratch.codex_oss();
    exec.args(["exec", "-s", "workspace-write", prompt])
        .current_dir(repo)
        .env("STAND_IN_OLLAMA_SCRIPT", &script_file)
        .env("STAND_IN_OLLAMA_BODY_LOG", body_log(scratch));
    run(exec)
}

#[test]
fn a_tool_call_edits_a_file_and_a_shell_command_creates_one() {
    let scratch = Scratch::new();
    let repo = repository(&scratch);
    let patch = "apply_patch <<'EOF'\n*** Begin Patch\n*** Update File: hello.txt\n@@\n-hello\n+goodbye\n*** End Patch\nEOF\n";
    let out = scripted_exec(
        &scratch,
        &repo,
        patch,
        "change hello to goodbye in hello.txt",
    );
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(
        fs_read(&repo.join("hello.txt")),
        "goodbye\n",
        "{}",
        out.text()
    );
    assert!(out.stdout.contains("Done: "), "{}", out.text());
    assert!(out.stdout.contains("hello.txt"), "{}", out.text());

    let out = scripted_exec(
        &scratch,
        &repo,
        "printf 'made by the agent\\n' > new.txt && cat new.txt",
        "create new.txt",
    );
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(fs_read(&repo.join("new.txt")), "made by the agent\n");
    assert!(out.stdout.contains("made by the agent"), "{}", out.text());

    // The tool's output went back to the model with the call's id.
    let requests = responses_requests(&body_log(&scratch));
    let second = requests.last().unwrap();
    let items = second["input"].as_array().unwrap();
    let call = items
        .iter()
        .find(|i| i["type"] == "function_call")
        .expect("the call");
    let output = items
        .iter()
        .find(|i| i["type"] == "function_call_output")
        .expect("its output");
    assert_eq!(call["call_id"], output["call_id"]);
    assert_no_processes_within(scratch.home(), GONE);
}

#[test]
fn a_catalog_codex_rejects_is_left_out_with_one_warning() {
    let scratch = Scratch::new();
    assert!(crate::bundle::doctor(&scratch).status.success());
    let real = scratch.unpacked("codex").join("bin/codex");
    let record = scratch.home().join("args");
    // A Codex whose catalog schema differs: it refuses `debug models` with our file.
    let codex = script(
        &scratch,
        "picky-codex",
        &format!(
            "for a in \"$@\"; do [ \"$a\" = debug ] && {{ echo 'Error: failed to parse model_catalog_json' >&2; exit 1; }}; done\n\
             printf '%s\\n' \"$@\" > {}\nexec {} \"$@\"\n",
            record.display(),
            real.display()
        ),
    );
    for attempt in 1..=2 {
        let out = run(crate::support::exec_with(&scratch, &codex));
        assert!(out.status.success(), "{}", out.text());
        assert!(out.stdout.contains(REPLY), "{}", out.text());
        let warnings = out
            .stderr
            .lines()
            .filter(|l| l.contains("does not accept codex-oss's model catalog"))
            .count();
        assert_eq!(
            warnings,
            usize::from(attempt == 1),
            "attempt {attempt}:\n{}",
            out.text()
        );
        let args = fs_read(&record);
        assert!(!args.contains("model_catalog_json"), "{args}");
        assert!(args.contains("model_reasoning_effort=medium"), "{args}");
    }
    assert_no_processes_within(scratch.home(), GONE);
}

/// A catalog of the user's own (`model_catalog_json` in `~/.codex/config.toml`, or on
/// the command line) is left to Codex: codex-oss neither passes its own nor tries it.
#[test]
fn the_users_own_model_catalog_wins() {
    let scratch = Scratch::new();
    let record = scratch.home().join("calls");
    let codex = script(
        &scratch,
        "recording-codex",
        &format!(
            "printf '%s ' \"$@\" >> {0}\necho >> {0}\n",
            record.display()
        ),
    );
    let dir = scratch.home().join(".codex");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "model_catalog_json = \"/home/me/my-models.json\"\n",
    )
    .unwrap();
    let out = run(crate::support::exec_with(&scratch, &codex));
    assert!(out.status.success(), "{}", out.text());
    let calls = fs_read(&record);
    assert_eq!(
        calls.lines().count(),
        1,
        "Codex ran more than once:\n{calls}"
    );
    assert!(!calls.contains("model_catalog_json"), "{calls}");
    assert!(calls.contains("model_reasoning_effort=medium"), "{calls}");

    // On the command line too; and without either, codex-oss's catalog is passed.
    std::fs::remove_file(dir.join("config.toml")).unwrap();
    std::fs::remove_file(&record).unwrap();
    let mut cmd = crate::support::exec_with(&scratch, &codex);
    cmd.args(["-c", "model_catalog_json=\"/home/me/my-models.json\""]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    let calls = fs_read(&record);
    assert_eq!(calls.matches("model_catalog_json").count(), 1, "{calls}");
    std::fs::remove_file(&record).unwrap();
    let out = run(crate::support::exec_with(&scratch, &codex));
    assert!(out.status.success(), "{}", out.text());
    let calls = fs_read(&record);
    let last = calls.lines().last().unwrap_or_default();
    assert!(
        last.contains("model_catalog_json=") && last.contains("catalogs"),
        "{calls}"
    );
    assert_no_processes_within(scratch.home(), GONE);
}

/// A run of the real Codex busy in a shell command the model asked for (a script in the
/// scratch home that says it started, then sleeps): every process of it is found by
/// its command line.
fn busy_run(scratch: &Scratch, repo: &Path) -> (Running, PathBuf) {
    let started = scratch.home().join("busy-started");
    let busy = script(
        scratch,
        "busy.sh",
        &format!("touch '{}'\nexec sleep 120\n", started.display()),
    );
    let script_file = scratch.home().join("model-script.json");
    std::fs::write(
        &script_file,
        serde_json::json!([
            {"call": "exec_command", "arguments": {"cmd": format!("sh {}", busy.display())}},
            {"reply": "Done: {output}"},
        ])
        .to_string(),
    )
    .unwrap();
    let mut exec = scratch.codex_oss();
    exec.args([
        "exec",
        "--dangerously-bypass-approvals-and-sandbox",
        "keep busy",
    ])
    .current_dir(repo)
    .env("STAND_IN_OLLAMA_SCRIPT", &script_file)
    .env("STAND_IN_OLLAMA_BODY_LOG", body_log(scratch))
    // Its own process group, as a terminal's foreground job: Ctrl-C is a SIGINT to it.
    .process_group(0);
    let mut running = Running::start(exec);
    running.wait_until("the model's shell command", Duration::from_secs(90), |_| {
        started.exists()
    });
    (running, started)
}

/// Codex >= 0.160 may start a background app server (`daemon_auto_start`): codex-oss runs
/// it with `--no-daemon`, and whichever way a run ends, Ctrl-C or a SIGKILL of the
/// launcher, no Codex process (nor the command it ran) is left to use the server.
#[test]
fn no_codex_process_outlives_a_run_however_it_ends() {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;

    let scratch = Scratch::new();
    let repo = repository(&scratch);
    let codex_processes = |scratch: &Scratch| {
        crate::support::processes_mentioning(scratch.home())
            .into_iter()
            .filter(|p| p.contains("/codex/"))
            .collect::<Vec<_>>()
    };

    // Ctrl-C in the terminal: the whole foreground group gets SIGINT.
    let (running, _) = busy_run(&scratch, &repo);
    let codex = codex_processes(&scratch);
    assert!(
        codex.iter().any(|p| p.contains("--no-daemon")),
        "Codex runs without --no-daemon: {codex:?}"
    );
    killpg(running.pid(), Signal::SIGINT).unwrap();
    let _ = running.finish(Duration::from_secs(30));
    assert_no_processes_within(scratch.home(), GONE);

    // The launcher killed outright.
    let (running, _) = busy_run(&scratch, &repo);
    let launcher = running.pid();
    kill(Pid::from_raw(launcher.as_raw()), Signal::SIGKILL).unwrap();
    running.kill();
    assert_no_processes_within(scratch.home(), GONE);
}
