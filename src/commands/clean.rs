//! `codex-oss clean`: removes unpacked payloads nobody uses, logs, and with
//! `--models` codex-oss's own model store. A running codex-oss keeps its own copy.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::CleanArgs;
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
    let logs = home.logs();
    if logs.exists() {
        std::fs::remove_dir_all(&logs)
            .with_context(|| format!("could not remove {}", logs.display()))?;
    }
    if args.models && models.exists() {
        std::fs::remove_dir_all(&models)
            .with_context(|| format!("could not remove {}", models.display()))?;
    }
    out!("cleaned {}", home.root().display());
    Ok(ExitCode::SUCCESS)
}
