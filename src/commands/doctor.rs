//! `codex-oss doctor`: unpacks and checks the payloads and reports what it finds: the
//! versions and paths, free disk and memory against the model's needs, the GPU (found,
//! its libraries, the device Ollama last used), the shared servers, and the last lines of
//! the latest Ollama log; with `CODEX_OSS_BASE_URL` (or `base_url` in config.toml), what
//! answers there: its kind, version, models and context, and whether its key is accepted
//! (never the key). `doctor --json` prints the same as one JSON object whose field
//! names stay put, for scripts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::gpu::{self, Place};
use crate::payload;
use crate::server::Compute;
use crate::settings::Settings;

/// Lines of the latest Ollama log shown.
const LOG_LINES: usize = 10;

/// Everything doctor reports; the JSON field names are part of the interface.
#[derive(Serialize)]
struct Report {
    /// True when both payloads are unpacked and intact.
    healthy: bool,
    home: PathBuf,
    versions: Versions,
    payloads: Vec<PayloadReport>,
    model: ModelReport,
    disk: Disk,
    memory: Memory,
    gpu: GpuReport,
    /// The shared servers running now.
    servers: Vec<ServerReport>,
    /// How long a shared server stays after its last run (`OLLAMA_KEEP_ALIVE`), said.
    #[serde(skip)]
    keep_alive: String,
    /// The latest Ollama log, if any.
    log: Option<LogReport>,
    /// The server at `CODEX_OSS_BASE_URL`, when it is set.
    server: Option<RemoteReport>,
}

/// The user's or team's server (see `remote`); never the key.
#[derive(Serialize, Default)]
struct RemoteReport {
    url: String,
    /// `ollama` or `openai-compatible`; none when it could not be used.
    kind: Option<&'static str>,
    /// `vllm`, `sglang`, ... (the models' `owned_by`).
    engine: Option<String>,
    version: Option<String>,
    models: Vec<ServedReport>,
    /// The model a run would get, and the context window Codex would be told.
    model: Option<String>,
    context: Option<u32>,
    /// The variable the key is read from.
    key_variable: String,
    /// `ok` (a key was sent and accepted), `not needed`, `missing` (wanted, none set),
    /// `refused`; none when it could not be checked.
    auth: Option<&'static str>,
    error: Option<String>,
}

#[derive(Serialize)]
struct ServedReport {
    id: String,
    context: Option<u32>,
}

#[derive(Serialize)]
struct Versions {
    codex_oss: &'static str,
    /// The embedded Ollama and Codex (none when the build left them out).
    ollama: Option<&'static str>,
    codex: Option<&'static str>,
}

#[derive(Serialize)]
struct PayloadReport {
    name: &'static str,
    version: &'static str,
    /// `Ollama 0.x`, for the text report.
    #[serde(skip)]
    label: String,
    ok: bool,
    /// The unpacked executable.
    path: Option<PathBuf>,
    error: Option<String>,
}

#[derive(Serialize)]
struct ModelReport {
    name: String,
    store: PathBuf,
    downloaded: bool,
    needs_disk_bytes: Option<u64>,
    needs_memory_bytes: Option<u64>,
}

#[derive(Serialize)]
struct Disk {
    /// The model store's folder (or the nearest one that exists).
    path: PathBuf,
    free_bytes: Option<u64>,
    /// Room for the model, when it is still to be downloaded and its size is known.
    enough: Option<bool>,
}

#[derive(Serialize)]
struct Memory {
    total_bytes: u64,
    available_bytes: u64,
    enough: Option<bool>,
}

/// The GPU facts `doctor` and `gpu status` both print.
#[derive(Serialize)]
pub struct GpuReport {
    #[serde(flatten)]
    pub status: gpu::Status,
    /// The device the latest Ollama log says Ollama computed on.
    ollama_used: Option<Compute>,
    /// Why it was the CPU when an NVIDIA GPU and its libraries are there.
    cpu_because: Option<String>,
    /// The latest Ollama log (reported on its own, as `log`).
    #[serde(skip)]
    log: Option<PathBuf>,
}

#[derive(Serialize)]
struct ServerReport {
    url: String,
    port: Option<u16>,
    /// codex-oss runs using it.
    runs: usize,
    log: PathBuf,
}

