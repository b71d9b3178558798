//! A server the user points codex-oss at (`CODEX_OSS_BASE_URL`, or `base_url` in
//! config.toml): what answers there, and which of its models Codex gets.
//!
//! Two kinds of server answer. Ollama (on another machine, or the user's own) answers
//! `GET /api/version`; codex-oss then runs Codex with its built-in `ollama` provider, as
//! for the embedded server. Everything else a team serves gpt-oss with (vLLM, `SGLang`,
//! LM Studio, llama.cpp's `llama-server`) speaks `OpenAI`'s API: `GET /v1/models` lists
//! what it serves (vLLM and `SGLang` add `max_model_len`), `POST /v1/responses` streams.
//! Such a server usually wants a bearer token (`vllm serve --api-key`): the key is read
//! from the variable `ApiKey::var` names and sent only in an `Authorization` header here;
//! Codex reads the same variable itself (`env_key`), so the key is never on a command
//! line, in a file or in a message.
//!
//! Every failure is one line saying what to do: no key where one is wanted, a key
//! refused, nothing listening, a certificate the system does not trust (`SSL_CERT_FILE`
//! adds a team's own CA: the client trusts the system's roots), a server that speaks
//! neither API, a model it does not serve.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{ApiKey, Settings};

/// How long one request of the probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// What answers at the user's address.
#[derive(Debug)]
pub struct Remote {
    /// The address without a trailing `/` or `/v1`: `https://gpu-box:8000`.
    pub root: String,
    pub kind: Kind,
}

#[derive(Debug)]
pub enum Kind {
    Ollama { version: String },
    OpenAi(OpenAiServer),
}

/// An OpenAI-compatible server and what it serves.
#[derive(Debug, Clone)]
pub struct OpenAiServer {
    /// Who the models say they belong to (`owned_by`: "vllm", "sglang", ...).
    pub engine: Option<String>,
    /// The engine's version, where it says (vLLM's `GET /version`).
    pub version: Option<String>,
    pub models: Vec<Served>,
    /// True when a key was sent and accepted; false when the server wants none.
    pub key_accepted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Served {
    pub id: String,
    pub owned_by: Option<String>,
    /// The context window it is served with (vLLM, `SGLang`).
    pub max_model_len: Option<u32>,
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<Served>,
}

#[derive(Deserialize)]
struct Version {
    version: String,
}

/// Why a server cannot be used; each message ends with the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RemoteError {
    #[error("cannot reach the server at {url} ({reason}): check the address and that the server runs, or unset CODEX_OSS_BASE_URL to use the embedded Ollama")]
    Unreachable { url: String, reason: String },
    #[error("TLS failure talking to {url} ({reason}): if its certificate comes from your team's own CA, set SSL_CERT_FILE to that CA's certificate (a PEM file)")]
    Tls { url: String, reason: String },
    #[error(
        "the server at {url} wants an API key ({status}): set {var} to the key its admin gave you"
    )]
    NoKey {
        url: String,
        status: String,
        var: String,
    },
    #[error("the server at {url} refused the key in {var} ({status}): check the key with the server's admin")]
    KeyRefused {
        url: String,
        status: String,
        var: String,
    },
    #[error("{url} is neither Ollama nor an OpenAI-compatible server (GET /v1/models: {answer}): point CODEX_OSS_BASE_URL at the server's API, such as https://gpu-box.example:8000/v1")]
    NotOpenAi { url: String, answer: String },
    #[error("the server at {url} does not serve {model}; it serves {served}: choose one of those with -m (or CODEX_OSS_MODEL)")]
    ModelMissing {
        url: String,
        model: String,
        served: String,
    },
    #[error("the server at {url} serves no gpt-oss model (it serves {served}): choose one with -m (or CODEX_OSS_MODEL)")]
    NoGptOss { url: String, served: String },
}

/// The address without a trailing `/` or `/v1`.
pub fn root_of(url: &str) -> String {
    url.trim_end_matches('/')
        .trim_end_matches("/v1")
        .trim_end_matches('/')
        .to_owned()
}

