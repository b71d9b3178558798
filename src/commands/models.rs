//! `codex-oss models list|pull|rm`: the local model store, through Ollama's API.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::ModelsCommand;
use crate::connection::Connection;
use crate::home::Home;
use crate::settings::{self, ConfigFile};

pub async fn run(command: ModelsCommand) -> Result<ExitCode> {
    let home = Home::from_env()?;
    home.ensure()?;
    let config = ConfigFile::load(&home.config_file())?;
    let connection = Connection::open(&home, settings::context_length(&config)?).await?;
    let result = act(&connection, &home, command, &config).await;
    connection.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn act(
    connection: &Connection,
    home: &Home,
    command: ModelsCommand,
    config: &ConfigFile,
) -> Result<()> {
    let client = connection.client()?;
    match command {
        ModelsCommand::List => {
            let models = client.list().await?;
            if models.is_empty() {
                println!(
                    "no models yet; `codex-oss models pull` downloads {}",
                    settings::model(config)
                );
            }
            for model in models {
                println!("{}\t{:.1} GB", model.name, model.size as f64 / 1e9);
            }
        }
        ModelsCommand::Pull { model } => {
            let model = model.unwrap_or_else(|| settings::model(config));
            client.ensure(&model, &home.models()).await?;
        }
        ModelsCommand::Rm { model } => {
            client.delete(&model).await?;
            println!("removed {model}");
        }
    }
    Ok(())
}
