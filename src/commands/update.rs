//! `codex-oss update`: replaces this codex-oss with a newer release, which brings newer
//! embedded Ollama and Codex with it, once the release's archive is verified (see
//! `update`, the engine: `src/update/`). `update --check` only reports; `update VERSION`
//! installs that version (an older one only with `--allow-downgrade`).
//!
//! Copies that Homebrew or the MSI installed are theirs to update; the check still
//! reports for them, and says how to update.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::UpdateArgs;

use crate::update as engine;
use engine::location::{self, Manager};

/// `update --check`: up to date.
#[cfg(feature = "self-update")]
const UP_TO_DATE: u8 = 0;
/// `update --check`: a newer release is available.
#[cfg(feature = "self-update")]
const AVAILABLE: u8 = 1;
/// `update --check`: the check itself failed.
const CHECK_FAILED: u8 = 2;

pub fn run(args: &UpdateArgs) -> Result<ExitCode> {
    let exe = location::current_exe()?;
    let manager = Manager::of(&exe);
    if args.check {
        return Ok(match check(manager.as_ref()) {
            Ok(code) => ExitCode::from(code),
            Err(err) => {
                crate::ui::error(&err);
                ExitCode::from(CHECK_FAILED)
            }
        });
    }
    if let Some(manager) = manager {
        return Err(manager.refusal(&exe));
    }
    install(args, &exe)
}

#[cfg(not(feature = "self-update"))]
fn check(_manager: Option<&Manager>) -> Result<u8> {
    anyhow::bail!(
        "this codex-oss was built without self-update: update it the way you installed it"
    )
}

#[cfg(not(feature = "self-update"))]
fn install(_args: &UpdateArgs, _exe: &std::path::Path) -> Result<ExitCode> {
    check(None).map(ExitCode::from)
}

/// `Ollama X, Codex Y` of this binary.
#[cfg(feature = "self-update")]
fn embedded() -> String {
    let version =
        |payload: Option<&crate::payload::Payload>| payload.map_or("not embedded", |p| p.version);
    format!(
        "Ollama {}, Codex {}",
        version(crate::payload::ollama()),
        version(crate::payload::codex())
    )
}

/// What a release embeds, as its verified manifest says.
#[cfg(feature = "self-update")]
fn contents(manifest: Option<&engine::Manifest>) -> String {
    manifest.map_or_else(
        || "its Ollama and Codex versions are not published".to_owned(),
        engine::Manifest::describe,
    )
}

#[cfg(feature = "self-update")]
fn check(manager: Option<&Manager>) -> Result<u8> {
    let source = engine::Source::from_env()?;
    let current = engine::current_version();
    let newest = source.latest()?;
    let manifest = source.manifest(&newest)?;
    out!("installed: codex-oss {current} ({})", embedded());
    out!(
        "newest:    codex-oss {} ({})",
        newest.version,
        contents(manifest.as_ref())
    );
    if newest.version <= current {
        out!("codex-oss {current} is up to date");
        return Ok(UP_TO_DATE);
    }
    let how = manager.map_or_else(
        || "run `codex-oss update`".to_owned(),
        Manager::how_to_update,
    );
    out!("codex-oss {} is available: {how}", newest.version);
    Ok(AVAILABLE)
}

#[cfg(feature = "self-update")]
fn install(args: &UpdateArgs, exe: &std::path::Path) -> Result<ExitCode> {
    let current = engine::current_version();
    let wanted = args
        .version
        .as_deref()
        .map(engine::parse_version)
        .transpose()?;
    if let Some(wanted) = &wanted {
        if *wanted < current && !args.allow_downgrade {
            anyhow::bail!(
                "codex-oss {wanted} is older than the installed {current}: add --allow-downgrade to install it anyway"
            );
        }
        if *wanted == current {
            out!("codex-oss {current} is already installed");
            return Ok(ExitCode::SUCCESS);
        }
    }
    location::check_writable(exe)?;

    let source = engine::Source::from_env()?;
    let release = if let Some(version) = &wanted {
        source.release(version)?
    } else {
        crate::ui::info("checking for a newer codex-oss");
        source.latest()?
    };
    if wanted.is_none() && release.version <= current {
        out!("codex-oss {current} is up to date");
        return Ok(ExitCode::SUCCESS);
    }
    let manifest = source.manifest(&release)?;
    let what = format!(
        "codex-oss {} ({})",
        release.version,
        contents(manifest.as_ref())
    );
    if !args.yes
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
        && !confirm(&format!(
            "replace codex-oss {current} ({}) in {} with {what}?",
            embedded(),
            exe.display()
        ))?
    {
        out!("nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }

    let scratch = tempfile::Builder::new()
        .prefix("codex-oss-update-")
        .tempdir()
        .map_err(|e| {
            anyhow::anyhow!(
                "could not make a temporary folder for the download ({e}): free some space there or point TMPDIR elsewhere"
            )
        })?;
    let archive = source.download_verified(&release, scratch.path())?;
    engine::install(&archive, scratch.path(), exe, &release.version)?;
    engine::refresh_receipt(exe, &release.version);
    out!(
        "updated codex-oss {current} -> {what} in {}; its first run unpacks the new Ollama and Codex",
        exe.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; Enter means yes.
#[cfg(feature = "self-update")]
fn confirm(question: &str) -> Result<bool> {
    use std::io::Write;
    // Stderr is unbuffered: the question shows before the answer is read.
    let _ = write!(std::io::stderr(), "codex-oss: {question} [Y/n] ");
    let mut answer = String::new();
    let read = std::io::stdin().read_line(&mut answer)?;
    let answer = answer.trim().to_ascii_lowercase();
    // End of input is no.
    Ok(read != 0 && matches!(answer.as_str(), "" | "y" | "yes"))
}
