//! The settings of one run, from (highest first) the command line, the environment,
//! `<home>/config.toml`, and the defaults.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

pub const DEFAULT_MODEL: &str = "gpt-oss:20b";

/// Context length Ollama serves and Codex is told: Codex's own instructions take
/// about 6k tokens and Ollama silently truncates past its small default.
pub const MIN_CONTEXT: u32 = 32_768;
pub const LARGE_CONTEXT: u32 = 65_536;
/// Memory from which the larger context is served by default.
const LARGE_CONTEXT_MEMORY: u64 = 32 * 1024 * 1024 * 1024;

/// `<home>/config.toml`: optional user defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub model: Option<String>,
    pub context_length: Option<u32>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| {
                format!(
                    "{} is not valid: fix or remove it (keys: model, context_length)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
        }
    }
}

/// The model: `CODEX_OSS_MODEL`, else config.toml, else gpt-oss:20b.
pub fn model(config: &ConfigFile) -> String {
    env_nonempty("CODEX_OSS_MODEL")
        .or_else(|| config.model.clone())
        .unwrap_or_else(|| DEFAULT_MODEL.to_owned())
}

/// The context length: `OLLAMA_CONTEXT_LENGTH`, else config.toml, else by memory.
pub fn context_length(config: &ConfigFile) -> Result<u32> {
    if let Some(value) = env_nonempty("OLLAMA_CONTEXT_LENGTH") {
        return value.parse().ok().filter(|n| *n >= 2048).with_context(|| {
            format!("OLLAMA_CONTEXT_LENGTH={value}: expected a number of tokens such as 32768")
        });
    }
    if let Some(n) = config.context_length {
        return Ok(n);
    }
    Ok(if total_memory() >= LARGE_CONTEXT_MEMORY {
        LARGE_CONTEXT
    } else {
        MIN_CONTEXT
    })
}

pub fn total_memory() -> u64 {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    system.total_memory()
}

pub fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
