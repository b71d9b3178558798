//! The model catalog that tells Codex about the local model (`-c model_catalog_json=FILE`).
//!
//! Codex only knows the metadata of its own cloud models: for `gpt-oss` it warns that it falls
//! back to defaults, sends no reasoning effort, and sizes its context by guesswork. A
//! catalog (`{"models":[...]}`, the shape of `ModelInfo` in Codex's `codex-rs/protocol`,
//! checked field by field against the pinned Codex) replaces its built-in list for the
//! one process: the context window Ollama serves, the reasoning efforts Ollama accepts
//! for gpt-oss, and Codex's own default instructions for the pinned version (an empty
//! `base_instructions`, as Ollama's own launcher writes, sends no instructions at all,
//! and the model never learns Codex's tools or its patch format).
//!
//! The file lives under the codex-oss home (never in the user's `~/.codex`), named by
//! its content: a new model, context length or Codex makes a new file, and two runs with
//! different models never share one. Before its first use with a Codex executable it is
//! checked with `codex debug models`, which loads it as a run would; a catalog that Codex
//! rejects (its schema changed in an update) is left out with one warning.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::home::Home;

/// What the pinned Codex sends as its base instructions when it has no metadata for a
/// model (the first `developer` message of its request since Codex 0.160, the
/// `instructions` field before), recorded by `scripts/bump-codex.sh` and kept honest by
/// tests/it/agent.rs.
pub const BASE_INSTRUCTIONS: &str = include_str!("catalog/codex-base-instructions.md");

/// The Codex version `BASE_INSTRUCTIONS` were recorded from.
#[cfg(test)]
pub const BASE_INSTRUCTIONS_CODEX: &str = include_str!("catalog/codex-base-instructions.version");

/// The reasoning effort a run gets unless the user chooses one.
pub const DEFAULT_EFFORT: &str = "medium";

#[derive(Serialize)]
struct Catalog<'a> {
    models: [ModelInfo<'a>; 1],
}

