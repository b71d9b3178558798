//! Runs Codex against the local model: the arguments, the environment, the signals,
//! and the exit status.
//!
//! The user's arguments go to Codex unchanged; ahead of them the launcher puts
//! `--oss --local-provider ollama -m MODEL` and the context window Ollama serves
//! (`-c model_context_window=N -c model_auto_compact_token_limit=M`, so Codex compacts
//! before Ollama truncates). With the pinned Codex, root flags apply to whichever
//! subcommand follows. Whatever the user set themselves (`-m`, `--local-provider`,
//! the same `-c` keys) wins: the launcher then leaves its own out.
//!
//! Codex stays in the launcher's process group so it owns the terminal; Ctrl-C
//! reaches it directly. SIGTERM and SIGHUP sent to the launcher are passed on.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitStatus;

use anyhow::{Context, Result};

use crate::env_vars::EnvVars;
use crate::platform;

/// The provider's address and the model settings Codex gets.
pub struct Target<'a> {
    pub provider: Provider<'a>,
    pub model: &'a str,
    pub context_length: u32,
    /// The model catalog for the local model (see `catalog`), when Codex accepts it.
    pub catalog: Option<&'a Path>,
}

/// Where the model is served.
pub enum Provider<'a> {
    /// An Ollama: Codex's built-in `ollama` provider (`--oss`), which takes its address from
    /// `CODEX_OSS_BASE_URL` (`http://HOST:PORT/v1`) and `CODEX_OSS_PORT`.
    Ollama {
        base_url: &'a str,
        port: Option<u16>,
    },
    /// An OpenAI-compatible server (vLLM, `SGLang`, LM Studio, `llama-server`): a provider of
    /// codex-oss's own (`TEAM_PROVIDER`), at `base_url` (`https://HOST:PORT/v1`), with the
    /// key in the variable `env_key` when there is one.
    OpenAi {
        base_url: &'a str,
        env_key: Option<&'a str>,
    },
}

/// The id of the provider codex-oss gives Codex for an OpenAI-compatible server (`ollama`,
/// `lmstudio` and `openai` are Codex's own).
pub const TEAM_PROVIDER: &str = "codex-oss";

/// How long Codex waits for the next event of a stream from a team's server: a busy
/// server may queue a long prompt for a while before the first token.
const TEAM_STREAM_IDLE_MS: i64 = 600_000;

/// `model_providers.codex-oss={...}` as one TOML inline table, which is how `-c` reads it.
fn team_provider(base_url: &str, env_key: Option<&str>) -> String {
    let mut table = toml::Table::new();
    table.insert("name".into(), "codex-oss team server".into());
    table.insert("base_url".into(), base_url.into());
    if let Some(var) = env_key {
        table.insert("env_key".into(), var.into());
    }
    table.insert("wire_api".into(), "responses".into());
    table.insert("stream_idle_timeout_ms".into(), TEAM_STREAM_IDLE_MS.into());
    toml::Value::Table(table).to_string().trim().to_owned()
}

