//! `codex-oss serve`: the embedded Ollama in the foreground, for other clients.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::connection::Connection;
use crate::platform::interrupted;

pub async fn run() -> Result<ExitCode> {
    let settings = super::settings(None)?;
    let mut connection = Connection::open(&settings, false, None).await?;
    let Some(server) = connection.server.as_mut() else {
        connection.close().await;
        bail!("CODEX_OSS_BASE_URL is set, so an Ollama server already runs there: unset it to serve the embedded one");
    };
    // Ctrl-C is ours before the addresses are printed: a client that reads them and at
    // once sends Ctrl-C must stop the server, not kill this launcher before it listens.
    let mut signals = crate::platform::Signals::new().ok();
    out!(
        "Ollama is listening on {} (log: {})",
        server.base_url(),
        server.log_path().display()
    );
    // Codex through the relay, as a codex-oss run has it (src/relay.rs): its instructions
    // reach gpt-oss. Other clients may use either address.
    let relay = crate::relay::Relay::start(&server.base_url()).await?;
    out!(
        "Point Codex at it with CODEX_OSS_BASE_URL={}/v1; Ctrl-C stops it.",
        relay.base_url()
    );
    let outcome = tokio::select! {
        _ = async {
            match signals.as_mut() {
                Some(signals) => signals.recv().await,
                None => interrupted().await,
            }
        } => Ok(ExitCode::SUCCESS),
        status = server.wait_exit() => Err(anyhow::anyhow!(server.died_message(status))),
    };
    drop(relay);
    connection.close().await;
    outcome
}
