//! An Ollama to talk to: the user's own (`CODEX_OSS_BASE_URL`), the embedded one
//! shared with other codex-oss runs (see `shared`), or one started for this run alone
//! (`--no-share`, `CODEX_OSS_SHARE=0`, `serve`) and stopped when the run ends.

use std::time::Duration;

use anyhow::Result;

use crate::model::Ollama;
use crate::remote::Remote;
use crate::server::Server;
use crate::settings::Settings;
use crate::shared::Shared;
use crate::tools::{self, Tool};

pub struct Connection {
    /// A server of this run's own.
    pub server: Option<Server>,
    /// A server shared with other runs.
    pub shared: Option<Shared>,
    /// `http://HOST:PORT`
    pub base: String,
    pull_timeout: Duration,
    _tool: Option<Tool>,
}

impl Connection {
    /// The user's server, else the shared one (when `share`, which is `settings.share`
    /// but for `serve`), else one of this run's own. `probed` is what answers at the
    /// user's address when the caller has probed it already (`remote::probe`), so a run
    /// asks the user's server once.
    pub async fn open(
        settings: &Settings,
        share: bool,
        probed: Option<Remote>,
    ) -> Result<Connection> {
        if let Some(url) = &settings.base_url {
            let found = match probed {
                Some(found) => found,
                None => crate::remote::probe(url, &settings.api_key).await?,
            };
            if let crate::remote::Kind::OpenAi(served) = found.kind {
                anyhow::bail!(
                    "the server at {url} is {} (OpenAI-compatible), not an Ollama: codex-oss runs Codex on it, but its models are managed there; unset CODEX_OSS_BASE_URL for the embedded Ollama",
                    served.describe()
                );
            }
            return Ok(Connection {
                server: None,
                shared: None,
                base: found.root,
                pull_timeout: settings.pull_timeout,
                _tool: None,
            });
        }
        let tool = tools::resolve(tools::ollama, settings).await?;
        // An NVIDIA GPU gets Ollama's CUDA libraries before Ollama starts (see `gpu`).
        crate::gpu::prepare(settings, &tool.path).await;
        crate::registry::stop_stale(&settings.home, &tool.path);
        let shared = if share {
            Shared::join(settings, &tool.path).await?
        } else {
            None
        };
        let (server, base) = if let Some(shared) = &shared {
            (None, shared.base_url())
        } else {
            let server = Server::start(settings, &tool.path).await?;
            let base = server.base_url();
            (Some(server), base)
        };
        let log = server.as_ref().map(Server::log_path);
        crate::gpu::check_device(&settings.home, &base, log).await;
        Ok(Connection {
            base,
            server,
            shared,
            pull_timeout: settings.pull_timeout,
            _tool: Some(tool),
        })
    }

    pub fn client(&self) -> Result<Ollama> {
        Ollama::new(&self.base, self.pull_timeout)
    }

    /// Resolves if the embedded server stops; never for a user's own server.
    pub async fn server_gone(&mut self) -> String {
        if let Some(server) = self.server.as_mut() {
            let status = server.wait_exit().await;
            return server.died_message(status);
        }
        if let Some(shared) = &self.shared {
            shared.wait_gone().await;
            return shared.died_message();
        }
        std::future::pending().await
    }

    /// Stops this run's own server; leaves a shared one to its keeper (this run's lease
    /// goes with the connection).
    pub async fn close(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}
