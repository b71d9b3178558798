//! Stand-in `ollama.exe` for the Windows end-to-end tests: a TEST FIXTURE, not Ollama.
//!
//! It does what codex-oss's life cycle needs of Ollama 0.32.15, in its shapes (as the
//! faithful Python stand-in, tests/support/stand-in-ollama/ollama, has them):
//! `ollama serve` binds OLLAMA_HOST (port 0: a free one), refuses to start without a
//! `lib/ollama/*ggml-base*` library beside it, logs slog lines on stderr (among them
//! `Listening on 127.0.0.1:PORT (version 0.32.15)` and a CPU `inference compute` line),
//! starts one runner (`ollama.exe runner`, a child that only waits, as real runners are
//! children of the server) and answers GET /api/version, GET /api/tags (the manifests
//! in OLLAMA_MODELS), POST /api/pull (NDJSON progress; writes a small blob and the
//! manifest; gpt-oss:20b and gpt-oss:120b exist, other names get Ollama's "file does not
//! exist") and GET /v1/models. No model runs; the blob's digest is a fixed one.
//! STAND_IN_OLLAMA_REQUEST_LOG=FILE appends "METHOD PATH" per request.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use windows_stand_ins::{respond, respond_chunked, serve, Request};

const VERSION: &str = "0.32.15";
const REGISTRY: &str = "registry.ollama.ai";
const KNOWN: [&str; 2] = ["gpt-oss:20b", "gpt-oss:120b"];
const BLOB_BYTES: u64 = 1 << 20;
const BLOB_DIGEST: &str = "sha256:b112e727c6f18875636c56a779790a590d705aec9e1c0eb5a97d51fc2a778583";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve_command(),
        Some("runner") => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        Some("-v" | "--version") => println!("Warning: client version is {VERSION}"),
        other => {
            eprintln!(
                "Error: unknown command {:?} for \"ollama\" (this stand-in test fixture only implements serve)",
                other.unwrap_or("")
            );
            std::process::exit(1);
        }
    }
}

/// slog's TextHandler: time= level= source= msg= [attrs].
fn log(level: &str, source: &str, msg: &str, attrs: &str) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (days, rest) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    let quoted = if msg.contains(' ') || msg.contains('=') {
        format!("{msg:?}")
    } else {
        msg.to_owned()
    };
    let mut line = format!(
        "time={y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z level={level} source={source} msg={quoted}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if !attrs.is_empty() {
        line.push(' ');
        line.push_str(attrs);
    }
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Howard Hinnant's days-to-civil-date.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn models_dir() -> PathBuf {
    match std::env::var("OLLAMA_MODELS") {
        Ok(dir) if !dir.trim().is_empty() => PathBuf::from(dir.trim()),
        _ => {
            PathBuf::from(std::env::var("USERPROFILE").unwrap_or_default()).join(".ollama\\models")
        }
    }
}

/// OLLAMA_HOST as Ollama reads it: host:port, http://host:port, :port.
fn host() -> String {
    let value = std::env::var("OLLAMA_HOST").unwrap_or_default();
    let value = value.trim().trim_start_matches("http://");
    let value = value.split('/').next().unwrap_or_default();
    match value.rsplit_once(':') {
        Some(("", port)) => format!("127.0.0.1:{port}"),
        Some((host, port)) => format!("{host}:{port}"),
        None if value.is_empty() => "127.0.0.1:11434".to_owned(),
        None => format!("{value}:11434"),
    }
}

fn serve_command() {
    let exe = std::env::current_exe().expect("own path");
    let lib = exe.parent().unwrap().join("lib").join("ollama");
    let has_base = std::fs::read_dir(&lib)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("ggml-base"))
        })
        .unwrap_or(false);
    if !has_base {
        eprintln!(
            "Error: stand-in ollama: no ggml-base library in {} (the release's lib\\ollama folder is missing or incomplete)",
            lib.display()
        );
        std::process::exit(1);
    }
    let host = host();
    let listener = match TcpListener::bind(&host) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("Error: listen tcp {host}: bind: {err}");
            std::process::exit(1);
        }
    };
    let store = models_dir();
    let _ = std::fs::create_dir_all(store.join("blobs"));
    let _ = std::fs::create_dir_all(store.join("manifests"));
    log(
        "INFO",
        "routes.go:1948",
        "server config",
        &format!(
            "env=\"map[OLLAMA_HOST:http://{host} OLLAMA_MODELS:{}]\"",
            store.display()
        )
        .replace('\\', "\\\\"),
    );
    let addr = listener.local_addr().unwrap();
    log(
        "INFO",
        "routes.go:2008",
        &format!("Listening on {addr} (version {VERSION})"),
        "",
    );
    log("INFO", "runner.go:60", "discovering available GPUs...", "");
    log(
        "INFO",
        "types.go:50",
        "inference compute",
        "id=cpu library=cpu compute=\"\" name=cpu description=cpu libdirs=ollama driver=\"\" pci_id=\"\" type=\"\" total=\"15.5 GiB\" available=\"15.0 GiB\"",
    );
    log(
        "INFO",
        "routes.go:2058",
        "vram-based default context",
        "total_vram=\"0 B\" default_num_ctx=4096",
    );
    match std::process::Command::new(&exe)
        .arg("runner")
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        Ok(runner) => log(
            "INFO",
            "server.go",
            &format!("runner pid={}", runner.id()),
            "",
        ),
        Err(err) => log("WARN", "server.go", &format!("no runner: {err}"), ""),
    }
    serve(listener, handle);
}

