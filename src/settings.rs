//! The settings of one run, resolved once from (highest first) the command line, the
//! environment, `<home>/config.toml`, and the defaults.
//!
//! `Settings::resolve` is a pure function of its inputs (an environment map, the
//! config file's text, the memory size), in the way cargo's `home` crate takes the
//! environment as a parameter so that rustup can test it; `Settings::load` gathers those
//! inputs from the process at the edge. Every bad value is a one-line error that names
//! the variable (or the file, line and column) and shows a valid example.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::env_vars::EnvVars;
use crate::home::Home;
use crate::http::{host_of, is_loopback_host};

pub const DEFAULT_MODEL: &str = "gpt-oss:20b";

/// Context length Ollama serves and Codex is told: Codex's own instructions take
/// about 6k tokens and Ollama silently truncates past its small default.
pub const MIN_CONTEXT: u32 = 32_768;
pub const LARGE_CONTEXT: u32 = 65_536;
/// Memory from which the larger context is served by default: a machine sold with 32 GB
/// reports a little less (31.3 GiB is common), which still counts.
const LARGE_CONTEXT_MEMORY: u64 = 30 * 1024 * 1024 * 1024;
/// The smallest context length accepted: below it Codex's instructions do not fit.
const SMALLEST_CONTEXT: u32 = 2048;
/// How long a pull may go without a byte from Ollama: Ollama reports progress many
/// times a second, and verifying a 13 GB download takes well under this.
pub const PULL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A bad setting: one line that names it and shows a valid value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SettingsError(String);

/// The environment as codex-oss reads it: a variable set to "" counts as unset.
#[derive(Clone, Debug, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every variable that is set (to something other than "").
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Env {
    fn from(pairs: [(&str, &str); N]) -> Env {
        Env(pairs.map(|(k, v)| (k.to_owned(), v.to_owned())).into())
    }
}

/// `<home>/config.toml`: optional user defaults.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub model: Option<String>,
    pub context_length: Option<u32>,
    /// A team's server, as `CODEX_OSS_BASE_URL` gives it (the variable wins).
    pub base_url: Option<String>,
    /// The name of the variable holding that server's API key (default
    /// `CODEX_OSS_API_KEY`): the key itself never goes into a file.
    pub api_key_env: Option<String>,
}

impl ConfigFile {
    /// Parses config.toml's text; an error names the file, the line and the column.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, SettingsError> {
        toml::from_str(text).map_err(|err| {
            let (line, column) = err
                .span()
                .map_or((1, 1), |span| line_and_column(text, span.start));
            SettingsError(format!(
                "{}:{line}:{column}: {}; fix it or remove the file",
                path.display(),
                err.message().trim().replace('\n', " ")
            ))
        })
    }
}

/// 1-based line and column of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Where the embedded Ollama should listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    /// `127.0.0.1:0`: Ollama picks a free port.
    Auto,
    /// `CODEX_OSS_PORT`: this loopback port.
    Port(u16),
    /// A loopback `OLLAMA_HOST` from the user's environment.
    OllamaHost(String),
    /// `CODEX_OSS_HOST`: where the user asked, loopback or not.
    Host(String),
}

impl Bind {
    /// The `OLLAMA_HOST` the server gets.
    pub fn ollama_host(&self) -> String {
        match self {
            Bind::Auto => "127.0.0.1:0".to_owned(),
            Bind::Port(port) => format!("127.0.0.1:{port}"),
            Bind::OllamaHost(host) | Bind::Host(host) => host.clone(),
        }
    }

    /// The address and the setting it came from, as a user reads it.
    pub fn describe(&self) -> String {
        match self {
            Bind::Auto => "a free loopback port".to_owned(),
            Bind::Port(port) => format!("port {port} (CODEX_OSS_PORT)"),
            Bind::OllamaHost(host) => format!("{host} (OLLAMA_HOST)"),
            Bind::Host(host) => format!("{host} (CODEX_OSS_HOST)"),
        }
    }

    /// What to change when the address is taken.
    pub fn fix_when_taken(&self) -> &'static str {
        match self {
            Bind::Port(_) => "choose another CODEX_OSS_PORT or unset it",
            Bind::OllamaHost(_) => "choose another OLLAMA_HOST or unset it",
            Bind::Host(_) => "choose another CODEX_OSS_HOST or unset it",
            Bind::Auto => "try again",
        }
    }
}

/// `CODEX_OSS_GPU`: look for a GPU (`auto`), take an NVIDIA GPU as found (`cuda`), or use
/// the CPU only (`none`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuMode {
    #[default]
    Auto,
    Cuda,
    None,
}

