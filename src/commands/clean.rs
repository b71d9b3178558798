//! `codex-oss clean`: removes unpacked payloads nobody uses, logs, copies left by killed
//! model imports, and with `--models` codex-oss's own model store. A running codex-oss
//! keeps its own copy of the payloads, and a running server its log.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::CleanArgs;
use crate::home::Home;
use crate::payload;
use crate::settings::Settings;

pub fn run(args: &CleanArgs) -> Result<ExitCode> {
    let settings = Settings::load(None)?;
    let home = settings.home;
    if !home.root().exists() {
        out!("nothing to clean in {}", home.root().display());
        return Ok(ExitCode::SUCCESS);
    }
    home.secure()?;
    let models = home.models();
    if args.models && models != home.own_models() {
        // A store the user pointed at: perhaps their own Ollama's, with files of theirs.
        bail!(
            "OLLAMA_MODELS={} is not codex-oss's own model store, so `clean --models` leaves it alone: remove models there with `codex-oss models rm NAME`, or unset OLLAMA_MODELS to clean {}",
            models.display(),
            home.own_models().display()
        );
    }
    for name in ["ollama", "codex"] {
        payload::remove_unleased(&home, name)?;
    }
    // Interrupted downloads of the GPU libraries (they resume otherwise).
    if let Ok(entries) = std::fs::read_dir(home.root().join("gpu")) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|x| x == "part") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    remove_logs(&home)?;
    // Copies left by imports that were killed (their process is gone); a running
    // import's own is kept.
    crate::import::remove_stale_partials(&models.join("blobs"));
    if args.models && models.exists() {
        std::fs::remove_dir_all(&models)
            .with_context(|| format!("could not remove {}", models.display()))?;
    }
    out!("cleaned {}", home.root().display());
    Ok(ExitCode::SUCCESS)
}

/// Removes every log but those of the servers running now.
fn remove_logs(home: &Home) -> Result<()> {
    let logs = home.logs();
    let Ok(entries) = std::fs::read_dir(&logs) else {
        return Ok(());
    };
    let live = crate::registry::live_logs(home);
    for entry in entries.flatten() {
        let path = entry.path();
        if live.contains(&path) {
            continue;
        }
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("could not remove {}", path.display()))?;
    }
    if live.is_empty() {
        let _ = std::fs::remove_dir(&logs);
    }
    Ok(())
}