fn handle(stream: &TcpStream, request: Request) {
    if let Ok(file) = std::env::var("STAND_IN_OLLAMA_REQUEST_LOG") {
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
        {
            let _ = writeln!(log, "{} {}", request.method, request.path);
        }
    }
    let json = "application/json; charset=utf-8";
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/") | ("HEAD", "/") => respond(
            stream,
            200,
            "text/plain; charset=utf-8",
            b"Ollama is running",
        ),
        ("GET", "/api/version") => respond(
            stream,
            200,
            json,
            format!("{{\"version\":\"{VERSION}\"}}").as_bytes(),
        ),
        ("GET", "/api/tags") => {
            let models: Vec<String> = installed()
                .iter()
                .map(|(name, modified)| {
                    format!(
                        "{{\"name\":\"{name}\",\"model\":\"{name}\",\"modified_at\":\"{modified}\",\"size\":{BLOB_BYTES},\"digest\":\"{}\",\"details\":{{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"gptoss\",\"families\":[\"gptoss\"],\"parameter_size\":\"20.9B\",\"quantization_level\":\"MXFP4\"}}}}",
                        &BLOB_DIGEST[7..]
                    )
                })
                .collect();
            respond(
                stream,
                200,
                json,
                format!("{{\"models\":[{}]}}", models.join(",")).as_bytes(),
            );
        }
        ("GET", "/v1/models") => {
            let data: Vec<String> = installed()
                .iter()
                .map(|(name, _)| format!("{{\"id\":\"{name}\",\"object\":\"model\",\"created\":0,\"owned_by\":\"library\"}}"))
                .collect();
            respond(
                stream,
                200,
                json,
                format!("{{\"object\":\"list\",\"data\":[{}]}}", data.join(",")).as_bytes(),
            );
        }
        ("POST", "/api/pull") => pull(stream, &request),
        _ => respond(stream, 404, "text/plain", b"404 page not found"),
    }
}

/// Installed models as (name, modified_at): manifests/registry.ollama.ai/NS/MODEL/TAG.
fn installed() -> Vec<(String, String)> {
    let root = models_dir().join("manifests").join(REGISTRY);
    let mut found = Vec::new();
    for ns in read_dirs(&root) {
        for model in read_dirs(&ns) {
            for tag in std::fs::read_dir(&model).into_iter().flatten().flatten() {
                let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
                let prefix = if name(&ns) == "library" {
                    String::new()
                } else {
                    format!("{}/", name(&ns))
                };
                found.push((
                    format!("{prefix}{}:{}", name(&model), name(&tag.path())),
                    "2026-01-01T00:00:00Z".to_owned(),
                ));
            }
        }
    }
    found
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// The `"model"` (or older `"name"`) string of a JSON body.
fn model_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    for key in ["\"model\"", "\"name\""] {
        if let Some(at) = text.find(key) {
            let rest = text[at + key.len()..]
                .trim_start()
                .trim_start_matches(':')
                .trim_start();
            if let Some(rest) = rest.strip_prefix('"') {
                return rest.split('"').next().unwrap_or_default().to_owned();
            }
        }
    }
    String::new()
}

fn pull(stream: &TcpStream, request: &Request) {
    let mut model = model_of(&request.body);
    if !model.contains(':') {
        model.push_str(":latest");
    }
    let line = |s: String| (s + "\n").into_bytes();
    let mut lines = vec![line("{\"status\":\"pulling manifest\"}".into())];
    if !KNOWN.contains(&model.as_str()) {
        lines.push(line(
            "{\"error\":\"pull model manifest: file does not exist\"}".into(),
        ));
        return respond_chunked(stream, "application/x-ndjson", lines.into_iter());
    }
    let store = models_dir();
    let hex = &BLOB_DIGEST[7..];
    let status = format!("pulling {}", &hex[..12]);
    for completed in [0, BLOB_BYTES / 2, BLOB_BYTES] {
        let completed = if completed == 0 {
            String::new()
        } else {
            format!(",\"completed\":{completed}")
        };
        lines.push(line(format!(
            "{{\"status\":\"{status}\",\"digest\":\"{BLOB_DIGEST}\",\"total\":{BLOB_BYTES}{completed}}}"
        )));
    }
    let _ = std::fs::write(
        store.join("blobs").join(format!("sha256-{hex}")),
        vec![0u8; BLOB_BYTES as usize],
    );
    lines.push(line("{\"status\":\"verifying sha256 digest\"}".into()));
    lines.push(line("{\"status\":\"writing manifest\"}".into()));
    let (name, tag) = model.split_once(':').unwrap();
    let (ns, name) = name.split_once('/').unwrap_or(("library", name));
    let dir = store.join("manifests").join(REGISTRY).join(ns).join(name);
    let _ = std::fs::create_dir_all(&dir);
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"config\":{{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"digest\":\"{BLOB_DIGEST}\",\"size\":0}},\"layers\":[{{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"{BLOB_DIGEST}\",\"size\":{BLOB_BYTES}}}]}}"
    );
    let _ = std::fs::write(dir.join(tag), manifest);
    lines.push(line("{\"status\":\"success\"}".into()));
    respond_chunked(stream, "application/x-ndjson", lines.into_iter());
}