/// Finds out what answers at `url`: Ollama, else an OpenAI-compatible server.
pub async fn probe(url: &str, key: &ApiKey) -> Result<Remote, RemoteError> {
    let root = root_of(url);
    let client = crate::http::client_builder(&root)
        .timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|err| RemoteError::Unreachable {
            url: url.to_owned(),
            reason: err.to_string(),
        })?;
    // Ollama's own API needs no key; a server in front of it may want one (then the
    // OpenAI probe below says so).
    let ollama = client
        .get(format!("{root}/api/version"))
        .send()
        .await
        .map_err(|e| failure(url, &e))?;
    if ollama.status().is_success() {
        // LM Studio answers unknown paths with 200 and an error object: only a version
        // makes it Ollama.
        if let Ok(Version { version }) = ollama.json::<Version>().await {
            return Ok(Remote {
                root,
                kind: Kind::Ollama { version },
            });
        }
    }
    let mut request = client.get(format!("{root}/v1/models"));
    if let Some(secret) = key.secret() {
        request = request.bearer_auth(secret);
    }
    let resp = request.send().await.map_err(|e| failure(url, &e))?;
    let status = resp.status();
    if matches!(status.as_u16(), 401 | 403) {
        let (url, status, var) = (url.to_owned(), status_text(status), key.var.clone());
        return Err(if key.is_set() {
            RemoteError::KeyRefused { url, status, var }
        } else {
            RemoteError::NoKey { url, status, var }
        });
    }
    let not_openai = |answer: String| RemoteError::NotOpenAi {
        url: url.to_owned(),
        answer,
    };
    if !status.is_success() {
        return Err(not_openai(status_text(status)));
    }
    let text = crate::http::text_capped(resp, 4 * 1024 * 1024).await;
    let list: ModelList = serde_json::from_str(&text)
        .map_err(|_| not_openai(format!("{}, but not a list of models", status_text(status))))?;
    let version = match client.get(format!("{root}/version")).send().await {
        Ok(resp) if resp.status().is_success() => {
            resp.json::<Version>().await.ok().map(|v| v.version)
        }
        _ => None,
    };
    Ok(Remote {
        root,
        kind: Kind::OpenAi(OpenAiServer {
            engine: list.data.iter().find_map(|m| m.owned_by.clone()),
            version,
            models: list.data,
            key_accepted: key.is_set(),
        }),
    })
}