/// Other stores where the user's own Ollama keeps models, most likely first: the user's
/// (`~/.ollama/models`) and the Linux service's.
pub fn candidate_stores(user_home: Option<&Path>) -> Vec<PathBuf> {
    let service = cfg!(target_os = "linux").then(|| "/usr/share/ollama/.ollama/models".into());
    let user = user_home.map(|home| home.join(".ollama").join("models"));
    user.into_iter().chain(service).collect()
}

/// Something to tell the user about their settings before the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Info(String),
    Warning(String),
}

/// What the run needs to know, resolved once.
#[derive(Clone, Debug)]
pub struct Settings {
    pub home: Home,
    pub model: String,
    /// True when the user chose the model (flag, variable or config.toml), not the default:
    /// on a team's server the default gives way to the gpt-oss it serves.
    pub model_chosen: bool,
    pub context_length: u32,
    pub bind: Bind,
    /// `CODEX_OSS_BASE_URL` (else `base_url` in config.toml): the user's own server; none
    /// is started.
    pub base_url: Option<String>,
    /// The variable holding that server's API key (`CODEX_OSS_API_KEY`, or `api_key_env`
    /// in config.toml), and the key it holds, if any.
    pub api_key: ApiKey,
    /// `CODEX_OSS_OLLAMA`, `CODEX_OSS_CODEX`: executables to run instead of the embedded.
    pub ollama: Option<PathBuf>,
    pub codex: Option<PathBuf>,
    pub pull_timeout: Duration,
    /// Other Ollama stores to take a missing model from (none with `CODEX_OSS_IMPORT=0`,
    /// or when `OLLAMA_MODELS` makes the user's store codex-oss's own).
    pub import_from: Vec<PathBuf>,
    /// Share the embedded server with other runs (`CODEX_OSS_SHARE=0`, `--no-share`: not).
    pub share: bool,
    /// `CODEX_OSS_GPU`: look for a GPU, take an NVIDIA one as found, or use the CPU only.
    pub gpu: GpuMode,
    /// `CODEX_OSS_PAYLOAD_MIRROR`: where the GPU libraries' archive is downloaded from
    /// instead of the release's base URL.
    pub payload_mirror: Option<String>,
    /// What the embedded server gets besides its address, store and context length: the
    /// user's `OLLAMA_*` settings and GPU choice (see `server_env`).
    pub server_env: BTreeMap<String, String>,
    pub notices: Vec<Notice>,
}

/// Everything `Settings::resolve` reads.
pub struct Inputs<'a> {
    pub env: &'a Env,
    /// The user's home directory, if there is one.
    pub user_home: Option<PathBuf>,
    /// Relative paths in variables are taken from here.
    pub cwd: PathBuf,
    /// config.toml's text; `None` when there is no such file.
    pub config: Option<&'a str>,
    /// Total memory in bytes.
    pub memory: u64,
    /// `-m`/`--model` given on the command line.
    pub model_flag: Option<String>,
}

