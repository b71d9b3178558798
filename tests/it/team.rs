//! A team's server behind `CODEX_OSS_BASE_URL`: the stand-in vLLM of tests/support (no
//! `/api/*`, a bearer key, `max_model_len`, vLLM's 400s for tools other than functions)
//! with the real pinned Codex. Codex answers and edits files there with nothing of the
//! embedded Ollama started; the key never shows on a command line, in a log or in doctor;
//! every way it can go wrong is one line with the fix.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    assert_no_processes_within, assert_user_sees, fs_read, processes_mentioning, run, Finished,
    Running, Scratch, GONE, REPLY, STEP,
};

/// The model vLLM serves under its default name for `vllm serve openai/gpt-oss-120b`.
const MODEL: &str = "openai/gpt-oss-120b";
const CONTEXT: &str = "131072";

/// A running stand-in vLLM; killed when dropped.
struct Vllm {
    child: Child,
    /// `http://127.0.0.1:PORT/v1`
    url: String,
    log: PathBuf,
}

impl Vllm {
    /// `vllm serve MODEL --port 0 ARGS...` with `env`, its requests noted in a log.
    fn start(scratch: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Vllm {
        let log = scratch.home().join(format!("vllm-{}.log", rand_suffix()));
        let mut cmd = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/stand-in-vllm/vllm"
        ));
        cmd.args(["serve", MODEL, "--port", "0", "--max-model-len", CONTEXT])
            .args(args)
            .env("STAND_IN_VLLM_LOG", &log)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start the stand-in vLLM");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .split("running on ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("no address from the stand-in vLLM: {line:?}"))
            .to_owned();
        Vllm {
            child,
            url: format!("{address}/v1"),
            log,
        }
    }

    /// The requests it got, one `METHOD PATH auth=...` a line, and `BODY ...` lines.
    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `/v1/responses` request bodies, as JSON.
    fn responses(&self) -> Vec<serde_json::Value> {
        let requests = self.requests();
        let lines: Vec<&str> = requests.lines().collect();
        lines
            .windows(2)
            .filter(|pair| pair[0].starts_with("POST /v1/responses "))
            .filter_map(|pair| pair[1].strip_prefix("BODY "))
            .map(|body| serde_json::from_str(body).expect("a JSON body"))
            .collect()
    }
}

impl Drop for Vllm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A key no other text contains.
fn a_key() -> String {
    format!("team-key-{}", rand_suffix())
}

/// `codex-oss ARGS` pointed at `url` with `key` in `CODEX_OSS_API_KEY`.
fn codex_oss(scratch: &Scratch, url: &str, key: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = scratch.codex_oss();
    cmd.env("CODEX_OSS_BASE_URL", url).args(args);
    if let Some(key) = key {
        cmd.env("CODEX_OSS_API_KEY", key);
    }
    cmd
}

/// Every file under `dir` (recursively) that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_symlink() {
            continue;
        }
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        {
            found.push(path);
        }
    }
    found
}