/// `401 Unauthorized`.
fn status_text(status: reqwest::StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// A request that got no answer: a TLS failure, or nothing reachable.
fn failure(url: &str, err: &reqwest::Error) -> RemoteError {
    // The messages of the error's sources, outermost first.
    let causes: Vec<String> = std::iter::successors(std::error::Error::source(err), |c| c.source())
        .map(ToString::to_string)
        .collect();
    let tls = causes.iter().any(|c| {
        let c = c.to_ascii_lowercase();
        c.contains("certificate") || c.contains("tls") || c.contains("handshake")
    });
    if tls {
        return RemoteError::Tls {
            url: url.to_owned(),
            reason: causes.last().cloned().unwrap_or_default(),
        };
    }
    RemoteError::Unreachable {
        url: url.to_owned(),
        reason: crate::http::describe(err),
    }
}

impl OpenAiServer {
    /// The model Codex gets and the context window it is told: the user's choice when
    /// there is one (it must be served), else the served gpt-oss, the largest when
    /// several. The window is the server's `max_model_len`, else `settings.context_length`.
    pub fn choose(&self, url: &str, settings: &Settings) -> Result<(String, u32), RemoteError> {
        let ids: Vec<&str> = self.models.iter().map(|m| m.id.as_str()).collect();
        let served = || {
            if ids.is_empty() {
                "no model at all".to_owned()
            } else {
                ids.join(", ")
            }
        };
        let model = if settings.model_chosen {
            self.models
                .iter()
                .find(|m| m.id == settings.model)
                .ok_or_else(|| RemoteError::ModelMissing {
                    url: url.to_owned(),
                    model: settings.model.clone(),
                    served: served(),
                })?
        } else {
            self.models
                .iter()
                .filter(|m| crate::catalog::is_gpt_oss(&m.id))
                .max_by_key(|m| billions(&m.id))
                .ok_or_else(|| RemoteError::NoGptOss {
                    url: url.to_owned(),
                    served: served(),
                })?
        };
        Ok((
            model.id.clone(),
            model.max_model_len.unwrap_or(settings.context_length),
        ))
    }

    /// "vLLM 0.34.0", "sglang", or "an OpenAI-compatible server".
    pub fn describe(&self) -> String {
        let engine = match self.engine.as_deref() {
            Some("vllm") => "vLLM".to_owned(),
            Some("sglang") => "SGLang".to_owned(),
            Some(other) if !other.is_empty() => other.to_owned(),
            _ => "an OpenAI-compatible server".to_owned(),
        };
        match &self.version {
            Some(version) => format!("{engine} {version}"),
            None => engine,
        }
    }
}

/// The size in a model's name (`gpt-oss-120b`, `gpt-oss:20b`): 120, 20; 0 without one.
fn billions(id: &str) -> u32 {
    let name = id.rsplit('/').next().unwrap_or(id).to_ascii_lowercase();
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|part| part.strip_suffix('b')?.parse().ok())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(ids: &[(&str, Option<u32>)]) -> OpenAiServer {
        OpenAiServer {
            engine: Some("vllm".into()),
            version: None,
            models: ids
                .iter()
                .map(|(id, len)| Served {
                    id: (*id).to_owned(),
                    owned_by: Some("vllm".into()),
                    max_model_len: *len,
                })
                .collect(),
            key_accepted: true,
        }
    }

    fn settings(model: Option<&str>) -> Settings {
        Settings::resolve(&crate::settings::Inputs {
            env: &crate::settings::Env::default(),
            user_home: Some("/home/u".into()),
            cwd: "/w".into(),
            config: None,
            memory: 0,
            model_flag: model.map(str::to_owned),
        })
        .unwrap()
    }

    #[test]
    fn the_largest_served_gpt_oss_unless_the_user_chooses() {
        let server = served(&[
            ("qwen3-32b", Some(40_960)),
            ("gpt-oss-20b", Some(131_072)),
            ("openai/gpt-oss-120b", Some(65_536)),
        ]);
        assert_eq!(
            server.choose("u", &settings(None)).unwrap(),
            ("openai/gpt-oss-120b".to_owned(), 65_536)
        );
        assert_eq!(
            server.choose("u", &settings(Some("qwen3-32b"))).unwrap(),
            ("qwen3-32b".to_owned(), 40_960)
        );
        let missing = server.choose("u", &settings(Some("gpt-oss:20b")));
        assert!(
            matches!(&missing, Err(RemoteError::ModelMissing { served, .. }) if served == "qwen3-32b, gpt-oss-20b, openai/gpt-oss-120b"),
            "{missing:?}"
        );
    }

    #[test]
    fn no_max_model_len_means_the_usual_context() {
        let server = served(&[("gpt-oss:20b", None)]);
        assert_eq!(server.choose("u", &settings(None)).unwrap().1, 32_768);
        let none = served(&[("llama3", None)]).choose("u", &settings(None));
        assert!(
            matches!(none, Err(RemoteError::NoGptOss { .. })),
            "{none:?}"
        );
    }

    #[test]
    fn sizes_in_names() {
        assert_eq!(billions("openai/gpt-oss-120b"), 120);
        assert_eq!(billions("gpt-oss:20b"), 20);
        assert_eq!(billions("gpt-oss"), 0);
    }

    #[test]
    fn roots() {
        for url in [
            "https://gpu:8000/v1",
            "https://gpu:8000/v1/",
            "https://gpu:8000",
            "https://gpu:8000/",
        ] {
            assert_eq!(root_of(url), "https://gpu:8000", "{url}");
        }
    }
}
