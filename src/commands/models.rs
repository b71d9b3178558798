//! `codex-oss models list|pull|rm`: the local model store, through Ollama's API.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::ModelsCommand;
use crate::connection::Connection;
use crate::settings::Settings;

pub async fn run(command: ModelsCommand) -> Result<ExitCode> {
    let settings = super::settings(None)?;
    let connection = Connection::open(&settings).await?;
    let result = act(&connection, &settings, command).await;
    connection.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn act(connection: &Connection, settings: &Settings, command: ModelsCommand) -> Result<()> {
    let client = connection.client()?;
    match command {
        ModelsCommand::List => {
            let models = client.list().await?;
            if models.is_empty() {
                out!(
                    "no models yet; `codex-oss models pull` downloads {}",
                    settings.model
                );
            }
            for model in models {
                out!("{}\t{:.1} GB", model.name, model.size as f64 / 1e9);
            }
        }
        ModelsCommand::Pull { model } => {
            let model = model.unwrap_or_else(|| settings.model.clone());
            client.ensure(&model, &settings.home.models()).await?;
        }
        ModelsCommand::Rm { model } => {
            client.delete(&model).await?;
            out!("removed {model}");
        }
    }
    Ok(())
}
