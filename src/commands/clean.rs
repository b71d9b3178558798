//! `codex-oss clean`: removes unpacked payloads nobody uses, logs, and with
//! `--models` the model store. A running codex-oss keeps its own copy.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::CleanArgs;
use crate::home::Home;
use crate::payload;

pub fn run(args: CleanArgs) -> Result<ExitCode> {
    let home = Home::from_env()?;
    if !home.root().exists() {
        println!("nothing to clean in {}", home.root().display());
        return Ok(ExitCode::SUCCESS);
    }
    for name in ["ollama", "codex"] {
        payload::remove_unleased(&home, name)?;
    }
    let logs = home.logs();
    if logs.exists() {
        std::fs::remove_dir_all(&logs)
            .with_context(|| format!("could not remove {}", logs.display()))?;
    }
    if args.models {
        let models = home.models();
        if models.exists() {
            std::fs::remove_dir_all(&models)
                .with_context(|| format!("could not remove {}", models.display()))?;
        }
    }
    println!("cleaned {}", home.root().display());
    Ok(ExitCode::SUCCESS)
}
