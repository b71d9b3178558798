//! The model: is it in Ollama's store, and if not, pull it with a progress bar.
//!
//! Talks to Ollama's native API: `GET /api/tags` lists installed models, `POST
//! /api/pull` streams NDJSON progress lines (`{status, digest, total, completed}`)
//! ending in `{"status":"success"}`. A failure arrives either as HTTP 4xx/5xx before
//! the stream or as an `{"error": ...}` line inside it; both become one clear
//! message. Ollama keeps partial downloads (the launcher starts it with
//! `OLLAMA_NOPRUNE=1`), so an interrupted pull resumes on the next run.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::http::{describe, text_capped, ERROR_BODY_LIMIT};
use crate::ui::{self, human};
use futures_util::StreamExt;
use serde::Deserialize;

/// What a known model needs, to say plainly what is short before a long download.
pub struct Needs {
    pub disk: u64,
    pub memory: u64,
}

const GB: u64 = 1_000_000_000;

pub fn needs(model: &str) -> Option<Needs> {
    let (disk, memory) = match canonical(model).as_str() {
        "gpt-oss:20b" | "gpt-oss:latest" => (14, 16),
        "gpt-oss:120b" => (65, 80),
        _ => return None,
    };
    Some(Needs {
        disk: disk * GB,
        memory: memory * GB,
    })
}

/// `name` -> `name:latest`, as Ollama names models.
pub fn canonical(model: &str) -> String {
    let last = model.rsplit('/').next().unwrap_or(model);
    if last.contains(':') {
        model.to_owned()
    } else {
        format!("{model}:latest")
    }
}

pub struct Ollama {
    base: String,
    client: reqwest::Client,
    /// How long a pull may go without a byte before it counts as stalled.
    pull_timeout: Duration,
}

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    models: Vec<TagModel>,
}

#[derive(Deserialize)]
pub struct TagModel {
    pub name: String,
    #[serde(default)]
    pub size: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PullLine {
    status: String,
    digest: Option<String>,
    total: Option<u64>,
    completed: Option<u64>,
    error: Option<String>,
}

/// The largest model list read (each model is a few hundred bytes).
const TAGS_LIMIT: usize = 16 * 1024 * 1024;
/// The longest progress line accepted from Ollama (real ones are under 200 bytes).
const PULL_LINE_LIMIT: usize = 64 * 1024;
impl Ollama {
    /// `base`: `http://HOST:PORT` (no `/v1`).
    pub fn new(base: &str, pull_timeout: Duration) -> Result<Ollama> {
        let client = crate::http::client_builder(base)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Ollama {
            base: base
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_owned(),
            client,
            pull_timeout,
        })
    }

    pub async fn list(&self) -> Result<Vec<TagModel>> {
        let resp = self
            .client
            .get(format!("{}/api/tags", self.base))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("could not list models at {}: {}", self.base, describe(&e))
            })?;
        let resp = check_status(resp, "list models").await?;
        let body = text_capped(resp, TAGS_LIMIT).await;
        let tags: Tags = serde_json::from_str(&body)
            .map_err(|e| anyhow::anyhow!("Ollama sent a malformed model list ({e})"))?;
        Ok(tags.models)
    }

    pub async fn has(&self, model: &str) -> Result<bool> {
        let want = canonical(model);
        let models = self.list().await?;
        Ok(models.iter().any(|m| canonical(&m.name) == want))
    }

    pub async fn delete(&self, model: &str) -> Result<()> {
        let resp = self
            .client
            .delete(format!("{}/api/delete", self.base))
            .json(&serde_json::json!({ "model": model }))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("could not reach Ollama: {}", describe(&e)))?;
        check_status(resp, &format!("remove {model}"))
            .await
            .map(drop)
    }

    /// Pulls `model` after checking `models_dir` has room for it: streams `/api/pull`,
    /// drawing progress, until success or a clear error.
    pub async fn pull_checked(&self, model: &str, models_dir: &Path) -> Result<()> {
        preflight(model, models_dir)?;
        let resp = self
            .client
            .post(format!("{}/api/pull", self.base))
            .json(&serde_json::json!({ "model": model, "stream": true }))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("could not start pulling {model}: {}", describe(&e)))?;
        let resp = check_status(resp, &format!("pull {model}")).await?;
        let mut progress = Progress::new(model);
        let pulled = follow_pull(resp, model, models_dir, self.pull_timeout, &mut progress).await;
        if pulled.is_ok() {
            progress.shown.finish();
            say!("pulled {model}");
        } else {
            progress.shown.abandon();
        }
        pulled
    }
}

