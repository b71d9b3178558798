//! One module per launcher command; `dispatch` routes a parsed command line.

mod clean;
mod doctor;
mod models;
mod run;
mod serve;
mod update;
mod version;

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, Invocation};

pub fn dispatch(invocation: Invocation) -> Result<ExitCode> {
    let cli = match invocation {
        Invocation::Watchdog(pgid) => return Ok(crate::platform::run_watchdog(&pgid)),
        Invocation::Codex(args) => return block_on(run::run(args)),
        Invocation::Launcher(cli) => cli,
    };
    if cli.version {
        version::print();
        return Ok(ExitCode::SUCCESS);
    }
    match cli.command {
        None => {
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Doctor) => doctor::run(),
        Some(Command::Serve) => block_on(serve::run()),
        Some(Command::Models(command)) => block_on(models::run(command)),
        Some(Command::Clean(args)) => clean::run(&args),
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
fn settings(model_flag: Option<String>) -> Result<crate::settings::Settings> {
    let settings = crate::settings::Settings::load(model_flag)?;
    settings.announce();
    settings.home.ensure()?;
    Ok(settings)
}

/// A current-thread runtime: child processes are started from the main thread, which
/// matters for Linux's parent-death signal (see `platform::die_with_launcher`).
fn block_on<F: std::future::Future<Output = Result<ExitCode>>>(future: F) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let result = runtime.block_on(future);
    // A blocking task still waiting for another codex-oss's lock must not hold up the exit.
    runtime.shutdown_background();
    result
}
