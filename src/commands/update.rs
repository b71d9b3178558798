//! `codex-oss update`: installs the newest release through the installer that put
//! codex-oss here (cargo-dist's receipt), which brings the newer embedded Ollama and
//! Codex with it. Homebrew installs are updated by Homebrew.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::UpdateArgs;

fn installed_by_homebrew() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .is_some_and(|p| p.components().any(|c| c.as_os_str() == "Cellar"))
}

#[cfg(not(feature = "self-update"))]
pub fn run(_args: &UpdateArgs) -> Result<ExitCode> {
    if installed_by_homebrew() {
        bail!("codex-oss was installed with Homebrew: run `brew upgrade codex-oss`");
    }
    bail!("this codex-oss was built without self-update: update it the way you installed it")
}

#[cfg(feature = "self-update")]
pub fn run(args: &UpdateArgs) -> Result<ExitCode> {
    use anyhow::Context;

    if installed_by_homebrew() {
        bail!("codex-oss was installed with Homebrew: run `brew upgrade codex-oss`");
    }
    let mut updater = axoupdater::AxoUpdater::new_for("codex-oss");
    let not_ours =
        "codex-oss was not installed by its installer (no install receipt for this executable): \
                    update it the way you installed it, or reinstall with the installer";
    if updater.load_receipt().is_err()
        || !updater
            .check_receipt_is_for_this_executable()
            .unwrap_or(false)
    {
        bail!(not_ours);
    }
    updater.disable_installer_output();
    if args.dry_run {
        let needed = updater
            .is_update_needed_sync()
            .context("could not check for a newer codex-oss")?;
        if needed {
            out!("an update is available: run `codex-oss update`");
        } else {
            out!(
                "codex-oss {} is the newest release",
                env!("CARGO_PKG_VERSION")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    crate::ui::info("checking for a newer codex-oss");
    match updater
        .run_sync()
        .context("the update failed; the installed codex-oss is unchanged")?
    {
        Some(result) => out!(
            "updated codex-oss {} -> {}",
            env!("CARGO_PKG_VERSION"),
            result.new_version
        ),
        None => out!(
            "codex-oss {} is the newest release",
            env!("CARGO_PKG_VERSION")
        ),
    }
    Ok(ExitCode::SUCCESS)
}
