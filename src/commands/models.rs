//! `codex-oss models list|pull|rm|import`: the local model store, through Ollama's API.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::ModelsCommand;
use crate::connection::Connection;
use crate::platform::interrupted;
use crate::settings::Settings;

pub async fn run(command: ModelsCommand) -> Result<ExitCode> {
    let settings = super::settings(None)?;
    let connection = Connection::open(&settings, settings.share, None).await?;
    // Ctrl-C ends the command here, not by the default action, so that an import in
    // progress removes its partial copies and the server is stopped as usual.
    let result = tokio::select! {
        done = act(&connection, &settings, command) => done.map(|()| ExitCode::SUCCESS),
        signal = interrupted() => Ok(signal.exit_code()),
    };
    connection.close().await;
    result
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
            super::ensure_model(&client, settings, &model).await?;
        }
        ModelsCommand::Import { path, model } => {
            let model = model.unwrap_or_else(|| settings.model.clone());
            if client.has(&model).await? {
                out!("{model} is already in {}", settings.home.models().display());
                return Ok(());
            }
            let stores = path.map_or_else(
                || crate::settings::candidate_stores(dirs::home_dir().as_deref()),
                |p| vec![p],
            );
            match super::import_model(settings, &model, stores.clone()).await? {
                Some(done) => out!("{}", done.describe(&model)),
                None => anyhow::bail!(
                    "{model} was not taken from {}: `codex-oss models pull {model}` downloads it",
                    stores
                        .iter()
                        .map(|s| s.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            }
        }
        ModelsCommand::Rm { model } => {
            client.delete(&model).await?;
            out!("removed {model}");
        }
    }
    Ok(())
}
