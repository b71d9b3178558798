//! One module per launcher command; `dispatch` routes a parsed command line.

mod doctor;
mod version;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, Invocation};

pub fn dispatch(invocation: Invocation) -> Result<ExitCode> {
    let cli = match invocation {
        Invocation::Codex(_args) => anyhow::bail!("running Codex is not built yet"),
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
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "codex-oss", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => anyhow::bail!("{other:?} is not built yet"),
    }
}
