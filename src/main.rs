//! codex-oss: the Codex coding agent on a local GPT-OSS model, in one download.
//!
//! The binary carries Ollama and the Codex CLI as payloads (see `payload`), unpacks
//! them under `~/.codex-oss`, starts Ollama on a loopback port (`server`), makes sure
//! the model is there (`model`), runs Codex against it (`launch`) and stops Ollama
//! when Codex ends, however it ends.

/// `println!` for the command's output, without the panic when the reader has gone
/// (`codex-oss models list | head -1`): see `ui::out`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::ui::out(format_args!($($arg)*))
    };
}

/// `codex-oss: <message>` on stderr, from any module: a tracing event that `ui` renders
/// whatever `CODEX_OSS_LOG` says, so that only `ui` and `commands` print.
macro_rules! say {
    ($($arg:tt)*) => {
        ::tracing::info!(target: $crate::ui::USER_TARGET, $($arg)*)
    };
}

/// `codex-oss: warning: <message>` on stderr, from any module, as `say!`.
macro_rules! caution {
    ($($arg:tt)*) => {
        ::tracing::warn!(target: $crate::ui::USER_TARGET, $($arg)*)
    };
}

mod catalog;
mod cli;
mod commands;
mod connection;
mod download;
mod env_vars;
mod files;
mod gpu;
mod home;
mod http;
mod import;
mod launch;
mod lock;
mod model;
mod payload;
mod platform;
mod registry;
mod relay;
mod remote;
mod resume;
mod server;
mod settings;
mod shared;
mod tools;
mod ui;
mod unpack;
#[cfg_attr(not(feature = "self-update"), allow(dead_code))]
mod update;

use std::process::ExitCode;

fn main() -> ExitCode {
    ui::init_tracing();
    let invocation = cli::parse(std::env::args_os().collect());
    match commands::dispatch(invocation) {
        Ok(code) => code,
        Err(err) => {
            ui::error(&err);
            ExitCode::FAILURE
        }
    }
}