impl Settings {
    /// How long the shared server stays after its last run ends: `OLLAMA_KEEP_ALIVE` as
    /// Ollama reads it (`envconfig.KeepAlive`: a Go duration such as `5m` or `1h30m`,
    /// else whole seconds; 5 minutes when it is neither; negative: for ever, `None`).
    /// Unset: not at all, the server stops with the last run.
    pub fn keep_alive(&self) -> Option<Duration> {
        const OLLAMA_DEFAULT: Duration = Duration::from_secs(5 * 60);
        let Some(text) = self.server_env.get(EnvVars::OLLAMA_KEEP_ALIVE) else {
            return Some(Duration::ZERO);
        };
        let text = text.trim().trim_matches(['"', '\'']);
        let nanos = go_duration_nanos(text).or_else(|| {
            text.parse::<i64>()
                .ok()
                .map(|s| i128::from(s) * 1_000_000_000)
        });
        match nanos {
            None => Some(OLLAMA_DEFAULT),
            Some(n) if n < 0 => None,
            Some(n) => Some(Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))),
        }
    }

    /// The settings of this process: its environment, config.toml and memory.
    pub fn load(model_flag: Option<String>) -> anyhow::Result<Settings> {
        // A variable whose name or value is not Unicode is none of ours: passed over
        // (`std::env::vars` would panic on it).
        let unicode =
            |(k, v): (OsString, OsString)| Some((k.into_string().ok()?, v.into_string().ok()?));
        let env = Env(std::env::vars_os().filter_map(unicode).collect());
        let cwd = std::env::current_dir()?;
        let user_home = dirs::home_dir();
        let root = home_root(&env, user_home.as_deref(), &cwd)?;
        let config_path = Home::config_path(&root);
        let config = match std::fs::read_to_string(&config_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => anyhow::bail!("could not read {}: {e}", config_path.display()),
        };
        Ok(Settings::resolve(&Inputs {
            env: &env,
            user_home,
            cwd,
            config: config.as_deref(),
            memory: total_memory(),
            model_flag,
        })?)
    }

    /// Resolves every setting from `inputs` alone.
    pub fn resolve(inputs: &Inputs<'_>) -> Result<Settings, SettingsError> {
        let env = inputs.env;
        let root = home_root(env, inputs.user_home.as_deref(), &inputs.cwd)?;
        let config = inputs
            .config
            .map(|text| ConfigFile::parse(&Home::config_path(&root), text))
            .transpose()?
            .unwrap_or_default();
        let models = env
            .get(EnvVars::OLLAMA_MODELS)
            .map(|dir| inputs.cwd.join(dir));
        let mut notices = Vec::new();
        let bind = bind(env, &mut notices)?;
        let log = env.get(EnvVars::CODEX_OSS_LOG);
        if let Some(filter) = log.filter(|f| tracing_subscriber::EnvFilter::try_new(f).is_err()) {
            notices.push(Notice::Warning(format!(
                "{}={filter} is not a log filter: use warn, info or debug",
                EnvVars::CODEX_OSS_LOG
            )));
        }
        let gpu = var(
            env,
            EnvVars::CODEX_OSS_GPU,
            |text| match text.trim().to_ascii_lowercase().as_str() {
                "auto" => Some(GpuMode::Auto),
                "cuda" => Some(GpuMode::Cuda),
                "none" => Some(GpuMode::None),
                _ => None,
            },
            ": expected auto (look for a GPU), cuda (use the NVIDIA GPU, fetching its libraries) or none (the CPU only)",
        )?
        .unwrap_or_default();
        let import = switch(
            env,
            EnvVars::CODEX_OSS_IMPORT,
            "import models from other Ollama stores",
        )?;
        let chosen_model = inputs
            .model_flag
            .clone()
            .or_else(|| env.get(EnvVars::CODEX_OSS_MODEL).map(str::to_owned))
            .or(config.model);
        Ok(Settings {
            // A user-set `OLLAMA_MODELS` is codex-oss's store already.
            import_from: if import && models.is_none() {
                candidate_stores(inputs.user_home.as_deref())
            } else {
                Vec::new()
            },
            home: Home::new(root, models),
            model_chosen: chosen_model.is_some(),
            model: chosen_model.unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
            context_length: context_length(env, config.context_length, inputs.memory)?,
            bind,
            base_url: base_url(env, config.base_url.as_deref())?,
            api_key: api_key(env, config.api_key_env)?,
            ollama: env.get(EnvVars::CODEX_OSS_OLLAMA).map(|p| inputs.cwd.join(p)),
            codex: env.get(EnvVars::CODEX_OSS_CODEX).map(|p| inputs.cwd.join(p)),
            pull_timeout: var(
                env,
                EnvVars::CODEX_OSS_PULL_TIMEOUT,
                |s| s.parse().ok().filter(|s| *s > 0).map(Duration::from_secs),
                ": expected a number of seconds such as 300",
            )?
            .unwrap_or(PULL_IDLE_TIMEOUT),
            share: switch(
                env,
                EnvVars::CODEX_OSS_SHARE,
                "share the embedded Ollama between runs",
            )?,
            gpu,
            server_env: server_env(env, gpu),
            payload_mirror: var(
                env,
                EnvVars::CODEX_OSS_PAYLOAD_MIRROR,
                |url| is_http_url(url).then(|| url.to_owned()),
                " is not an http URL: use the base URL the release assets are under, such as https://mirror.example.com/ollama/v0.32.15/, or unset it",
            )?,
            notices,
        })
    }
}

/// `CODEX_OSS_HOME`, else `~/.codex-oss`; a relative path is taken from `cwd`.
fn home_root(env: &Env, user_home: Option<&Path>, cwd: &Path) -> Result<PathBuf, SettingsError> {
    match env.get(EnvVars::CODEX_OSS_HOME) {
        Some(dir) => Ok(cwd.join(dir)),
        None => user_home.map(|home| home.join(".codex-oss")).ok_or_else(|| {
            SettingsError(format!(
                "cannot find your home directory: set {} to where codex-oss may keep its files, e.g. /var/tmp/codex-oss",
                EnvVars::CODEX_OSS_HOME
            ))
        }),
    }
}

/// The variable `name` as `read` takes it, when it is set; a value `read` refuses is an
/// error that shows the value and goes on with `expected`.
fn var<T>(
    env: &Env,
    name: &str,
    read: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, SettingsError> {
    env.get(name)
        .map(|value| read(value).ok_or_else(|| SettingsError(format!("{name}={value}{expected}"))))
        .transpose()
}

/// True for an http(s) URL with a host.
fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
}