#[allow(
    clippy::struct_excessive_bools,
    reason = "the shape of Codex's ModelInfo"
)]
/// The fields of Codex's `ModelInfo` that the pinned Codex requires, and the optional
/// ones that matter here. No `apply_patch_tool_type`: Codex accepts only `freeform`
/// there, a custom tool that Ollama's Responses endpoint turns into a function without
/// parameters; without it Codex still applies patches given through `exec_command`.
#[derive(Serialize)]
struct ModelInfo<'a> {
    slug: &'a str,
    display_name: &'a str,
    description: String,
    context_window: u32,
    shell_type: &'static str,
    visibility: &'static str,
    supported_in_api: bool,
    priority: i32,
    truncation_policy: Truncation,
    input_modalities: [&'static str; 1],
    base_instructions: &'a str,
    support_verbosity: bool,
    supports_parallel_tool_calls: bool,
    supports_reasoning_summaries: bool,
    supported_reasoning_levels: Vec<Effort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_reasoning_level: Option<&'static str>,
    experimental_supported_tools: [&'static str; 0],
    supports_experimental_context: bool,
    supports_reasoning_effort_updates: bool,
}

#[derive(Serialize)]
struct Truncation {
    mode: &'static str,
    limit: i64,
}

#[derive(Serialize)]
struct Effort {
    effort: &'static str,
    description: &'static str,
}

/// True for the gpt-oss family, whose reasoning efforts Ollama maps (low, medium, high).
/// (`gpt-oss:20b` in Ollama, `openai/gpt-oss-120b` or `gpt-oss-20b` on vLLM and others).
pub fn is_gpt_oss(model: &str) -> bool {
    model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .starts_with("gpt-oss")
}

/// The catalog's JSON for `model` served with `context_length` tokens `place` ("on the
/// embedded Ollama, on this machine").
pub fn json(model: &str, context_length: u32, place: &str) -> String {
    let gpt_oss = is_gpt_oss(model);
    // The efforts Ollama maps, for gpt-oss only.
    let levels = [
        ("low", "Fastest answers, least thinking"),
        ("medium", "Balances speed and depth of reasoning"),
        ("high", "Thinks longest, for hard problems"),
    ]
    .into_iter()
    .filter(|_| gpt_oss)
    .map(|(effort, description)| Effort {
        effort,
        description,
    })
    .collect();
    let catalog = Catalog {
        models: [ModelInfo {
            slug: model,
            display_name: model,
            description: format!("{model} {place}"),
            context_window: context_length,
            // What "default" reads back as since Codex 0.160: `exec_command` and
            // `write_stdin`, plain function tools that Ollama's Responses endpoint passes on.
            shell_type: "unified_exec",
            visibility: "list",
            supported_in_api: true,
            priority: 0,
            truncation_policy: Truncation {
                mode: "bytes",
                limit: 10_000,
            },
            input_modalities: ["text"],
            base_instructions: BASE_INSTRUCTIONS,
            support_verbosity: false,
            supports_parallel_tool_calls: false,
            // Codex sends `reasoning` (and with it the effort) only for such models.
            supports_reasoning_summaries: true,
            supported_reasoning_levels: levels,
            default_reasoning_level: gpt_oss.then_some(DEFAULT_EFFORT),
            experimental_supported_tools: [],
            // Both are for OpenAI's own service: context that Ollama's Responses endpoint
            // does not take, and effort changes inside a running turn (Ollama takes the
            // effort once per request; a new effort applies from the next request).
            supports_experimental_context: false,
            supports_reasoning_effort_updates: false,
        }],
    };
    serde_json::to_string_pretty(&catalog).expect("the catalog serialises")
}

/// Writes the catalog for `model` under `<home>/catalogs/` (once: the file is named by
/// its content) and returns its path.
pub fn write(home: &Home, model: &str, context_length: u32, place: &str) -> Result<PathBuf> {
    let text = json(model, context_length, place);
    let digest = Sha256::digest(text.as_bytes());
    let name = crate::files::hex(&digest[..8]);
    let dir = home.catalogs();
    let path = dir.join(format!("{name}.json"));
    if std::fs::read(&path).is_ok_and(|existing| existing == text.as_bytes()) {
        return Ok(path);
    }
    crate::home::create_private_dir(&dir, "catalogs")?;
    crate::files::write_atomically(&path, text.as_bytes())
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(path)
}

/// Checks once per Codex executable that Codex loads the catalog (`codex -c
/// model_catalog_json=FILE debug models`); remembers success beside the catalog. A Codex
/// that does not answer within `CHECK_DEADLINE` counts as rejecting it (and is killed).
pub async fn codex_accepts(codex: &Path, catalog: &Path) -> bool {
    let stamp = catalog.with_extension(format!("ok-{}", executable_id(codex)));
    if stamp.exists() {
        return true;
    }
    let mut command = tokio::process::Command::new(codex);
    command
        .arg("-c")
        .arg(format!("model_catalog_json={}", toml_string(catalog)))
        .args(["debug", "models"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    crate::platform::die_with_launcher(&mut command);
    let accepted = match command.spawn() {
        Ok(mut child) => tokio::time::timeout(CHECK_DEADLINE, child.wait())
            .await
            .is_ok_and(|status| status.is_ok_and(|s| s.success())),
        Err(_) => false,
    };
    if accepted {
        let _ = std::fs::write(&stamp, b"");
    }
    accepted
}

/// How long `codex debug models` may take (it answers in milliseconds).
const CHECK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Says once per Codex executable that it rejected the catalog: the run goes on
/// without it, with Codex's fallback metadata.
pub fn warn_rejected_once(codex: &Path, catalog: &Path) {
    let stamp = catalog.with_extension(format!("rejected-{}", executable_id(codex)));
    if stamp.exists() {
        return;
    }
    let _ = std::fs::write(&stamp, b"");
    caution!(
        "{} does not accept codex-oss's model catalog ({}): running without it, so Codex uses its fallback metadata for the model",
        codex.display(),
        catalog.display()
    );
}

/// A short name for an executable as it is now (path, size, modification time).
fn executable_id(path: &Path) -> String {
    let meta = std::fs::metadata(path).ok();
    let size = meta.as_ref().map_or(0, std::fs::Metadata::len);
    let mtime = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::digest(format!("{}\0{size}\0{mtime}", path.display()).as_bytes());
    crate::files::hex(&digest[..6])
}

/// A path as a TOML string, which is how `-c key=value` reads its value.
pub fn toml_string(path: &Path) -> String {
    toml::Value::String(path.to_string_lossy().into_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_describes_gpt_oss_as_ollama_serves_it() {
        let value: serde_json::Value =
            serde_json::from_str(&json("gpt-oss:20b", 32_768, "here")).unwrap();
        let model = &value["models"][0];
        assert_eq!(model["slug"], "gpt-oss:20b");
        assert_eq!(model["context_window"], 32_768);
        assert_eq!(model["default_reasoning_level"], "medium");
        let efforts: Vec<&str> = model["supported_reasoning_levels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["effort"].as_str().unwrap())
            .collect();
        assert_eq!(efforts, ["low", "medium", "high"]);
        assert_eq!(model["base_instructions"], BASE_INSTRUCTIONS);
        assert!(
            BASE_INSTRUCTIONS.len() > 10_000,
            "Codex's instructions, not a stub"
        );
        assert!(model.get("apply_patch_tool_type").is_none());
    }

    /// A Codex bump in bundle.toml needs that Codex's instructions here too (the end-to-end
    /// test records what the pinned Codex sends and compares).
    #[test]
    fn the_instructions_are_for_the_pinned_codex() {
        let bundle: toml::Table = include_str!("../bundle.toml").parse().unwrap();
        let pinned = bundle["codex"]["version"].as_str().unwrap();
        assert_eq!(
            BASE_INSTRUCTIONS_CODEX.trim(),
            pinned,
            "run scripts/bump-codex.sh {pinned}: it records that Codex's instructions"
        );
    }

    #[test]
    fn gpt_oss_by_every_engines_name() {
        for name in ["gpt-oss:20b", "openai/gpt-oss-120b", "gpt-oss-20b"] {
            assert!(is_gpt_oss(name), "{name}");
        }
        assert!(!is_gpt_oss("qwen3:8b") && !is_gpt_oss("my-gpt-oss"));
    }

    #[test]
    fn other_models_get_no_efforts() {
        let value: serde_json::Value =
            serde_json::from_str(&json("qwen3:8b", 8192, "here")).unwrap();
        let model = &value["models"][0];
        assert_eq!(model["supported_reasoning_levels"], serde_json::json!([]));
        assert!(model.get("default_reasoning_level").is_none());
    }

    #[test]
    fn paths_are_quoted_for_codex_config() {
        for path in [
            "/h/catalogs/ab.json",
            "/a b/c\"d.json",
            "C:\\Users\\me\\x.json",
        ] {
            let table: toml::Table =
                toml::from_str(&format!("v = {}", toml_string(Path::new(path)))).unwrap();
            assert_eq!(table["v"].as_str(), Some(path));
        }
    }
}
