//! `codex-oss [codex args...]`: the main job. Start Ollama, make sure the model is
//! there, run Codex against it, stop Ollama however Codex ends, exit with Codex's status.
//! On a team's OpenAI-compatible server (`CODEX_OSS_BASE_URL`, see `remote`) there is
//! nothing to start or pull: Codex runs against the model it serves.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::connection::Connection;
use crate::launch::{self, Provider, Target};
use crate::platform::{self, interrupted};
use crate::remote::{self, OpenAiServer};
use crate::settings::Settings;
use crate::{catalog, tools, ui};

/// How the catalog describes a model on the embedded or the user's Ollama.
const OLLAMA_PLACE: &str = "on the embedded Ollama, on this machine";

pub async fn run(mut user_args: Vec<OsString>) -> Result<ExitCode> {
    let no_share = launch::take_flag(&mut user_args, "--no-share");
    let mut settings = super::settings(launch::user_model(&user_args))?;
    settings.share &= !no_share;
    let mut probed = None;
    if let Some(url) = settings.base_url.clone() {
        let found = tokio::select! {
            found = remote::probe(&url, &settings.api_key) => found?,
            signal = interrupted() => return Ok(signal.exit_code()),
        };
        if let remote::Kind::OpenAi(server) = &found.kind {
            return on_team_server(&settings, &url, &found.root, server, &user_args).await;
        }
        probed = Some(found);
    }
    // Codex unpacked and the server up: the steps that may wait (for another codex-oss's
    // unpacking, for Ollama to answer), all of them cancelled by Ctrl-C. `probed` is what
    // answers at the user's address, when there is one (an Ollama: it is not asked twice).
    let prepare = async {
        let codex = tools::resolve(tools::codex, &settings).await?;
        anyhow::Ok((
            codex,
            Connection::open(&settings, settings.share, probed).await?,
        ))
    };
    let (codex, mut connection) = tokio::select! {
        ready = prepare => ready?,
        signal = interrupted() => return Ok(signal.exit_code()),
    };
    let result = session(&mut connection, &settings, &codex.path, &user_args).await;
    connection.close().await;
    result
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
    let relay = crate::relay::Relay::start(&connection.base).await?;
    let v1 = format!("{}/v1", relay.base_url());
    let mut target = Target {
        provider: Provider::Ollama {
            base_url: &v1,
            port: Some(relay.port()),
        },
        model: &settings.model,
        context_length: settings.context_length,
        catalog: None,
    };
    let catalog = catalog_for(settings, codex, user_args, &target, OLLAMA_PLACE).await;
    target.catalog = catalog.as_deref();
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

/// Codex against a team's OpenAI-compatible server: no Ollama, no pull; the model it
/// serves, the window it serves it with, and a provider of codex-oss's own.
async fn on_team_server(
    settings: &Settings,
    url: &str,
    root: &str,
    server: &OpenAiServer,
    user_args: &[OsString],
) -> Result<ExitCode> {
    let (model, context) = server.choose(url, settings)?;
    let codex = tokio::select! {
        codex = tools::resolve(tools::codex, settings) => codex?,
        signal = interrupted() => return Ok(signal.exit_code()),
    };
    let v1 = format!("{root}/v1");
    let mut target = Target {
        provider: Provider::OpenAi {
            base_url: &v1,
            env_key: settings
                .api_key
                .is_set()
                .then_some(settings.api_key.var.as_str()),
        },
        model: &model,
        context_length: context,
        catalog: None,
    };
    let place = format!("on the team server {root}");
    let catalog = catalog_for(settings, &codex.path, user_args, &target, &place).await;
    target.catalog = catalog.as_deref();
    let started = std::time::SystemTime::now();
    let status = launch::run_codex(&codex.path, user_args, &target).await?;
    say_how_to_resume(user_args, started);
    Ok(ExitCode::from(platform::exit_code(status)))
}

/// After an interactive session, Codex says "To continue this session, run: codex resume
/// <id>", which would resume it with the user's cloud Codex: name the local way too.
fn say_how_to_resume(user_args: &[OsString], started: std::time::SystemTime) {
    if crate::resume::is_interactive(user_args) && ui::stderr_is_terminal() {
        let home = launch::codex_home();
        if let Some(id) = home.and_then(|home| crate::resume::session_since(&home, started)) {
            ui::info(format!(
                "to continue this session on the local model, run: codex-oss resume {id}"
            ));
        }
    }
}

/// The model catalog for this run (the target's model, its context window and `place`,
/// where it runs), unless the user has their own or Codex rejects ours (then one warning,
/// and Codex runs on its fallback metadata).
async fn catalog_for(
    settings: &Settings,
    codex: &std::path::Path,
    user_args: &[OsString],
    target: &Target<'_>,
    place: &str,
) -> Option<std::path::PathBuf> {
    if launch::user_sets(user_args, "model_catalog_json") {
        return None;
    }
    let path = catalog::write(&settings.home, target.model, target.context_length, place)
        .map_err(|err| ui::warn(format!("running Codex without a model catalog: {err:#}")))
        .ok()?;
    if catalog::codex_accepts(codex, &path).await {
        return Some(path);
    }
    catalog::warn_rejected_once(codex, &path);
    None
}