fn tool_types(request: &serde_json::Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_team_server_answers_and_its_key_stays_out_of_sight() {
    let scratch = Scratch::new();
    let key = a_key();
    // vLLM reads the key from VLLM_API_KEY as well as --api-key: the server's own command
    // line stays clean too, so any process showing the key would be codex-oss's or Codex's.
    let vllm = Vllm::start(
        &scratch,
        &[],
        &[("VLLM_API_KEY", &key), ("STAND_IN_VLLM_DELAY_MS", "1500")],
    );
    let project = scratch.home().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let mut cmd = codex_oss(
        &scratch,
        &vllm.url,
        Some(&key),
        &["--strict-config", "exec", "--skip-git-repo-check", "say hi"],
    );
    cmd.current_dir(&project).env("CODEX_OSS_LOG", "debug");
    let mut running = Running::start(cmd);
    // While the server takes its time over the answer, Codex is running: no command line
    // on the machine carries the key.
    let mut seen_codex = false;
    let deadline = Instant::now() + STEP;
    while Instant::now() < deadline && !vllm.requests().contains("POST /v1/responses") {
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..20 {
        let showing = processes_mentioning(Path::new(&key));
        assert!(
            showing.is_empty(),
            "the key is on a command line: {showing:#?}"
        );
        seen_codex |= !processes_mentioning(&scratch.oss_home().join("codex")).is_empty();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        seen_codex,
        "Codex was not running while the server answered"
    );
    running.wait_until("the answer", STEP, |r| r.stdout().contains(REPLY));
    let out = running.finish(STEP);
    assert!(out.status.success(), "{}", out.text());
    assert!(!out.stdout.contains(&key) && !out.stderr.contains(&key));
    assert!(
        out.stderr.contains("DEBUG"),
        "the launcher's diagnostics ran: {}",
        out.text()
    );

    // Everything under /v1 carried the key; nothing was pulled; no Ollama was unpacked.
    let requests = vllm.requests();
    for line in requests.lines().filter(|l| l.contains(" /v1/")) {
        assert!(line.ends_with("auth=ok"), "{line}\n{requests}");
    }
    assert!(!requests.contains("/api/pull"), "{requests}");
    assert!(!scratch.oss_home().join("ollama").exists());
    let request = &vllm.responses()[0];
    assert_eq!(request["model"], MODEL);
    assert_eq!(request["reasoning"]["effort"], "medium");
    assert!(
        tool_types(request).iter().all(|t| t == "function"),
        "{:?}",
        tool_types(request)
    );
    // The catalog gives Codex the served window.
    let catalogs: Vec<PathBuf> = std::fs::read_dir(scratch.oss_home().join("catalogs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    let catalog: serde_json::Value = serde_json::from_str(&fs_read(&catalogs[0])).unwrap();
    assert_eq!(catalog["models"][0]["slug"], MODEL);
    assert_eq!(catalog["models"][0]["context_window"], 131_072);

    // Nor in any file codex-oss or Codex wrote, nor in doctor.
    let holding = files_holding(scratch.home(), &key);
    assert!(holding.is_empty(), "the key was written to {holding:?}");
    for args in [&["doctor"][..], &["doctor", "--json"][..]] {
        let out = run(codex_oss(&scratch, &vllm.url, Some(&key), args));
        assert!(
            !out.stdout.contains(&key) && !out.stderr.contains(&key),
            "{}",
            out.text()
        );
    }
    assert_no_processes_within(scratch.home(), GONE);
}

/// A scratch project folder with a git repository.
fn repository(scratch: &Scratch) -> PathBuf {
    let repo = scratch.home().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let status = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&repo)
        .status()
        .unwrap();
    assert!(status.success());
    repo
}

#[test]
fn a_scripted_tool_call_creates_a_file_on_a_team_server() {
    let scratch = Scratch::new();
    let key = a_key();
    let script = scratch.home().join("model-script.json");
    std::fs::write(
        &script,
        serde_json::json!([
            {"call": "exec_command", "arguments": {"cmd": "printf 'made on the team server\\n' > new.txt && cat new.txt"}},
            {"reply": "Done: {output}"},
        ])
        .to_string(),
    )
    .unwrap();
    let vllm = Vllm::start(
        &scratch,
        &["--api-key", &key],
        &[("STAND_IN_VLLM_SCRIPT", script.to_str().unwrap())],
    );
    let repo = repository(&scratch);
    let mut cmd = codex_oss(
        &scratch,
        &vllm.url,
        Some(&key),
        &["exec", "-s", "workspace-write", "create new.txt"],
    );
    cmd.current_dir(&repo);
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(fs_read(&repo.join("new.txt")), "made on the team server\n");
    assert!(out.stdout.contains("Done: "), "{}", out.text());
    // The call's output went back with its id, and vLLM took it.
    let requests = vllm.responses();
    let second = requests.last().unwrap();
    let items = second["input"].as_array().unwrap();
    let call = items.iter().find(|i| i["type"] == "function_call").unwrap();
    let output = items
        .iter()
        .find(|i| i["type"] == "function_call_output")
        .unwrap();
    assert_eq!(call["call_id"], output["call_id"]);
    assert_no_processes_within(scratch.home(), GONE);
}

/// What codex-oss leaves out is what vLLM refuses: with the `multi_agent` feature (its
/// `namespace` tool) or web search turned back on by the user, the run fails on vLLM's 400.
#[test]
fn without_the_restrictions_the_run_fails_the_way_vllm_makes_it() {
    let scratch = Scratch::new();
    let key = a_key();
    let vllm = Vllm::start(&scratch, &["--api-key", &key], &[]);
    for (flags, refused) in [
        (
            &["--enable", "multi_agent"][..],
            "tool type namespace not supported",
        ),
        (&["--search"][..], "tool type web_search not supported"),
    ] {
        let mut args = flags.to_vec();
        args.extend(["exec", "--skip-git-repo-check", "say hi"]);
        let out = run(codex_oss(&scratch, &vllm.url, Some(&key), &args));
        assert!(!out.status.success(), "{flags:?}: {}", out.text());
        assert!(!out.stdout.contains(REPLY), "{}", out.text());
        assert!(out.stderr.contains(refused), "{flags:?}: {}", out.text());
        assert!(out.stderr.contains("400"), "{}", out.text());
    }
    assert_no_processes_within(scratch.home(), GONE);
}

/// The one `codex-oss: error:` line of a run at `url`.
fn error_of(scratch: &Scratch, url: &str, key: Option<&str>, extra: &[(&str, &str)]) -> Finished {
    let mut cmd = codex_oss(scratch, url, key, &["exec", "--skip-git-repo-check", "hi"]);
    cmd.envs(extra.iter().copied());
    let out = run(cmd);
    assert!(!out.status.success(), "{}", out.text());
    assert!(!out.stdout.contains(REPLY), "{}", out.text());
    out
}

#[test]
fn each_failure_is_one_line_with_the_fix() {
    let scratch = Scratch::new();
    let key = a_key();
    let vllm = Vllm::start(&scratch, &["--api-key", &key], &[]);

    let out = error_of(&scratch, &vllm.url, None, &[]);
    assert_user_sees!(&scratch, "team_no_key", out.error_line());
    let out = error_of(&scratch, &vllm.url, Some("not-the-key"), &[]);
    assert_user_sees!(&scratch, "team_key_refused", out.error_line());
    assert!(!out.stderr.contains("not-the-key"), "{}", out.text());
    let out = error_of(
        &scratch,
        &vllm.url,
        Some(&key),
        &[("CODEX_OSS_MODEL", "gpt-oss:20b")],
    );
    assert_user_sees!(&scratch, "team_model_missing", out.error_line());
    // Its models are the server's business.
    let out = run(codex_oss(
        &scratch,
        &vllm.url,
        Some(&key),
        &["models", "list"],
    ));
    assert!(!out.status.success(), "{}", out.text());
    assert_user_sees!(&scratch, "team_models_list", out.error_line());

    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let out = error_of(&scratch, &url, Some(&key), &[]);
    assert_user_sees!(&scratch, "team_unreachable", out.error_line());

    // A web server, but neither Ollama nor OpenAI-compatible.
    let web = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", web.server_addr().to_ip().unwrap());
    let answering = std::thread::spawn(move || {
        for request in web.incoming_requests().take(2) {
            let _ = request.respond(tiny_http::Response::from_string("no").with_status_code(404));
        }
    });
    let out = error_of(&scratch, &url, Some(&key), &[]);
    assert_user_sees!(&scratch, "team_not_openai_compatible", out.error_line());
    answering.join().unwrap();
    assert_no_processes_within(scratch.home(), GONE);
}

/// A team's own CA (`team-ca.pem`) and a certificate it issued for 127.0.0.1, made with
/// openssl: (CA certificate, server certificate, server key).
fn certificates(scratch: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch.home();
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ]
        .into_iter()
        .chain([
            "-subj",
            "/CN=team-ca",
            "-keyout",
            "ca.key",
            "-out",
            "team-ca.pem",
        ])
        .collect::<Vec<_>>(),
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
        ]
        .into_iter()
        .chain(["-keyout", "server.key", "-out", "server.csr"])
        .collect::<Vec<_>>(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "team-ca.pem",
            "-CAkey",
            "ca.key",
        ]
        .into_iter()
        .chain([
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ])
        .collect::<Vec<_>>(),
    );
    (
        dir.join("team-ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn https_with_the_systems_roots_and_ssl_cert_file_for_a_teams_own_ca() {
    let scratch = Scratch::new();
    let key = a_key();
    let (ca, cert, cert_key) = certificates(&scratch);
    let vllm = Vllm::start(
        &scratch,
        &[
            "--api-key",
            &key,
            "--ssl-certfile",
            cert.to_str().unwrap(),
            "--ssl-keyfile",
            cert_key.to_str().unwrap(),
        ],
        &[],
    );
    assert!(vllm.url.starts_with("https://"), "{}", vllm.url);
    let out = error_of(&scratch, &vllm.url, Some(&key), &[]);
    assert_user_sees!(&scratch, "team_tls_failure", out.error_line());

    let mut cmd = codex_oss(&scratch, &vllm.url, Some(&key), &["doctor", "--json"]);
    cmd.env("SSL_CERT_FILE", &ca);
    let out = run(cmd);
    let report: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.text()));
    assert_eq!(
        report["server"]["kind"],
        "openai-compatible",
        "{}",
        out.text()
    );
    assert_eq!(report["server"]["auth"], "ok", "{}", out.text());
    // Codex, too, trusts the CA in SSL_CERT_FILE.
    let mut cmd = codex_oss(
        &scratch,
        &vllm.url,
        Some(&key),
        &["exec", "--skip-git-repo-check", "say hi"],
    );
    cmd.env("SSL_CERT_FILE", &ca);
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    assert!(out.stdout.contains(REPLY), "{}", out.text());
    drop(vllm);
    assert_no_processes_within(scratch.home(), GONE);
}