/// Reads the progress lines of a pull, drawing them, until `success` or a clear error.
async fn follow_pull(
    resp: reqwest::Response,
    model: &str,
    models_dir: &Path,
    idle_timeout: Duration,
    progress: &mut Progress,
) -> Result<()> {
    let mut stream = resp.bytes_stream();
    let mut buffer = Vec::new();
    let mut space_checked = false;
    loop {
        let next = tokio::time::timeout(idle_timeout, stream.next()).await;
        let chunk = match next {
            Err(_) => bail!(
                "Ollama sent nothing for {} s while pulling {model}; check the network (or raise CODEX_OSS_PULL_TIMEOUT), then run codex-oss again to resume the download",
                idle_timeout.as_secs()
            ),
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => bail!(
                "lost the connection to Ollama while pulling {model} ({}); run codex-oss again to resume the download",
                describe(&e)
            ),
        };
        buffer.extend_from_slice(&chunk);
        if buffer.len() > PULL_LINE_LIMIT && !buffer.contains(&b'\n') {
            bail!(
                "Ollama sent a progress line of over {} KiB while pulling {model}: the server does not speak Ollama's API",
                PULL_LINE_LIMIT / 1024
            );
        }
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_owned();
            if line.is_empty() {
                continue;
            }
            let parsed: PullLine = serde_json::from_str(&line).map_err(|_| {
                anyhow::anyhow!(
                    "Ollama sent a malformed progress line while pulling {model}: {}",
                    truncate(&line, 120)
                )
            })?;
            if let Some(error) = parsed.error {
                if error.contains("file does not exist") {
                    // Ollama's words for a name the registry does not have.
                    bail!("Ollama could not pull {model}: there is no such model in Ollama's library; check the name, e.g. gpt-oss:20b");
                }
                bail!("Ollama could not pull {model}: {error}");
            }
            if let (false, Some(total)) = (space_checked, parsed.total) {
                space_checked = true;
                let missing = total.saturating_sub(parsed.completed.unwrap_or(0));
                check_space_for(model, missing, models_dir)?;
            }
            if parsed.status == "success" {
                return Ok(());
            }
            progress.update(&parsed);
        }
    }
    bail!(
        "Ollama ended the download of {model} before it finished; run codex-oss again to resume it"
    )
}

/// Turns an HTTP error status into a message, with Ollama's `{"error": ...}` text.
async fn check_status(resp: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = text_capped(resp, ERROR_BODY_LIMIT).await;
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str().map(str::to_owned)))
        .unwrap_or_else(|| truncate(body.trim(), 120));
    if status == reqwest::StatusCode::NOT_FOUND {
        bail!(
            "Ollama could not {what}: {detail} (HTTP 404): check the model name, e.g. gpt-oss:20b"
        );
    }
    bail!(
        "Ollama could not {what}: {detail} (HTTP {})",
        status.as_u16()
    )
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

/// Before pulling a known model: enough disk for it, and a warning if memory is short.
fn preflight(model: &str, models_dir: &Path) -> Result<()> {
    let Some(needs) = needs(model) else {
        return Ok(());
    };
    // A resumed pull needs room only for what is still missing.
    let needed = needs.disk.saturating_sub(downloaded_partially(models_dir));
    check_space_for(model, needed, models_dir)?;
    let memory = crate::settings::total_memory();
    if memory > 0 && memory < needs.memory {
        caution!(
            "{model} needs about {} GB of memory and this machine has {} GB: expect it to be very slow or to fail (CODEX_OSS_MODEL picks a smaller model)",
            needs.memory / GB,
            memory / GB
        );
    }
    Ok(())
}

