//! Finds the Ollama and Codex executables to run: a path the user set
//! (`CODEX_OSS_OLLAMA`, `CODEX_OSS_CODEX`), else the embedded payload (unpacked on
//! first use), else the program on PATH; a build without a payload says how to fix it.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Result};

use crate::env_vars::EnvVars;
use crate::payload::{self, Payload, Unpacked};
use crate::settings::Settings;

/// An executable ready to run; an unpacked payload stays leased while this lives.
#[derive(Debug)]
pub struct Tool {
    pub path: PathBuf,
    _unpacked: Option<Unpacked>,
}

/// Finds a tool on a blocking thread: unpacking may wait for another codex-oss's lock,
/// and the launcher must keep answering Ctrl-C meanwhile.
pub async fn resolve(find: fn(&Settings) -> Result<Tool>, settings: &Settings) -> Result<Tool> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || find(&settings))
        .await
        .map_err(|e| anyhow::anyhow!("unpacking failed: {e}"))?
}

pub fn ollama(settings: &Settings) -> Result<Tool> {
    let names = (EnvVars::CODEX_OSS_OLLAMA, "ollama", "SKIP_OLLAMA_DOWNLOAD");
    find(
        settings,
        payload::ollama(),
        settings.ollama.as_deref(),
        names,
    )
}

pub fn codex(settings: &Settings) -> Result<Tool> {
    let names = (EnvVars::CODEX_OSS_CODEX, "codex", "SKIP_CODEX_DOWNLOAD");
    find(settings, payload::codex(), settings.codex.as_deref(), names)
}

/// The user's executable, else the embedded payload, else the program on PATH. `names`:
/// the variable that overrides it, the program, and the build switch that left it out.
fn find(
    settings: &Settings,
    payload: Option<&Payload>,
    chosen: Option<&Path>,
    (var, program, switch): (&str, &str, &str),
) -> Result<Tool> {
    if let Some(path) = chosen.map(Path::to_path_buf) {
        ensure!(
            path.is_file(),
            "{var}={} is not a file: point it at a {program} executable or unset it",
            path.display()
        );
        return Ok(Tool {
            path,
            _unpacked: None,
        });
    }
    if let Some(payload) = payload {
        let unpacked = payload.ensure_unpacked(&settings.home)?;
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
    std::env::split_paths(&std::env::var_os(EnvVars::PATH)?)
        .map(|dir| dir.join(&exe))
        .find(|p| crate::platform::is_executable(p))
}
