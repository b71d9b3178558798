//! An Ollama to talk to: the user's own (`CODEX_OSS_BASE_URL`) or the embedded one,
//! started for this run and stopped when the run ends.

use anyhow::Result;

use crate::home::Home;
use crate::model::Ollama;
use crate::server::{self, Bind, Server};
use crate::settings::env_nonempty;
use crate::tools::{self, Tool};

pub struct Connection {
    pub server: Option<Server>,
    /// `http://HOST:PORT`
    pub base: String,
    _tool: Option<Tool>,
}

impl Connection {
    pub async fn open(home: &Home, context_length: u32) -> Result<Connection> {
        if let Some(url) = env_nonempty("CODEX_OSS_BASE_URL") {
            server::check_external(&url).await?;
            let base = url.trim_end_matches('/').trim_end_matches("/v1").to_owned();
            return Ok(Connection {
                server: None,
                base,
                _tool: None,
            });
        }
        let bind = Bind::from_env()?;
        let tool = tools::resolve(tools::ollama, home).await?;
        let server = Server::start(server::Config {
            executable: &tool.path,
            home,
            bind,
            context_length,
        })
        .await?;
        Ok(Connection {
            base: server.base_url(),
            server: Some(server),
            _tool: Some(tool),
        })
    }

    pub fn client(&self) -> Result<Ollama> {
        Ollama::new(&self.base)
    }

    /// `http://HOST:PORT/v1`, what Codex calls CODEX_OSS_BASE_URL.
    pub fn v1_url(&self) -> String {
        env_nonempty("CODEX_OSS_BASE_URL").unwrap_or_else(|| format!("{}/v1", self.base))
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