/// Codex's arguments: ours first (unless the user gave the same), then the user's.
///
/// Besides the provider, model and context window: the model catalog, a reasoning
/// effort gpt-oss supports (Codex would send the one in the user's cloud config, or
/// none), web search off (Ollama maps it to ollama.com's search, which needs an account
/// and the network; `--search` turns it back on), and no update checks or tips from
/// the embedded Codex, which codex-oss updates itself.
pub fn codex_args(user: &[OsString], target: &Target<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let own_provider =
        has_flag(user, &["--oss", "--local-provider"]) || has_config(user, "model_provider");
    match target.provider {
        Provider::Ollama { .. } => {
            if !has_flag(user, &["--oss"]) {
                args.push("--oss".into());
            }
            if !has_flag(user, &["--local-provider"]) && !has_config(user, "model_provider") {
                args.extend(["--local-provider".into(), "ollama".into()]);
            }
        }
        Provider::OpenAi { base_url, env_key } if !own_provider => {
            args.extend([
                "-c".into(),
                format!("model_provider={TEAM_PROVIDER}").into(),
                "-c".into(),
                format!(
                    "model_providers.{TEAM_PROVIDER}={}",
                    team_provider(base_url, env_key)
                )
                .into(),
            ]);
            // Only function tools: vLLM refuses the `namespace` tool multi_agent adds (and
            // web_search, off below), SGLang drops it.
            if !sets_feature(user, "multi_agent") {
                args.extend(["--disable".into(), "multi_agent".into()]);
            }
        }
        Provider::OpenAi { .. } => {}
    }
    if user_model(user).is_none() {
        args.extend(["-m".into(), target.model.into()]);
    }
    // Codex >= 0.160 may start a background app server (feature `daemon_auto_start`) that
    // outlives the run and keeps this run's server address, or join one the user's own
    // Codex started, with their cloud settings: a codex-oss run keeps Codex in-process.
    if !has_flag(user, &["--no-daemon"]) {
        args.push("--no-daemon".into());
    }
    let context = target.context_length;
    let compact_limit = context - context / 10;
    let mut settings = vec![
        ("model_context_window", context.to_string()),
        ("model_auto_compact_token_limit", compact_limit.to_string()),
    ];
    if let Some(catalog) = target.catalog {
        settings.push(("model_catalog_json", crate::catalog::toml_string(catalog)));
    }
    if crate::catalog::is_gpt_oss(user_model(user).as_deref().unwrap_or(target.model)) {
        settings.push((
            "model_reasoning_effort",
            crate::catalog::DEFAULT_EFFORT.to_owned(),
        ));
    }
    if !has_flag(user, &["--search"]) {
        settings.push(("web_search", "\"disabled\"".to_owned()));
    }
    settings.push(("check_for_update_on_startup", "false".to_owned()));
    settings.push(("tui.show_tooltips", "false".to_owned()));
    for (key, value) in settings {
        if !has_config(user, key) {
            args.extend(["-c".into(), format!("{key}={value}").into()]);
        }
    }
    args.extend(user.iter().cloned());
    args
}

/// True when the user sets Codex's `key` on the command line (`-c key=...`) or at the
/// top of their own Codex config (`$CODEX_HOME/config.toml`, else `~/.codex/config.toml`).
pub fn user_sets(user: &[OsString], key: &str) -> bool {
    has_config(user, key)
        || codex_home()
            .and_then(|dir| std::fs::read_to_string(dir.join("config.toml")).ok())
            .and_then(|text| text.parse::<toml::Table>().ok())
            .is_some_and(|table| table.contains_key(key))
}

/// Codex's own folder: `$CODEX_HOME`, else `~/.codex`.
pub fn codex_home() -> Option<std::path::PathBuf> {
    std::env::var_os(EnvVars::CODEX_HOME)
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::home_dir().map(|home| home.join(".codex")))
}

/// Removes the launcher's own `flag` from Codex's arguments (before a lone `--`);
/// true when it was there.
pub fn take_flag(user: &mut Vec<OsString>, flag: &str) -> bool {
    let end = user.iter().position(|a| a == "--").unwrap_or(user.len());
    let before = user.len();
    let mut index = 0;
    user.retain(|arg| {
        index += 1;
        index > end || arg != flag
    });
    user.len() != before
}

/// The arguments before a lone `--` (after it everything is a prompt).
fn options(user: &[OsString]) -> impl Iterator<Item = &str> {
    user.iter()
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str())
}

fn has_flag(user: &[OsString], names: &[&str]) -> bool {
    options(user).any(|a| {
        names
            .iter()
            .any(|n| a == *n || a.starts_with(&format!("{n}=")))
    })
}

/// True when the user turns Codex's `feature` on or off themselves (`--enable F`,
/// `--disable F`, `--enable=F`, `-c features.F=...`).
fn sets_feature(user: &[OsString], feature: &str) -> bool {
    let args: Vec<&str> = options(user).collect();
    let named = args
        .windows(2)
        .any(|pair| matches!(pair[0], "--enable" | "--disable") && pair[1] == feature)
        || args.iter().any(|a| {
            a.strip_prefix("--enable=")
                .or_else(|| a.strip_prefix("--disable="))
                == Some(feature)
        });
    named || has_config(user, &format!("features.{feature}"))
}