#[test]
fn doctor_reports_the_team_server_and_never_its_key() {
    let scratch = Scratch::new();
    let key = a_key();
    let vllm = Vllm::start(
        &scratch,
        &[
            "--api-key",
            &key,
            "--served-model-name",
            MODEL,
            "gpt-oss-20b",
        ],
        &[],
    );
    let server_lines = |out: &Finished| -> String {
        out.stdout
            .lines()
            .filter(|l| l.starts_with("server"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let out = run(codex_oss(&scratch, &vllm.url, Some(&key), &["doctor"]));
    assert!(out.status.success(), "{}", out.text());
    assert_user_sees!(&scratch, "team_doctor", server_lines(&out));
    let out = run(codex_oss(&scratch, &vllm.url, Some("wrong"), &["doctor"]));
    assert!(!out.status.success(), "{}", out.text());
    assert_user_sees!(&scratch, "team_doctor_key_refused", server_lines(&out));

    let out = run(codex_oss(
        &scratch,
        &vllm.url,
        Some(&key),
        &["doctor", "--json"],
    ));
    assert!(out.status.success(), "{}", out.text());
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let server = &report["server"];
    assert_eq!(server["kind"], "openai-compatible");
    assert_eq!(server["engine"], "vllm");
    assert_eq!(server["version"], "0.34.0");
    assert_eq!(server["auth"], "ok");
    assert_eq!(server["key_variable"], "CODEX_OSS_API_KEY");
    assert_eq!(server["model"], MODEL);
    assert_eq!(server["context"], 131_072);
    assert_eq!(
        server["models"],
        serde_json::json!([{"id": MODEL, "context": 131_072}, {"id": "gpt-oss-20b", "context": 131_072}])
    );
    assert!(!out.stdout.contains(&key));

    // The same for good in config.toml, the key in a variable of the team's choosing.
    std::fs::create_dir_all(scratch.oss_home()).unwrap();
    std::fs::write(
        scratch.oss_home().join("config.toml"),
        format!(
            "base_url = \"{}\"\napi_key_env = \"TEAM_LLM_KEY\"\n",
            vllm.url
        ),
    )
    .unwrap();
    let mut cmd = scratch.codex_oss();
    cmd.args(["doctor", "--json"]).env("TEAM_LLM_KEY", &key);
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["server"]["auth"], "ok");
    assert_eq!(report["server"]["key_variable"], "TEAM_LLM_KEY");
    let mut cmd = scratch.codex_oss();
    cmd.args(["exec", "--skip-git-repo-check", "hi"]);
    let out = run(cmd);
    assert_user_sees!(&scratch, "team_no_key_in_its_variable", out.error_line());
    assert_no_processes_within(scratch.home(), GONE);
}

/// The fixture answers as vLLM does (its `ErrorResponse`: message, type, param, code): the
/// refusals the end-to-end tests rely on come from the request alone.
#[test]
fn the_stand_in_refuses_what_vllm_refuses() {
    let scratch = Scratch::new();
    let vllm = Vllm::start(&scratch, &["--api-key", "k"], &[]);
    let post = |body: serde_json::Value, key: Option<&str>| {
        let mut request =
            ureq::post(&format!("{}/responses", vllm.url)).set("Content-Type", "application/json");
        if let Some(key) = key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        match request.send_string(&body.to_string()) {
            Ok(resp) => (resp.status(), resp.into_string().unwrap()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap()),
            Err(err) => panic!("{err}"),
        }
    };
    let function = serde_json::json!({"type": "function", "name": "exec_command", "parameters": {"type": "object"}});
    for (tool, kind) in [
        (
            serde_json::json!({"type": "namespace", "name": "multi_agent_v1", "tools": [function]}),
            "namespace",
        ),
        (serde_json::json!({"type": "web_search"}), "web_search"),
        (
            serde_json::json!({"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}),
            "custom",
        ),
    ] {
        let (status, body) = post(
            serde_json::json!({"model": MODEL, "input": "hi", "stream": true, "tools": [function, tool]}),
            Some("k"),
        );
        assert_eq!(status, 400, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"message": format!("tool type {kind} not supported"), "type": "BadRequestError", "param": null, "code": 400}})
        );
    }
    let (status, body) = post(serde_json::json!({"model": MODEL, "input": "hi"}), None);
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"error": "Unauthorized"}"#)
    );
    let (status, body) = post(
        serde_json::json!({"model": MODEL, "input": "hi", "tools": [function]}),
        Some("k"),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        serde_json::json!({"model": "gpt-oss:20b", "input": "hi"}),
        Some("k"),
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NotFoundError"), "{body}");
    // No Ollama API, with or without the key.
    let root = vllm.url.trim_end_matches("/v1");
    match ureq::get(&format!("{root}/api/version")).call() {
        Err(ureq::Error::Status(404, resp)) => {
            assert_eq!(resp.into_string().unwrap(), r#"{"detail": "Not Found"}"#);
        }
        other => panic!("{other:?}"),
    }
}