#[derive(Serialize)]
struct LogReport {
    path: PathBuf,
    last_lines: Vec<String>,
}

pub fn run(json: bool) -> Result<ExitCode> {
    let settings = super::settings(None)?;
    let mut report = Report::gather(&settings);
    if let Some(url) = &settings.base_url {
        let server = remote_report(&settings, url)?;
        report.healthy &= server.error.is_none();
        report.server = Some(server);
    }
    if json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    Ok(if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

impl Report {
    fn gather(settings: &Settings) -> Report {
        let home = &settings.home;
        let mut payloads = Vec::new();
        let mut ollama_place = None;
        // The unpacked copies stay leased while the report is made.
        let mut leases = Vec::new();
        for payload in [payload::ollama(), payload::codex()].into_iter().flatten() {
            let unpacked = payload.ensure_unpacked(home);
            if unpacked.is_ok() && payload.name == "ollama" {
                ollama_place = Some(Place::of_embedded(payload, home));
            }
            payloads.push(PayloadReport {
                name: payload.name,
                version: payload.version,
                label: payload.label(),
                ok: unpacked.is_ok(),
                path: unpacked.as_ref().ok().map(|u| u.executable.clone()),
                error: unpacked.as_ref().err().map(ToString::to_string),
            });
            leases.extend(unpacked.ok());
        }
        let servers = crate::shared::running(home)
            .into_iter()
            .map(|(url, runs, log)| ServerReport {
                port: reqwest::Url::parse(&url).ok().and_then(|u| u.port()),
                url,
                runs,
                log,
            })
            .collect();
        let model = model_report(settings);
        // The store may not exist yet: the nearest folder that does.
        let disk = model.store.ancestors().find(|p| p.is_dir());
        let disk = disk.unwrap_or(&model.store).to_path_buf();
        let free_bytes = fs4::available_space(&disk).ok();
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        let total = system.total_memory();
        let gpu = GpuReport::new(settings, ollama_place.as_ref());
        let log = gpu.log.clone();
        Report {
            healthy: payloads.iter().all(|p| p.ok),
            home: home.root().to_owned(),
            versions: Versions {
                codex_oss: env!("CARGO_PKG_VERSION"),
                ollama: payload::ollama().map(|p| p.version),
                codex: payload::codex().map(|p| p.version),
            },
            payloads,
            disk: Disk {
                enough: match (free_bytes, model.needs_disk_bytes) {
                    (Some(free), Some(needed)) if !model.downloaded => Some(free >= needed),
                    _ => None,
                },
                path: disk,
                free_bytes,
            },
            memory: Memory {
                total_bytes: total,
                available_bytes: system.available_memory(),
                enough: model
                    .needs_memory_bytes
                    .filter(|_| total > 0)
                    .map(|needed| total >= needed),
            },
            model,
            gpu,
            servers,
            keep_alive: describe_keep_alive(settings.keep_alive()),
            log: log.map(|path| LogReport {
                last_lines: last_lines(&path, LOG_LINES),
                path,
            }),
            server: None,
        }
    }

    fn print(&self) {
        out!("home: {}", self.home.display());
        for payload in &self.payloads {
            let label = &payload.label;
            match (&payload.path, &payload.error) {
                (Some(path), _) => out!("{label}: ok, {}", path.display()),
                (None, error) => out!("{label}: {}", error.as_deref().unwrap_or("not unpacked")),
            }
        }
        if self.servers.is_empty() {
            out!("shared server: none running");
        }
        for server in &self.servers {
            out!(
                "shared server: {}, used by {} codex-oss run{}, log {}",
                server.url,
                server.runs,
                if server.runs == 1 { "" } else { "s" },
                server.log.display()
            );
        }
        out!("shared server after the last run: {}", self.keep_alive);
        let v = &self.versions;
        out!(
            "versions: codex-oss {}, Ollama {}, Codex {}",
            v.codex_oss,
            v.ollama.unwrap_or("not embedded"),
            v.codex.unwrap_or("not embedded")
        );
        let model = &self.model;
        out!(
            "model: {}, {} (store {})",
            model.name,
            if model.downloaded {
                "downloaded"
            } else {
                "not downloaded yet"
            },
            model.store.display()
        );
        let needs = |bytes: Option<u64>, enough: Option<bool>, short: &str| match (bytes, enough) {
            (Some(bytes), Some(enough)) => format!(
                "; {} needs about {} GB: {}",
                model.name,
                bytes / 1_000_000_000,
                if enough { "enough" } else { short }
            ),
            _ => String::new(),
        };
        let disk = &self.disk;
        out!(
            "disk: {} free in {}{}",
            disk.free_bytes
                .map_or_else(|| "unknown".to_owned(), gpu::human),
            disk.path.display(),
            needs(
                (!model.downloaded)
                    .then_some(model.needs_disk_bytes)
                    .flatten(),
                disk.enough,
                "too little, free some space or set OLLAMA_MODELS to a larger disk"
            )
        );
        let memory = &self.memory;
        out!(
            "memory: {} total, {} available{}",
            gpu::human(memory.total_bytes),
            gpu::human(memory.available_bytes),
            needs(
                model.needs_memory_bytes,
                memory.enough,
                "too little, expect it to be very slow or to fail (CODEX_OSS_MODEL picks a smaller model)"
            )
        );
        self.gpu.print();
        match &self.log {
            None => out!("log: none yet"),
            Some(log) => {
                out!("log: {}, last lines:", log.path.display());
                for line in &log.last_lines {
                    out!("    {line}");
                }
            }
        }
        if let Some(server) = &self.server {
            server.print();
        }
    }
}

/// Probes the server at `url` (on a runtime of its own: the rest of doctor is blocking).
fn remote_report(settings: &Settings, url: &str) -> Result<RemoteReport> {
    use crate::remote::{self, Kind, RemoteError};
    let probed = super::block_on(async { Ok(remote::probe(url, &settings.api_key).await) })?;
    let mut report = RemoteReport {
        url: url.to_owned(),
        key_variable: settings.api_key.var.clone(),
        ..RemoteReport::default()
    };
    match probed {
        Ok(found) => match found.kind {
            Kind::Ollama { version } => {
                report.kind = Some("ollama");
                report.engine = Some("ollama".to_owned());
                report.version = Some(version);
                report.auth = Some("not needed");
            }
            Kind::OpenAi(server) => {
                report.kind = Some("openai-compatible");
                report.engine.clone_from(&server.engine);
                report.version.clone_from(&server.version);
                report.auth = Some(if server.key_accepted {
                    "ok"
                } else {
                    "not needed"
                });
                report.models = server
                    .models
                    .iter()
                    .map(|m| ServedReport {
                        id: m.id.clone(),
                        context: m.max_model_len,
                    })
                    .collect();
                match server.choose(url, settings) {
                    Ok((model, context)) => {
                        (report.model, report.context) = (Some(model), Some(context));
                    }
                    Err(err) => report.error = Some(err.to_string()),
                }
            }
        },
        Err(err) => {
            report.auth = match err {
                RemoteError::NoKey { .. } => Some("missing"),
                RemoteError::KeyRefused { .. } => Some("refused"),
                _ => None,
            };
            report.error = Some(err.to_string());
        }
    }
    Ok(report)
}

impl RemoteReport {
    fn print(&self) {
        let what = match (self.kind, self.engine.as_deref()) {
            (Some("ollama"), _) => format!("Ollama {}", self.version.as_deref().unwrap_or("")),
            (Some(_), engine) => {
                let engine = match engine {
                    Some("vllm") => "vLLM",
                    Some("sglang") => "SGLang",
                    Some(other) => other,
                    None => "unknown engine",
                };
                let version = self.version.as_deref().map(|v| format!(" {v}"));
                format!("{engine}{}, OpenAI-compatible", version.unwrap_or_default())
            }
            (None, _) => "not usable".to_owned(),
        };
        let auth = match self.auth {
            Some("ok") => format!("; key in {}: accepted", self.key_variable),
            Some("missing") => format!("; wants a key, {} is not set", self.key_variable),
            Some("refused") => format!("; key in {}: refused", self.key_variable),
            Some(_) => "; no key needed".to_owned(),
            None => String::new(),
        };
        out!("server: {}: {what}{auth}", self.url);
        if !self.models.is_empty() {
            let models: Vec<String> = self
                .models
                .iter()
                .map(|m| match m.context {
                    Some(n) => format!("{} (context {n})", m.id),
                    None => m.id.clone(),
                })
                .collect();
            out!("server models: {}", models.join(", "));
        }
        if let (Some(model), Some(context)) = (&self.model, self.context) {
            out!("server model: {model}, Codex told a context of {context} tokens");
        }
        if let Some(error) = &self.error {
            out!("server error: {error}");
        }
    }
}

impl GpuReport {
    /// The GPU found, its libraries (of the embedded Ollama at `place`), and the device
    /// of the latest Ollama start, with why it was the CPU although the CUDA libraries
    /// are there.
    pub fn new(settings: &Settings, place: Option<&Place>) -> GpuReport {
        let status = gpu::status(settings, place);
        let log = latest_log(&settings.home.logs());
        let ollama_used = log
            .as_deref()
            .and_then(|log| crate::server::inference_compute(log).into_iter().next());
        let wanted_gpu = matches!(status.libraries.state, "installed" | "embedded");
        let on_cpu = ollama_used.as_ref().is_some_and(|used| !used.is_gpu());
        let cpu_because = log
            .as_deref()
            .filter(|_| wanted_gpu && on_cpu)
            .map(|log| gpu::why_cpu(log, None));
        GpuReport {
            status,
            ollama_used,
            cpu_because,
            log,
        }
    }

    pub fn print(&self) {
        out!("gpu: {}", self.status.found_line());
        out!("gpu libraries: {}", self.status.libraries_line());
        let compute = match (&self.ollama_used, &self.log) {
            (_, None) => "no Ollama has run yet".to_owned(),
            (None, Some(_)) => "the latest Ollama log does not say".to_owned(),
            (Some(used), Some(_)) => format!(
                "{} at the latest Ollama start{}",
                used.describe(),
                self.cpu_because
                    .as_ref()
                    .map(|why| format!(", because {why}"))
                    .unwrap_or_default()
            ),
        };
        out!("compute: {compute}");
    }
}

fn model_report(settings: &Settings) -> ModelReport {
    let store = settings.home.models();
    let needs = crate::model::needs(&settings.model);
    ModelReport {
        downloaded: crate::import::manifest_path(&store, &settings.model).is_file(),
        name: settings.model.clone(),
        store,
        needs_disk_bytes: needs.as_ref().map(|n| n.disk),
        needs_memory_bytes: needs.as_ref().map(|n| n.memory),
    }
}

/// The newest `ollama-*.log` in `dir`.
fn latest_log(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter_map(|p| Some((std::fs::metadata(&p).and_then(|m| m.modified()).ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect()
}

/// What the shared server does after its last run, for `doctor`.
fn describe_keep_alive(keep_alive: Option<std::time::Duration>) -> String {
    match keep_alive {
        Some(keep) if keep.is_zero() => {
            "stops at once (set OLLAMA_KEEP_ALIVE, such as 5m, to keep it and its model loaded)"
                .to_owned()
        }
        Some(keep) => format!(
            "kept {} (OLLAMA_KEEP_ALIVE), so the next run finds the model loaded",
            go_duration(keep)
        ),
        None => "kept until it is stopped (OLLAMA_KEEP_ALIVE is negative)".to_owned(),
    }
}

/// A duration as the user would set it: `5m`, `1h30m`, `3s`, `300ms`.
fn go_duration(duration: std::time::Duration) -> String {
    if duration.subsec_millis() != 0 {
        return format!("{}ms", duration.as_millis());
    }
    let secs = duration.as_secs();
    let parts = [(secs / 3600, "h"), (secs / 60 % 60, "m"), (secs % 60, "s")];
    let mut text = String::new();
    for (n, unit) in parts.iter().filter(|(n, _)| *n != 0) {
        text.push_str(&n.to_string());
        text.push_str(unit);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::manifest_path;

    #[test]
    fn model_manifests_where_ollama_keeps_them() {
        for (model, path) in [
            (
                "gpt-oss:20b",
                "/m/manifests/registry.ollama.ai/library/gpt-oss/20b",
            ),
            ("me/tiny", "/m/manifests/registry.ollama.ai/me/tiny/latest"),
            (
                "registry.local:5000/ns/m:1b",
                "/m/manifests/registry.local:5000/ns/m/1b",
            ),
        ] {
            assert_eq!(
                manifest_path(Path::new("/m"), model),
                Path::new(path),
                "{model}"
            );
        }
    }
}