/// `-c key=...`, `--config key=...`, `-ckey=...` or `--config=key=...`.
fn has_config(user: &[OsString], key: &str) -> bool {
    config_value(user, key).is_some()
}

fn config_value(user: &[OsString], key: &str) -> Option<String> {
    option_values(user, 'c', "--config")
        .into_iter()
        .flatten()
        .filter_map(|setting| setting.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .next_back()
}

/// Each value given to the option `-NAME`/`--LONG`, in order, as clap reads them: `-m
/// VALUE`, `--model VALUE`, `--model=VALUE`, `-mVALUE` or `-m=VALUE`; `None` for one
/// without a value at the end.
fn option_values<'a>(user: &'a [OsString], name: char, long: &str) -> Vec<Option<&'a str>> {
    let args: Vec<&str> = options(user).collect();
    let short = format!("-{name}");
    let equals = format!("{long}=");
    let mut values = Vec::new();
    for (pos, arg) in args.iter().enumerate() {
        if *arg == short || *arg == long {
            values.push(args.get(pos + 1).copied());
        } else if let Some(value) = arg.strip_prefix(&equals).or_else(|| {
            let value = arg.strip_prefix(&short)?;
            let value = value.strip_prefix('=').unwrap_or(value);
            (!value.is_empty()).then_some(value)
        }) {
            values.push(Some(value));
        }
    }
    values
}

pub fn user_model(user: &[OsString]) -> Option<String> {
    let given = option_values(user, 'm', "--model").pop().flatten();
    given
        .map(str::to_owned)
        .or_else(|| config_value(user, "model"))
}

pub async fn run_codex(codex: &Path, user: &[OsString], target: &Target<'_>) -> Result<ExitStatus> {
    let args = codex_args(user, target);
    tracing::debug!("running {} {:?}", codex.display(), args);
    let mut command = tokio::process::Command::new(codex);
    command.args(&args);
    if let Provider::Ollama { base_url, port } = target.provider {
        command.env(EnvVars::CODEX_OSS_BASE_URL, base_url);
        if let Some(port) = port {
            command.env(EnvVars::CODEX_OSS_PORT, port.to_string());
        }
    }
    // The local server is on loopback: a proxy set for the outside world must not get it.
    let no_proxy = no_proxy(
        std::env::var(EnvVars::NO_PROXY).ok().as_deref(),
        std::env::var(EnvVars::NO_PROXY_LOWER).ok().as_deref(),
    );
    command
        .env(EnvVars::NO_PROXY, &no_proxy)
        .env(EnvVars::NO_PROXY_LOWER, &no_proxy);
    if let Some(path) = path_with_resources(codex) {
        command.env(EnvVars::PATH, path);
    }
    // Codex without its server is of no use: it ends with the launcher, however that ends.
    platform::die_with_launcher(&mut command);
    let mut child = command
        .spawn()
        .with_context(|| format!("could not start Codex ({})", codex.display()))?;
    let _job = platform::end_with_launcher(&child);
    wait_forwarding_signals(&mut child).await
}

/// PATH with Codex's own helpers (`codex-resources/`: bubblewrap for its Linux sandbox)
/// appended, so a system copy still comes first; `None` when Codex has none beside it.
fn path_with_resources(codex: &Path) -> Option<OsString> {
    let resources = codex.parent()?.parent()?.join("codex-resources");
    if !resources.is_dir() {
        return None;
    }
    let current = std::env::var_os(EnvVars::PATH).unwrap_or_default();
    let dirs = std::env::split_paths(&current).chain(std::iter::once(resources));
    std::env::join_paths(dirs).ok()
}

