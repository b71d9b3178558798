//! The codex-oss home (`CODEX_OSS_HOME`, default `~/.codex-oss`) and every path in it.
//!
//! One place resolves the home and derives the sub-paths, so that no other module
//! guesses at the layout. The home is created owner-only (0700): it holds the model
//! store, logs and the keys Ollama writes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Paths under the codex-oss home.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `CODEX_OSS_HOME`, else `~/.codex-oss`.
    pub fn from_env() -> Result<Home> {
        let root = match std::env::var_os("CODEX_OSS_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => dirs::home_dir()
                .context("cannot find your home directory: set CODEX_OSS_HOME to where codex-oss may keep its files")?
                .join(".codex-oss"),
        };
        let root = if root.is_relative() {
            std::env::current_dir()?.join(root)
        } else {
            root
        };
        Ok(Home { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the versions of one unpacked payload live: `<home>/ollama/<version>-<hash>/`.
    pub fn payload_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The model store: `OLLAMA_MODELS` if the user set it, else `<home>/models`.
    pub fn models(&self) -> PathBuf {
        std::env::var_os("OLLAMA_MODELS")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("models"))
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Locks and leases of running servers and unpacks.
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }

    /// HOME given to Ollama, so its key pair lands here and not in the user's ~/.ollama.
    pub fn ollama_home(&self) -> PathBuf {
        self.root.join("ollama-home")
    }

    /// Optional user defaults (model, context length).
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// Creates the home (0700) and the sub-directories every run needs.
    pub fn ensure(&self) -> Result<()> {
        create_private_dir(&self.root, "codex-oss home")?;
        for (dir, label) in [(self.run(), "run"), (self.logs(), "logs")] {
            create_private_dir(&dir, label)?;
        }
        Ok(())
    }
}

/// Creates `dir` (and parents) with mode 0700 on Unix; the error names the path and what to do.
pub fn create_private_dir(dir: &Path, label: &str) -> Result<()> {
    make_private_dir(dir).with_context(|| {
        format!(
            "could not create the {label} directory {}: make it writable or set CODEX_OSS_HOME to a writable directory",
            dir.display()
        )
    })
}

/// Creates `dir` (and parents) with mode 0700 on Unix, leaving the message to the caller.
pub fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
