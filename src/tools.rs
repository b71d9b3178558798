//! Finds the Ollama and Codex executables to run: a path the user set
//! (`CODEX_OSS_OLLAMA`, `CODEX_OSS_CODEX`), else the embedded payload (unpacked on
//! first use), else the program on PATH; a build without a payload says how to fix it.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::home::Home;
use crate::payload::{self, Payload, Unpacked};

/// An executable ready to run; an unpacked payload stays leased while this lives.
#[derive(Debug)]
pub struct Tool {
    pub path: PathBuf,
    _unpacked: Option<Unpacked>,
}

/// Finds a tool on a blocking thread: unpacking may wait for another codex-oss's lock,
/// and the launcher must keep answering Ctrl-C meanwhile.
pub async fn resolve(find: fn(&Home) -> Result<Tool>, home: &Home) -> Result<Tool> {
    let home = home.clone();
    tokio::task::spawn_blocking(move || find(&home))
        .await
        .map_err(|e| anyhow::anyhow!("unpacking failed: {e}"))?
}

pub fn ollama(home: &Home) -> Result<Tool> {
    find(
        home,
        payload::ollama(),
        "CODEX_OSS_OLLAMA",
        "ollama",
        "SKIP_OLLAMA_DOWNLOAD",
    )
}

pub fn codex(home: &Home) -> Result<Tool> {
    find(
        home,
        payload::codex(),
        "CODEX_OSS_CODEX",
        "codex",
        "SKIP_CODEX_DOWNLOAD",
    )
}

fn find(
    home: &Home,
    payload: Option<&Payload>,
    var: &str,
    program: &str,
    switch: &str,
) -> Result<Tool> {
    if let Some(path) = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
    {
        if !path.is_file() {
            bail!(
                "{var}={} is not a file: point it at a {program} executable or unset it",
                path.display()
            );
        }
        return Ok(Tool {
            path,
            _unpacked: None,
        });
    }
    if let Some(payload) = payload {
        let unpacked = payload.ensure_unpacked(home)?;
        return Ok(Tool {
            path: unpacked.executable.clone(),
            _unpacked: Some(unpacked),
        });
    }
    match on_path(program) {
        Some(path) => Ok(Tool { path, _unpacked: None }),
        None => bail!(
            "this codex-oss was built without {program} ({switch}=1) and none was found: set {var} to a {program} executable or put `{program}` on PATH"
        ),
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    let exe = format!("{program}{}", std::env::consts::EXE_SUFFIX);
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(&exe))
        .find(|p| crate::platform::is_executable(p))
}