/// The user's `NO_PROXY` and `no_proxy` (both kept, in that order), with the loopback
/// names added where missing.
pub fn no_proxy(upper: Option<&str>, lower: Option<&str>) -> String {
    let mut entries: Vec<String> = Vec::new();
    let theirs = [upper, lower]
        .into_iter()
        .flatten()
        .flat_map(|v| v.split(','));
    for entry in theirs.chain(["127.0.0.1", "localhost", "::1"]) {
        let entry = entry.trim();
        if !entry.is_empty() && !entries.iter().any(|e| e.eq_ignore_ascii_case(entry)) {
            entries.push(entry.to_owned());
        }
    }
    entries.join(",")
}

/// Waits for Codex, passing on the signals the launcher receives (Ctrl-C reaches Codex
/// through the terminal: the launcher only has to survive it).
async fn wait_forwarding_signals(child: &mut tokio::process::Child) -> Result<ExitStatus> {
    let mut signals = platform::Signals::new()?;
    let pid = child.id();
    loop {
        let received = tokio::select! {
            status = child.wait() => return Ok(status?),
            received = signals.recv() => received,
        };
        if let Some(pid) = pid {
            platform::forward(pid, received);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    fn target(catalog: Option<&Path>) -> Target<'_> {
        Target {
            provider: Provider::Ollama {
                base_url: "http://127.0.0.1:1/v1",
                port: Some(1),
            },
            model: "gpt-oss:20b",
            context_length: 32768,
            catalog,
        }
    }

    #[test]
    fn our_flags_go_first_and_user_args_follow_unchanged() {
        let catalog = Path::new("/h/catalogs/ab.json");
        let args = strings(codex_args(&os(&["exec", "say hi"]), &target(Some(catalog))));
        assert_eq!(
            args,
            [
                "--oss",
                "--local-provider",
                "ollama",
                "-m",
                "gpt-oss:20b",
                "--no-daemon",
                "-c",
                "model_context_window=32768",
                "-c",
                "model_auto_compact_token_limit=29492",
                "-c",
                "model_catalog_json=\"/h/catalogs/ab.json\"",
                "-c",
                "model_reasoning_effort=medium",
                "-c",
                "web_search=\"disabled\"",
                "-c",
                "check_for_update_on_startup=false",
                "-c",
                "tui.show_tooltips=false",
                "exec",
                "say hi"
            ]
        );
    }

    #[test]
    fn user_settings_win() {
        let user = os(&[
            "-m",
            "mine",
            "--local-provider=lmstudio",
            "-c",
            "model_context_window=8192",
            "-c",
            "model_catalog_json=/mine.json",
            "--search",
            "-c",
            "model_reasoning_effort=high",
            "exec",
        ]);
        let args = strings(codex_args(&user, &target(Some(Path::new("/ours.json")))));
        assert!(!args.contains(&"gpt-oss:20b".to_owned()));
        assert!(!args.contains(&"ollama".to_owned()));
        assert!(!args.contains(&"model_context_window=32768".to_owned()));
        assert!(args.contains(&"model_auto_compact_token_limit=29492".to_owned()));
        assert!(!args.iter().any(|a| a.contains("ours.json")));
        assert!(!args.iter().any(|a| a.starts_with("web_search")));
        assert!(!args.iter().any(|a| a == "model_reasoning_effort=medium"));
        assert_eq!(user_model(&user).as_deref(), Some("mine"));
    }

    /// Flags of newer Codex releases go through as they are, and a `--no-daemon` of the
    /// user's is not doubled.
    #[test]
    fn codex_flags_pass_through_untouched() {
        let user = os(&["--no-daemon", "--worktree", "--trust", "resume", "--last"]);
        let args = strings(codex_args(&user, &target(None)));
        assert_eq!(args.iter().filter(|a| *a == "--no-daemon").count(), 1);
        assert_eq!(
            args[args.len() - user.len()..],
            strings(user.clone())[..],
            "{args:?}"
        );
    }

    fn team(env_key: Option<&str>) -> Target<'_> {
        Target {
            provider: Provider::OpenAi {
                base_url: "https://gpu:8000/v1",
                env_key,
            },
            model: "openai/gpt-oss-120b",
            context_length: 131_072,
            catalog: None,
        }
    }

    #[test]
    fn a_team_server_gets_a_provider_of_its_own_and_only_function_tools() {
        let args = strings(codex_args(
            &os(&["exec", "hi"]),
            &team(Some("CODEX_OSS_API_KEY")),
        ));
        assert_eq!(
            args[..8],
            [
                "-c",
                "model_provider=codex-oss",
                "-c",
                "model_providers.codex-oss={ base_url = \"https://gpu:8000/v1\", env_key = \"CODEX_OSS_API_KEY\", name = \"codex-oss team server\", stream_idle_timeout_ms = 600000, wire_api = \"responses\" }",
                "--disable",
                "multi_agent",
                "-m",
                "openai/gpt-oss-120b",
            ]
        );
        assert!(!args.iter().any(|a| a == "--oss" || a == "--local-provider"));
        assert!(args.contains(&"web_search=\"disabled\"".to_owned()));
        assert!(args.contains(&"model_reasoning_effort=medium".to_owned()));
        assert!(args.contains(&"model_context_window=131072".to_owned()));
        // No key, no env_key (Codex would refuse to start without the variable).
        let keyless = |user: &[&str]| strings(codex_args(&os(user), &team(None)));
        let args = keyless(&["exec"]);
        assert!(!args.iter().any(|a| a.contains("env_key")), "{args:?}");
        // The user's own choices win.
        for user in [
            &["--enable", "multi_agent", "exec"][..],
            &["--disable=multi_agent", "exec"][..],
            &["-c", "features.multi_agent=true", "exec"][..],
        ] {
            let args = keyless(user);
            assert_eq!(
                args.iter().filter(|a| a.contains("multi_agent")).count(),
                1,
                "{args:?}"
            );
        }
        let args = keyless(&["--enable", "goals", "exec"]);
        assert!(args.contains(&"multi_agent".to_owned()), "{args:?}");
        let args = keyless(&["-c", "model_provider=mine", "exec"]);
        assert!(!args.iter().any(|a| a.contains("codex-oss")), "{args:?}");
    }

    #[test]
    fn the_launchers_own_flag_is_taken_out_before_a_lone_dash_dash_only() {
        let mut args = os(&["--no-share", "exec", "--", "--no-share"]);
        assert!(take_flag(&mut args, "--no-share"));
        assert_eq!(args, os(&["exec", "--", "--no-share"]));
        assert!(!take_flag(&mut args, "--no-share"));
    }

    #[test]
    fn an_effort_only_for_gpt_oss() {
        let args = strings(codex_args(&os(&["-m", "qwen3:8b", "exec"]), &target(None)));
        assert!(!args.iter().any(|a| a.starts_with("model_reasoning_effort")));
        assert!(!args.iter().any(|a| a.starts_with("model_catalog_json")));
    }

    #[test]
    fn no_proxy_keeps_the_users_entries_and_adds_loopback() {
        assert_eq!(no_proxy(None, None), "127.0.0.1,localhost,::1");
        assert_eq!(
            no_proxy(Some("corp.example,localhost"), Some(".internal")),
            "corp.example,localhost,.internal,127.0.0.1,::1"
        );
        assert_eq!(
            no_proxy(Some("a, b"), Some("a,b")),
            "a,b,127.0.0.1,localhost,::1"
        );
    }

    #[test]
    fn model_forms() {
        for (args, model) in [
            (&["exec", "--model=a:1"][..], Some("a:1")),
            (&["-c", "model=\"b:2\""], Some("b:2")),
            (&["exec", "--", "-m", "not a flag"], None),
            (&["exec", "-mqwen3:8b"], Some("qwen3:8b")),
            (&["exec", "-m=qwen3:8b"], Some("qwen3:8b")),
            (&["-c=model=\"c:3\""], Some("c:3")),
        ] {
            assert_eq!(user_model(&os(args)).as_deref(), model, "{args:?}");
        }
    }
}
