//! `codex-oss serve`: the embedded Ollama in the foreground, for other clients.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::connection::Connection;
use crate::home::Home;
use crate::platform::interrupted;
use crate::settings::{self, ConfigFile};

pub async fn run() -> Result<ExitCode> {
    let home = Home::from_env()?;
    home.ensure()?;
    let config = ConfigFile::load(&home.config_file())?;
    let context_length = settings::context_length(&config)?;
    let mut connection = Connection::open(&home, context_length).await?;
    let Some(server) = connection.server.as_mut() else {
        connection.close().await;
        bail!("CODEX_OSS_BASE_URL is set, so an Ollama server already runs there: unset it to serve the embedded one");
    };
    println!(
        "Ollama is listening on {} (log: {})",
        server.base_url(),
        server.log_path().display()
    );
    println!(
        "Point Codex at it with CODEX_OSS_BASE_URL={}/v1; Ctrl-C stops it.",
        server.base_url()
    );
    let outcome = tokio::select! {
        _ = interrupted() => Ok(ExitCode::SUCCESS),
        status = server.wait_exit() => Err(anyhow::anyhow!(server.died_message(status))),
    };
    connection.close().await;
    outcome
}