/// `CODEX_OSS_HOST`, else `CODEX_OSS_PORT`, else a loopback `OLLAMA_HOST`: codex-oss's
/// own variables win over one that may be set for the user's own Ollama.
///
/// `OLLAMA_HOST` in a user's shell usually points their own Ollama client at a server
/// (`0.0.0.0`, another machine): as a bind address it would open the embedded server's
/// unauthenticated API to the network, so only a loopback one is taken.
fn bind(env: &Env, notices: &mut Vec<Notice>) -> Result<Bind, SettingsError> {
    if let Some(host) = env.get(EnvVars::CODEX_OSS_HOST) {
        if !is_loopback_host(host_of(host)) {
            notices.push(Notice::Warning(format!(
                "{}={host}: the embedded Ollama can be reached from other machines, and its API has no authentication",
                EnvVars::CODEX_OSS_HOST
            )));
        }
        return Ok(Bind::Host(host.to_owned()));
    }
    if let Some(port) = var(
        env,
        EnvVars::CODEX_OSS_PORT,
        |port| port.parse().ok().filter(|p| *p != 0),
        " is not a port number: use one from 1 to 65535 such as 11434, or unset it",
    )? {
        return Ok(Bind::Port(port));
    }
    if let Some(host) = env.get(EnvVars::OLLAMA_HOST) {
        if is_loopback_host(host_of(host)) {
            return Ok(Bind::OllamaHost(host.to_owned()));
        }
        notices.push(Notice::Info(format!(
            "ignoring {}={host}: the embedded Ollama listens on this machine only (set {} to bind it elsewhere)",
            EnvVars::OLLAMA_HOST,
            EnvVars::CODEX_OSS_HOST
        )));
    }
    Ok(Bind::Auto)
}

/// The variables of the user's that the embedded server runs with: every `OLLAMA_*`
/// but the ones codex-oss sets itself (address, store, context length) or keeps from it
/// (`OLLAMA_ORIGINS`), the GPU visibility variables Ollama reads, and the proxy its
/// pulls go through; `OLLAMA_NOPRUNE`
/// defaults to on, so that an interrupted pull resumes. With `CODEX_OSS_GPU=none` every
/// kind of GPU is hidden from Ollama (`-1`, as its GPU guide says).
fn server_env(env: &Env, gpu: GpuMode) -> BTreeMap<String, String> {
    const SET_BY_CODEX_OSS: [&str; 4] = [
        EnvVars::OLLAMA_HOST,
        EnvVars::OLLAMA_MODELS,
        EnvVars::OLLAMA_CONTEXT_LENGTH,
        EnvVars::OLLAMA_ORIGINS,
    ];
    let mut vars: BTreeMap<String, String> = env
        .vars()
        .filter(|(name, _)| {
            (name.starts_with("OLLAMA_") && !SET_BY_CODEX_OSS.contains(name))
                || EnvVars::GPU_VISIBILITY.contains(name)
                || EnvVars::SERVER_NETWORK.contains(name)
        })
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    vars.entry(EnvVars::OLLAMA_NOPRUNE.to_owned())
        .or_insert_with(|| "1".to_owned());
    if gpu == GpuMode::None {
        for name in EnvVars::GPU_HIDE {
            vars.insert(name.to_owned(), "-1".to_owned());
        }
    }
    vars
}

/// Go's `time.ParseDuration` in nanoseconds (`300ms`, `1.5h`, `1h30m`, `-1m`, `0`).
fn go_duration_nanos(text: &str) -> Option<i128> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit..];
    }
    #[allow(clippy::cast_possible_truncation, reason = "nanoseconds of a duration")]
    let nanos = total as i128;
    Some(if negative { -nanos } else { nanos })
}

/// `OLLAMA_CONTEXT_LENGTH`, else config.toml, else by memory.
fn context_length(env: &Env, config: Option<u32>, memory: u64) -> Result<u32, SettingsError> {
    let from_env = var(
        env,
        EnvVars::OLLAMA_CONTEXT_LENGTH,
        |value| value.parse().ok().filter(|n| *n >= SMALLEST_CONTEXT),
        &format!(": expected a number of tokens of at least {SMALLEST_CONTEXT}, such as 32768"),
    )?;
    match (from_env, config) {
        (None, Some(n)) if n < SMALLEST_CONTEXT => Err(SettingsError(format!(
            "context_length = {n} in config.toml: expected at least {SMALLEST_CONTEXT}, such as 32768"
        ))),
        (Some(n), _) | (None, Some(n)) => Ok(n),
        (None, None) if memory >= LARGE_CONTEXT_MEMORY => Ok(LARGE_CONTEXT),
        (None, None) => Ok(MIN_CONTEXT),
    }
}

