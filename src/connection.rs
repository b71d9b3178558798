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
        let tool = tools::ollama(home)?;
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

/// Resolves with the number of the first SIGINT, SIGTERM or SIGHUP (Ctrl-C on Windows).
pub async fn interrupted() -> i32 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => 2,
            _ = term.recv() => 15,
            _ = hup.recv() => 1,
        }
    }
    #[cfg(windows)]
    {
        let _ = tokio::signal::ctrl_c().await;
        2
    }
}
