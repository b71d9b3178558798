//! An Ollama to talk to: the user's own (`CODEX_OSS_BASE_URL`) or the embedded one,
//! started for this run and stopped when the run ends.

use std::time::Duration;

use anyhow::Result;

use crate::model::Ollama;
use crate::server::{self, Server};
use crate::settings::Settings;
use crate::tools::{self, Tool};

pub struct Connection {
    pub server: Option<Server>,
    /// `http://HOST:PORT`
    pub base: String,
    /// `http://HOST:PORT/v1`, what Codex calls `CODEX_OSS_BASE_URL`.
    v1_url: String,
    pull_timeout: Duration,
    _tool: Option<Tool>,
}

impl Connection {
    pub async fn open(settings: &Settings) -> Result<Connection> {
        if let Some(url) = &settings.base_url {
            server::check_external(url).await?;
            let base = url.trim_end_matches('/').trim_end_matches("/v1").to_owned();
            return Ok(Connection {
                server: None,
                base,
                v1_url: url.clone(),
                pull_timeout: settings.pull_timeout,
                _tool: None,
            });
        }
        let tool = tools::resolve(tools::ollama, settings).await?;
        let server = Server::start(server::Config {
            executable: &tool.path,
            home: &settings.home,
            bind: settings.bind.clone(),
            context_length: settings.context_length,
        })
        .await?;
        let base = server.base_url();
        Ok(Connection {
            v1_url: format!("{base}/v1"),
            base,
            server: Some(server),
            pull_timeout: settings.pull_timeout,
            _tool: Some(tool),
        })
    }

    pub fn client(&self) -> Result<Ollama> {
        Ollama::new(&self.base, self.pull_timeout)
    }

    /// `http://HOST:PORT/v1`, what Codex calls `CODEX_OSS_BASE_URL`.
    pub fn v1_url(&self) -> &str {
        &self.v1_url
    }

    pub fn port(&self) -> Option<u16> {
        self.server.as_ref().map(Server::port)
    }

    /// Stops the embedded server, if this connection started one.
    pub async fn close(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}