/// `CODEX_OSS_BASE_URL`, else `base_url` in config.toml, checked to be an http(s) URL.
fn base_url(env: &Env, config: Option<&str>) -> Result<Option<String>, SettingsError> {
    let (url, name) = match (env.get(EnvVars::CODEX_OSS_BASE_URL), config) {
        (Some(url), _) => (url, format!("{}={url}", EnvVars::CODEX_OSS_BASE_URL)),
        (None, Some(url)) => (url, format!("base_url = \"{url}\" in config.toml")),
        (None, None) => return Ok(None),
    };
    if !is_http_url(url) {
        return Err(SettingsError(format!(
            "{name} is not an http URL: use the server's address such as http://127.0.0.1:11434/v1 or https://gpu-box.example:8000/v1, or unset it"
        )));
    }
    Ok(Some(url.to_owned()))
}

/// The API key of a team's server, kept out of `Debug` output so that no log line or
/// error message can carry it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKey {
    /// The variable that holds it (Codex reads it from there: `env_key`).
    pub var: String,
    value: Option<String>,
}

impl ApiKey {
    /// The key, for an `Authorization` header and nothing else.
    pub fn secret(&self) -> Option<&str> {
        self.value.as_deref()
    }

    pub fn is_set(&self) -> bool {
        self.value.is_some()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.is_set() { "set" } else { "unset" };
        write!(f, "ApiKey({} {state})", self.var)
    }
}

/// The variable named by `api_key_env` in config.toml (else `CODEX_OSS_API_KEY`), and its
/// value.
fn api_key(env: &Env, config: Option<String>) -> Result<ApiKey, SettingsError> {
    let var = config.unwrap_or_else(|| EnvVars::CODEX_OSS_API_KEY.to_owned());
    let valid = !var.is_empty()
        && !var.starts_with(|c: char| c.is_ascii_digit())
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(SettingsError(format!(
            "api_key_env = \"{var}\" in config.toml is not a variable name: name the variable that holds the key, such as TEAM_LLM_KEY"
        )));
    }
    Ok(ApiKey {
        value: env.get(&var).map(str::to_owned),
        var,
    })
}

/// A variable that turns something off with `0` (on by default, or with `1`).
fn switch(env: &Env, name: &str, what: &str) -> Result<bool, SettingsError> {
    match env.get(name) {
        None | Some("1") => Ok(true),
        Some("0") => Ok(false),
        Some(other) => Err(SettingsError(format!(
            "{name}={other}: expected 0 (do not {what}) or 1"
        ))),
    }
}

