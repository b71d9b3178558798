//! One module per launcher command; `dispatch` routes a parsed command line.

mod clean;
mod doctor;
mod gpu;
mod models;
mod run;
mod serve;
mod update;
mod version;

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, Invocation};
use crate::model::Ollama;
use crate::settings::{Notice, Settings};

pub fn dispatch(invocation: Invocation) -> Result<ExitCode> {
    let cli = match invocation {
        Invocation::Watchdog(pgid) => return Ok(crate::platform::run_watchdog(&pgid)),
        Invocation::Keeper(home, key) => {
            return block_on(async move { Ok(crate::shared::keep(&home, &key).await) })
        }
        Invocation::Codex(args) => return block_on(run::run(args)),
        Invocation::Launcher(cli) => cli,
    };
    if cli.version {
        version::print(cli.verbose);
        return Ok(ExitCode::SUCCESS);
    }
    match cli.command {
        None => {
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Doctor { json }) => doctor::run(json),
        Some(Command::Gpu(command)) => block_on(gpu::run(command)),
        Some(Command::Serve) => block_on(serve::run()),
        Some(Command::Models(command)) => block_on(models::run(command)),
        Some(Command::Clean { models }) => clean::run(models),
        Some(Command::Update(args)) => update::run(&args),
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // clap_complete panics when its writer fails: write into memory first.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "codex-oss", &mut script);
            crate::ui::out_bytes(&script);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The run's settings, after making sure the home is there and is the user's alone; the
/// notices they carry are printed once, here.
fn settings(model_flag: Option<String>) -> Result<Settings> {
    let settings = Settings::load(model_flag)?;
    for notice in &settings.notices {
        match notice {
            Notice::Info(text) => crate::ui::info(text),
            Notice::Warning(text) => crate::ui::warn(text),
        }
    }
    settings.home.ensure()?;
    Ok(settings)
}

/// Makes sure Ollama has `model`: taken from another Ollama's store that has it (see
/// `import`), else pulled.
async fn ensure_model(client: &Ollama, settings: &Settings, model: &str) -> Result<()> {
    if client.has(model).await? {
        return Ok(());
    }
    if let Some(done) = import_model(settings, model, settings.import_from.clone()).await? {
        crate::ui::info(done.describe(model));
        if client.has(model).await? {
            return Ok(());
        }
    }
    client.pull_checked(model, &settings.home.models()).await
}

/// Runs an import (hashing gigabytes) on a blocking thread. Dropping the future (Ctrl-C)
/// stops it and removes its partial copies before the launcher goes on to exit.
async fn import_model(
    settings: &Settings,
    model: &str,
    stores: Vec<std::path::PathBuf>,
) -> Result<Option<crate::import::Imported>> {
    if stores.is_empty() {
        return Ok(None);
    }
    let (model, ours) = (model.to_owned(), settings.home.models());
    let stop = crate::import::Stop::default();
    let _stop_on_drop = stop.on_drop();
    tokio::task::spawn_blocking(move || crate::import::import(&model, &stores, &ours, &stop))
        .await
        .context("the import stopped")
}

/// A current-thread runtime: child processes are started from the main thread, which
/// matters for Linux's parent-death signal (see `platform::die_with_launcher`).
fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let result = runtime.block_on(future);
    // A blocking task still waiting for another codex-oss's lock must not hold up the exit.
    runtime.shutdown_background();
    result
}
