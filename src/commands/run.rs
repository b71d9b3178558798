//! `codex-oss [codex args...]`: the main job. Start Ollama, make sure the model is
//! there, run Codex against it, stop Ollama however Codex ends, exit with Codex's status.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::connection::Connection;
use crate::launch::{self, Target};
use crate::platform::{self, interrupted};
use crate::settings::Settings;
use crate::{catalog, tools, ui};

pub async fn run(mut user_args: Vec<OsString>) -> Result<ExitCode> {
    let no_share = launch::take_flag(&mut user_args, "--no-share");
    let mut settings = super::settings(launch::user_model(&user_args))?;
    settings.share &= !no_share;
    let (codex, mut connection) = tokio::select! {
        ready = prepare(&settings) => ready?,
        signal = interrupted() => return Ok(signal.exit_code()),
    };
    let result = session(&mut connection, &settings, &codex.path, &user_args).await;
    connection.close().await;
    result
}

/// Codex unpacked and the server up: the steps that may wait (for another codex-oss's
/// unpacking, for Ollama to answer), all of them cancelled by Ctrl-C.
async fn prepare(settings: &Settings) -> Result<(tools::Tool, Connection)> {
    let codex = tools::resolve(tools::codex, settings).await?;
    let connection = Connection::open(settings).await?;
    Ok((codex, connection))
}

/// Everything between "server up" and "server down".
async fn session(
    connection: &mut Connection,
    settings: &Settings,
    codex: &std::path::Path,
    user_args: &[OsString],
) -> Result<ExitCode> {
    let client = connection.client()?;
    tokio::select! {
        ready = super::ensure_model(&client, settings, &settings.model) => ready?,
        signal = interrupted() => {
            ui::info("stopped; the download resumes where it left off on the next run");
            return Ok(signal.exit_code());
        }
        message = connection.server_gone() => bail!("{message}"),
    }

    // Codex talks to Ollama through this run's relay (src/relay.rs: its instructions
    // reach gpt-oss as the system messages Ollama's template renders).
    let relay = crate::relay::Relay::start(connection.base_url()).await?;
    let v1 = format!("{}/v1", relay.base_url());
    let catalog = catalog_for(settings, codex, user_args).await;
    let target = Target {
        base_url: &v1,
        port: Some(relay.port()),
        model: &settings.model,
        context_length: settings.context_length,
        catalog: catalog.as_deref(),
    };
    let started = std::time::SystemTime::now();
    let codex_run = launch::run_codex(codex, user_args, &target);
    tokio::pin!(codex_run);
    let (status, server_died) = tokio::select! {
        status = &mut codex_run => (status?, None),
        message = connection.server_gone() => (codex_run.await?, Some(message)),
    };
    drop(relay);
    say_how_to_resume(user_args, started);
    if let Some(message) = server_died {
        ui::error(&anyhow::anyhow!(message));
        let code = platform::exit_code(status);
        return Ok(ExitCode::from(if code == 0 { 1 } else { code }));
    }
    Ok(ExitCode::from(platform::exit_code(status)))
}

/// After an interactive session, Codex says "To continue this session, run: codex resume
/// <id>", which would resume it with the user's cloud Codex: name the local way too.
fn say_how_to_resume(user_args: &[OsString], started: std::time::SystemTime) {
    if !crate::resume::is_interactive(user_args) || !ui::stderr_is_terminal() {
        return;
    }
    let session = launch::codex_home()
        .and_then(|home| crate::resume::session_since(&home, started));
    if let Some(id) = session {
        ui::info(format!(
            "to continue this session on the local model, run: codex-oss resume {id}"
        ));
    }
}

/// The model catalog for this run, unless the user has their own or Codex rejects ours
/// (then one warning, and Codex runs on its fallback metadata).
async fn catalog_for(
    settings: &Settings,
    codex: &std::path::Path,
    user_args: &[OsString],
) -> Option<std::path::PathBuf> {
    if launch::user_sets(user_args, "model_catalog_json") {
        return None;
    }
    let path = catalog::write(&settings.home, &settings.model, settings.context_length)
        .map_err(|err| ui::warn(format!("running Codex without a model catalog: {err:#}")))
        .ok()?;
    if catalog::codex_accepts(codex, &path).await {
        return Some(path);
    }
    catalog::warn_rejected_once(codex, &path);
    None
}