/// Bytes of interrupted downloads already in the store. Ollama keeps a download's
/// progress in part files beside it, `blobs/sha256-<hex>-partial-N`, each
/// `{"N":0,"Offset":0,"Size":S,"Completed":C}`; the data file itself is sparse.
fn downloaded_partially(models_dir: &Path) -> u64 {
    #[derive(Deserialize)]
    struct Part {
        #[serde(rename = "Completed")]
        completed: u64,
    }
    std::fs::read_dir(models_dir.join("blobs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.rsplit_once("-partial-")
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|entry| {
            let text = std::fs::read(entry.path()).ok()?;
            serde_json::from_slice::<Part>(&text).ok()
        })
        .map(|part| part.completed)
        .sum()
}

fn check_space_for(model: &str, bytes: u64, models_dir: &Path) -> Result<()> {
    // Free space on the filesystem (statvfs; `GetDiskFreeSpaceEx` on Windows).
    match fs4::available_space(models_dir) {
        Ok(free) if free < bytes => bail!(
            "not enough disk space to pull {model}: it needs {} and {} has {} free; free some space or set OLLAMA_MODELS to a larger disk",
            human(bytes),
            models_dir.display(),
            human(free)
        ),
        _ => Ok(()),
    }
}

/// The pull's progress: Ollama's lines drawn on the bar, or said as plain lines.
struct Progress {
    model: String,
    shown: ui::Progress,
    last_status: String,
}

impl Progress {
    fn new(model: &str) -> Progress {
        let shown = ui::Progress::new(ui::Look::Transfer, None, "");
        say!("pulling {model} (first run only; the download resumes if interrupted)");
        Progress {
            model: model.to_owned(),
            shown,
            last_status: String::new(),
        }
    }

    fn update(&mut self, line: &PullLine) {
        match line.total {
            Some(total) if self.shown.is_bar() && line.digest.is_some() => {
                self.shown.set_length(total);
                self.shown.set_position(line.completed.unwrap_or(0));
                self.shown.set_message(format!("pulling {}", self.model));
            }
            _ if self.shown.is_bar() => self.shown.set_message(line.status.clone()),
            Some(total) if total > 0 => {
                // Ollama says `pulling <layer id>`: the model's name means more to a user.
                let what = if line.digest.is_some() {
                    format!("pulling {}", self.model)
                } else {
                    line.status.clone()
                };
                let part = line.digest.as_deref().unwrap_or_default();
                self.shown
                    .tenth(part, &what, line.completed.unwrap_or(0), total);
            }
            _ => {
                if line.status != self.last_status {
                    self.shown.line(&line.status);
                }
            }
        }
        self.last_status.clone_from(&line.status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_downloads_count_what_their_part_files_record() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        let digest = "sha256-".to_owned() + &"ab".repeat(32);
        std::fs::write(blobs.join(format!("{digest}-partial")), b"").unwrap();
        for (n, done) in [(0, 700), (1, 300)] {
            std::fs::write(
                blobs.join(format!("{digest}-partial-{n}")),
                format!(r#"{{"N":{n},"Offset":0,"Size":1000,"Completed":{done}}}"#),
            )
            .unwrap();
        }
        std::fs::write(blobs.join(&digest), b"finished blob").unwrap();
        assert_eq!(downloaded_partially(dir.path()), 1000);
        assert_eq!(downloaded_partially(&dir.path().join("none")), 0);
    }

    #[test]
    fn names_get_the_latest_tag() {
        assert_eq!(canonical("gpt-oss"), "gpt-oss:latest");
        assert_eq!(canonical("gpt-oss:20b"), "gpt-oss:20b");
        assert_eq!(
            canonical("registry.local:5000/ns/m"),
            "registry.local:5000/ns/m:latest"
        );
    }
}
