//! `codex-oss clean`: removes unpacked payloads nobody uses, logs, copies left by killed
//! model imports, and with `--models` codex-oss's own model store. A running codex-oss
//! keeps its own copy of the payloads, and a running server its log.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::home::Home;
use crate::payload;
use crate::settings::Settings;

pub fn run(delete_models: bool) -> Result<ExitCode> {
    let settings = Settings::load(None)?;
    let home = settings.home;
    if !home.root().exists() {
        out!("nothing to clean in {}", home.root().display());
        return Ok(ExitCode::SUCCESS);
    }
    // Only a home of codex-oss's own is cleaned: a folder with the user's files is refused.
    home.claim()?;
    home.secure()?;
    let models = home.models();
    if delete_models && models != home.own_models() {
        // A store the user pointed at: perhaps their own Ollama's, with files of theirs.
        bail!(
            "OLLAMA_MODELS={} is not codex-oss's own model store, so `clean --models` leaves it alone: remove models there with `codex-oss models rm NAME`, or unset OLLAMA_MODELS to clean {}",
            models.display(),
            home.own_models().display()
        );
    }
    let kept = ollama_with_gpu_libraries(&home);
    payload::remove_unleased(&home, "ollama", kept.as_ref().map(|(dir, _)| dir.as_str()))?;
    payload::remove_unleased(&home, "codex", None)?;
    crate::gpu::forget_downloads(&home, None);
    remove_logs(&home)?;
    // Copies left by imports that were killed (their process is gone); a running
    // import's own is kept.
    crate::import::remove_stale_partials(&models.join("blobs"));
    if delete_models {
        // What Ollama writes in a store; anything else there is not codex-oss's.
        for dir in ["blobs", "manifests"].map(|name| models.join(name)) {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("could not remove {}", dir.display()))?;
            }
        }
        let _ = std::fs::remove_dir(&models);
    }
    out!("cleaned {}", home.root().display());
    if let Some((dir, bytes)) = kept {
        out!(
            "kept {} with its CUDA libraries ({}), which runs would download again: `codex-oss gpu remove` removes them",
            home.payload_dir("ollama").join(dir).display(),
            crate::gpu::human(bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The folder name of this codex-oss's own Ollama and the size of the CUDA libraries in
/// it, when it holds them: they took a long download, and the next run needs them.
fn ollama_with_gpu_libraries(home: &Home) -> Option<(String, u64)> {
    let payload = payload::ollama()?;
    let record = crate::gpu::Place::of_embedded(payload, home).record()?;
    Some((payload.dir_name(), record.bytes()))
}

/// Removes every log codex-oss wrote but those of the servers running now; other files
/// in the folder are not its to remove.
fn remove_logs(home: &Home) -> Result<()> {
    let logs = home.logs();
    let Ok(entries) = std::fs::read_dir(&logs) else {
        return Ok(());
    };
    let live = crate::registry::live_logs(home);
    for entry in entries.flatten() {
        let path = entry.path();
        let own = crate::home::is_own_log(&entry.file_name().to_string_lossy())
            && entry.file_type().is_ok_and(|t| t.is_file());
        if !own || live.contains(&path) {
            continue;
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("could not remove {}", path.display()))?;
    }
    if live.is_empty() {
        let _ = std::fs::remove_dir(&logs);
    }
    Ok(())
}