pub fn total_memory() -> u64 {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    system.total_memory()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    fn resolve_with(
        env: &Env,
        config: Option<&str>,
        memory: u64,
        flag: Option<&str>,
    ) -> Result<Settings, SettingsError> {
        Settings::resolve(&Inputs {
            env,
            user_home: Some(PathBuf::from("/home/u")),
            cwd: PathBuf::from("/work"),
            config,
            memory,
            model_flag: flag.map(str::to_owned),
        })
    }

    fn resolve<const N: usize>(env: [(&str, &str); N]) -> Result<Settings, SettingsError> {
        resolve_with(&Env::from(env), None, 16 * GIB, None)
    }

    #[test]
    fn defaults() {
        let s = resolve([]).unwrap();
        assert_eq!(s.home.root(), Path::new("/home/u/.codex-oss"));
        assert_eq!(s.home.models(), Path::new("/home/u/.codex-oss/models"));
        assert_eq!(s.model, "gpt-oss:20b");
        assert_eq!(s.context_length, 32_768);
        assert_eq!(s.bind, Bind::Auto);
        assert_eq!(s.base_url, None);
        assert_eq!((s.ollama, s.codex), (None, None));
        assert_eq!(s.pull_timeout, Duration::from_secs(300));
        assert_eq!(s.gpu, GpuMode::Auto);
        assert_eq!(s.payload_mirror, None);
        assert_eq!(
            s.import_from.first(),
            Some(&PathBuf::from("/home/u/.ollama/models"))
        );
        assert!(s.notices.is_empty());
        // 31.3 GiB: what a machine sold with 32 GB reports.
        for (memory, context) in [
            (32 * GIB, 65_536),
            (31 * GIB + 300 * 1024 * 1024, 65_536),
            (24 * GIB, 32_768),
        ] {
            let s = resolve_with(&Env::default(), None, memory, None).unwrap();
            assert_eq!(s.context_length, context, "{memory}");
        }
    }

    #[test]
    fn the_server_gets_the_users_ollama_settings_but_not_those_codex_oss_owns() {
        let s = resolve([
            ("OLLAMA_KEEP_ALIVE", "1h"),
            ("OLLAMA_FLASH_ATTENTION", "1"),
            ("OLLAMA_HOST", "0.0.0.0"),
            ("OLLAMA_ORIGINS", "*"),
            ("OLLAMA_MODELS", "/store"),
            ("OLLAMA_CONTEXT_LENGTH", "8192"),
            ("OLLAMA_DEBUG", ""),
            ("CUDA_VISIBLE_DEVICES", "1"),
            ("PATH", "/bin"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("LD_PRELOAD", "/x.so"),
            ("API_TOKEN", "secret"),
        ])
        .unwrap();
        let expected = [
            ("CUDA_VISIBLE_DEVICES", "1"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("OLLAMA_FLASH_ATTENTION", "1"),
            ("OLLAMA_KEEP_ALIVE", "1h"),
            ("OLLAMA_NOPRUNE", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(s.server_env, BTreeMap::from(expected));
        let s = resolve([("OLLAMA_NOPRUNE", "false")]).unwrap();
        assert_eq!(s.server_env["OLLAMA_NOPRUNE"], "false");
    }

    #[test]
    fn keep_alive_is_read_as_ollama_reads_it() {
        let keep = |value: Option<&str>| match value {
            Some(v) => resolve([("OLLAMA_KEEP_ALIVE", v)]).unwrap().keep_alive(),
            None => resolve([]).unwrap().keep_alive(),
        };
        let secs = |s: u64| Some(Some(Duration::from_secs(s)));
        for (value, expected) in [
            (None, secs(0)),
            (Some("0"), secs(0)),
            (Some("3s"), secs(3)),
            (Some("5m"), secs(300)),
            (Some("1h30m"), secs(5400)),
            (Some("1.5h"), secs(5400)),
            (Some("90"), secs(90)),
            (Some("-1"), Some(None)),
            (Some("-1m"), Some(None)),
            (Some("soon"), secs(300)),
            (Some("300ms"), Some(Some(Duration::from_millis(300)))),
        ] {
            assert_eq!(Some(keep(value)), expected, "{value:?}");
        }
    }

    #[test]
    fn gpu_none_hides_every_gpu_from_ollama() {
        let s = resolve([("CODEX_OSS_GPU", "none"), ("CUDA_VISIBLE_DEVICES", "0")]).unwrap();
        for name in EnvVars::GPU_HIDE {
            assert_eq!(s.server_env[name], "-1", "{name}");
        }
        let s = resolve([("CODEX_OSS_GPU", "auto")]).unwrap();
        assert!(!s.server_env.contains_key("CUDA_VISIBLE_DEVICES"));
    }

    #[test]
    fn every_variable_is_read() {
        let s = resolve([
            ("CODEX_OSS_HOME", "rel/home"),
            ("CODEX_OSS_MODEL", "gpt-oss:120b"),
            ("CODEX_OSS_PORT", "4242"),
            ("OLLAMA_MODELS", "/store"),
            ("OLLAMA_CONTEXT_LENGTH", "8192"),
            ("CODEX_OSS_BASE_URL", "http://127.0.0.1:11434/v1"),
            ("CODEX_OSS_OLLAMA", "bin/ollama"),
            ("CODEX_OSS_CODEX", "/opt/codex"),
            ("CODEX_OSS_PULL_TIMEOUT", "7"),
            ("CODEX_OSS_LOG", "debug"),
            ("CODEX_OSS_GPU", "cuda"),
            ("CODEX_OSS_PAYLOAD_MIRROR", "http://127.0.0.1:8080/assets/"),
        ])
        .unwrap();
        assert_eq!(s.home.root(), Path::new("/work/rel/home"));
        assert_eq!(s.home.models(), Path::new("/store"));
        assert_eq!(s.model, "gpt-oss:120b");
        assert_eq!(s.bind, Bind::Port(4242));
        assert_eq!(s.context_length, 8192);
        assert_eq!(s.base_url.as_deref(), Some("http://127.0.0.1:11434/v1"));
        assert_eq!(s.ollama.as_deref(), Some(Path::new("/work/bin/ollama")));
        assert_eq!(s.codex.as_deref(), Some(Path::new("/opt/codex")));
        assert_eq!(s.pull_timeout, Duration::from_secs(7));
        assert_eq!(s.gpu, GpuMode::Cuda);
        assert_eq!(
            s.payload_mirror.as_deref(),
            Some("http://127.0.0.1:8080/assets/")
        );
        assert!(
            s.import_from.is_empty(),
            "OLLAMA_MODELS is the user's store"
        );
        assert!(s.notices.is_empty(), "{:?}", s.notices);
        assert!(resolve([("CODEX_OSS_IMPORT", "0")])
            .unwrap()
            .import_from
            .is_empty());
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let s = resolve([
            ("CODEX_OSS_MODEL", ""),
            ("CODEX_OSS_PORT", ""),
            ("CODEX_OSS_HOME", ""),
        ])
        .unwrap();
        assert_eq!(s.model, "gpt-oss:20b");
        assert_eq!(s.bind, Bind::Auto);
        assert_eq!(s.home.root(), Path::new("/home/u/.codex-oss"));
    }

    #[test]
    fn precedence_is_flag_then_environment_then_config_then_default() {
        let config = "model = \"from-config\"\ncontext_length = 16384\n";
        let env = Env::from([
            ("CODEX_OSS_MODEL", "from-env"),
            ("OLLAMA_CONTEXT_LENGTH", "12288"),
        ]);
        let none = Env::default();
        for (env, config, flag, expected) in [
            (&env, Some(config), Some("from-flag"), ("from-flag", 12288)),
            (&env, Some(config), None, ("from-env", 12288)),
            (&none, Some(config), None, ("from-config", 16384)),
            (&none, None, None, ("gpt-oss:20b", 65_536)),
        ] {
            let s = resolve_with(env, config, 64 * GIB, flag).unwrap();
            assert_eq!((s.model.as_str(), s.context_length), expected);
        }
    }

    #[test]
    fn a_team_server_from_the_environment_or_config_toml_and_its_key() {
        let config = "base_url = \"https://gpu:8000/v1\"\napi_key_env = \"TEAM_LLM_KEY\"\n";
        let env = Env::from([("TEAM_LLM_KEY", "k-123"), ("CODEX_OSS_API_KEY", "other")]);
        let s = resolve_with(&env, Some(config), 0, None).unwrap();
        assert_eq!(s.base_url.as_deref(), Some("https://gpu:8000/v1"));
        assert_eq!(s.api_key.var, "TEAM_LLM_KEY");
        assert_eq!(s.api_key.secret(), Some("k-123"));
        assert!(
            !format!("{s:?}").contains("k-123"),
            "the key in Debug output"
        );
        assert!(!s.model_chosen);
        // The variable wins over config.toml; CODEX_OSS_API_KEY is the default variable.
        let env = Env::from([
            ("CODEX_OSS_BASE_URL", "http://10.0.0.2:8000"),
            ("CODEX_OSS_API_KEY", "k-9"),
        ]);
        let config = "base_url = \"https://gpu:8000/v1\"\n";
        let s = resolve_with(&env, Some(config), 0, Some("m")).unwrap();
        assert_eq!(s.base_url.as_deref(), Some("http://10.0.0.2:8000"));
        assert_eq!(
            (s.api_key.var.as_str(), s.api_key.secret()),
            ("CODEX_OSS_API_KEY", Some("k-9"))
        );
        assert!(s.model_chosen);
        let s = resolve([]).unwrap();
        assert!(!s.api_key.is_set());
        for (config, start) in [
            (
                "base_url = \"gpu:8000\"\n",
                "base_url = \"gpu:8000\" in config.toml is not an http URL",
            ),
            (
                "api_key_env = \"TEAM KEY\"\n",
                "api_key_env = \"TEAM KEY\" in config.toml is not a variable name",
            ),
        ] {
            let err = resolve_with(&Env::default(), Some(config), 0, None).expect_err(config);
            assert!(err.to_string().starts_with(start), "{err}");
        }
    }

    #[test]
    fn hosts_loopback_taken_others_ignored_explicit_warned() {
        let s = resolve([("OLLAMA_HOST", "127.0.0.2:9000")]).unwrap();
        assert_eq!(s.bind, Bind::OllamaHost("127.0.0.2:9000".into()));
        // codex-oss's own variable wins over one that may be meant for the user's Ollama.
        let s = resolve([("OLLAMA_HOST", "127.0.0.2:9000"), ("CODEX_OSS_PORT", "1")]).unwrap();
        assert_eq!(s.bind, Bind::Port(1));
        assert!(s.notices.is_empty());
        let s = resolve([("OLLAMA_HOST", "0.0.0.0"), ("CODEX_OSS_PORT", "4242")]).unwrap();
        assert_eq!(s.bind, Bind::Port(4242));
        assert!(s.notices.is_empty());
        let s = resolve([("OLLAMA_HOST", "0.0.0.0")]).unwrap();
        assert_eq!(s.bind, Bind::Auto);
        assert!(
            matches!(&s.notices[..], [Notice::Info(t)] if t.starts_with("ignoring OLLAMA_HOST=0.0.0.0") && t.contains("CODEX_OSS_HOST"))
        );
        let s = resolve([
            ("CODEX_OSS_HOST", "0.0.0.0:11434"),
            ("OLLAMA_HOST", "127.0.0.1:1"),
        ])
        .unwrap();
        assert_eq!(s.bind, Bind::Host("0.0.0.0:11434".into()));
        assert!(matches!(&s.notices[..], [Notice::Warning(t)] if t.contains("no authentication")));
        let s = resolve([("CODEX_OSS_HOST", "127.0.0.1:11434")]).unwrap();
        assert!(s.notices.is_empty());
        // No host before the port: Ollama listens on every interface, as for 0.0.0.0.
        for host in [":11434", "http://:11434", ":0"] {
            let s = resolve([("OLLAMA_HOST", host)]).unwrap();
            assert_eq!(s.bind, Bind::Auto, "{host}");
            assert!(
                matches!(&s.notices[..], [Notice::Info(t)] if t.starts_with(&format!("ignoring OLLAMA_HOST={host}:"))),
                "{host}: {:?}",
                s.notices
            );
            let s = resolve([("CODEX_OSS_HOST", host)]).unwrap();
            assert!(
                matches!(&s.notices[..], [Notice::Warning(t)] if t.contains("no authentication")),
                "{host}: {:?}",
                s.notices
            );
        }
    }

    #[test]
    fn bad_values_name_the_variable_and_a_valid_example() {
        let url = "http://127.0.0.1:11434/v1";
        for (env, example) in [
            (("CODEX_OSS_PORT", "abc"), "11434"),
            (("CODEX_OSS_PORT", "0"), "11434"),
            (("CODEX_OSS_PORT", "70000"), "11434"),
            (("OLLAMA_CONTEXT_LENGTH", "lots"), "32768"),
            (("OLLAMA_CONTEXT_LENGTH", "100"), "32768"),
            (("CODEX_OSS_BASE_URL", "127.0.0.1:11434"), url),
            (("CODEX_OSS_BASE_URL", "ftp://x/v1"), url),
            (("CODEX_OSS_PULL_TIMEOUT", "0"), "300"),
            (("CODEX_OSS_PULL_TIMEOUT", "soon"), "300"),
            (("CODEX_OSS_IMPORT", "no"), "expected 0"),
            (("CODEX_OSS_SHARE", "off"), "expected 0"),
            (("CODEX_OSS_GPU", "nvidia"), "expected auto"),
            (("CODEX_OSS_GPU", "yes"), "none (the CPU only)"),
            (("CODEX_OSS_PAYLOAD_MIRROR", "mirror.local"), "https://"),
            (
                ("CODEX_OSS_PAYLOAD_MIRROR", "file:///srv/assets"),
                "https://",
            ),
        ] {
            let message = resolve([env]).expect_err("a bad value").to_string();
            assert!(
                message.starts_with(&format!("{}={}", env.0, env.1)),
                "{message}"
            );
            assert!(message.contains(example), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        let s = resolve([("CODEX_OSS_LOG", "debug,[")]).unwrap();
        assert!(
            matches!(&s.notices[..], [Notice::Warning(t)] if t.starts_with("CODEX_OSS_LOG=debug,[") && t.contains("use warn, info or debug"))
        );
    }

    #[test]
    fn gpu_modes() {
        for (value, mode) in [
            ("auto", GpuMode::Auto),
            ("cuda", GpuMode::Cuda),
            ("none", GpuMode::None),
            ("CUDA", GpuMode::Cuda),
            ("", GpuMode::Auto),
        ] {
            assert_eq!(
                resolve([("CODEX_OSS_GPU", value)]).unwrap().gpu,
                mode,
                "{value}"
            );
        }
    }

    #[test]
    fn no_home_directory_says_what_to_set() {
        let err = Settings::resolve(&Inputs {
            env: &Env::default(),
            user_home: None,
            cwd: PathBuf::from("/"),
            config: None,
            memory: 0,
            model_flag: None,
        })
        .expect_err("no home");
        assert!(err.to_string().contains("set CODEX_OSS_HOME"), "{err}");
    }

    #[test]
    fn config_errors_name_the_file_line_column_and_what_was_expected() {
        let env = Env::default();
        let file = Path::new("/home/u").join(".codex-oss").join("config.toml");
        for (config, at, says) in [
            // A string for a number.
            (
                "model = \"a\"\ncontext_length = \"big\"\n",
                "2:18: ",
                &["expected"][..],
            ),
            // An unknown key.
            (
                "model = \"a\"\nmodle = \"b\"\n",
                "2:1: ",
                &["unknown field `modle`", "`model`", "`context_length`"],
            ),
            // No value.
            ("model = \n", "1:", &[]),
        ] {
            let text = resolve_with(&env, Some(config), 0, None)
                .expect_err(config)
                .to_string();
            assert!(
                text.starts_with(&format!("{}:{at}", file.display())),
                "{text}"
            );
            assert!(says.iter().all(|part| text.contains(part)), "{text}");
            assert!(!text.contains('\n'), "{text}");
        }
        let err =
            resolve_with(&env, Some("context_length = 10\n"), 0, None).expect_err("too small");
        assert!(err.to_string().contains("32768"), "{err}");
    }
}
