//! The relay between Codex and Ollama: a loopback HTTP server of the launcher's own, for
//! the one run, that passes every request and every answer through unchanged but one.
//!
//! Since 0.160 Codex sends its base instructions (and its skills, the user's AGENTS.md,
//! the sandbox rules) as `developer` messages in the `input` of `POST /v1/responses`.
//! Ollama 0.32.15 hands them to the model's template with that role
//! (`openai.FromResponsesRequest`), and gathers only `system` messages into the
//! template's `.System` (`template.collate`). gpt-oss's template renders `.System` under
//! `# Instructions` in the harmony `developer` block, where the model expects its
//! instructions, and renders no message of role `developer` at all: Codex's
//! instructions would never reach the model. The relay gives Ollama those messages as
//! `system` messages, which is exactly where gpt-oss takes them.
//!
//! Everything else (model list, version, pulls, the streamed answer) is passed through
//! as it comes, streamed, without buffering an answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Headers that belong to one connection, not to the request or answer they travel with.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
];

/// A running relay; it stops when dropped.
pub struct Relay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port and relays to `upstream` (`http://HOST:PORT`).
    pub async fn start(upstream: &str) -> Result<Relay> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("could not open a loopback port for Codex")?;
        let addr = listener.local_addr()?;
        // As the launcher's own requests to the server go (see `http::client_builder`).
        let client = crate::http::client_builder(upstream)
            .build()
            .context("could not set up the HTTP client")?;
        let upstream = upstream.trim_end_matches('/').to_owned();
        let task = tokio::spawn(accept(listener, client, upstream));
        Ok(Relay { addr, task })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, client: reqwest::Client, upstream: String) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::debug!("relay: accepting a connection failed: {err}");
                if let Some(pause) = pause_after(&err) {
                    tokio::time::sleep(pause).await;
                }
                continue;
            }
        };
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                relay(request, client.clone(), upstream.clone())
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                tracing::debug!("relay connection ended: {err}");
            }
        });
    }
}

/// How long to wait before accepting again after `err`: not at all when one connection
/// was lost before it was accepted; briefly for anything else, such as running out of
/// file descriptors (EMFILE), which would otherwise fail again at once and spin a core
/// (hyper's and axum's servers pause the same way).
fn pause_after(err: &std::io::Error) -> Option<Duration> {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::ConnectionAborted
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionRefused => None,
        _ => Some(ACCEPT_PAUSE),
    }
}

/// The pause after an accept error that may repeat (see `pause_after`).
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

type Body = BoxBody<Bytes, std::io::Error>;

/// One request through to Ollama and its answer back; a failure to reach Ollama is a 502
/// that says so (Codex shows it and retries as it would).
async fn relay(
    request: Request<Incoming>,
    client: reqwest::Client,
    upstream: String,
) -> Result<Response<Body>, Infallible> {
    Ok(match forward(request, &client, &upstream).await {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!("relay: {err:#}");
            let body = format!("{{\"error\":\"codex-oss could not reach Ollama: {err}\"}}");
            let body = Full::new(Bytes::from(body)).map_err(|never| match never {});
            let mut response = Response::new(body.boxed());
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    })
}

async fn forward(
    request: Request<Incoming>,
    client: &reqwest::Client,
    upstream: &str,
) -> Result<Response<Body>> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut bytes = body.collect().await?.to_bytes();
    if parts.method == hyper::Method::POST && parts.uri.path() == "/v1/responses" {
        if let Some(rewritten) = developer_as_system(&bytes) {
            bytes = Bytes::from(rewritten);
        }
    }
    let mut outgoing = client.request(parts.method, format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.body(bytes).send().await?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    let stream = answer
        .bytes_stream()
        .map_ok(Frame::data)
        .map_err(std::io::Error::other);
    Ok(response.body(BodyExt::boxed(StreamBody::new(stream)))?)
}

/// The request with every `developer` message of its `input` turned into a `system`
/// message; `None` when there is none (or the body is not JSON): sent as it came.
pub fn developer_as_system(body: &[u8]) -> Option<Vec<u8>> {
    let mut request: serde_json::Value = serde_json::from_slice(body).ok()?;
    let items = request.get_mut("input")?.as_array_mut()?;
    let mut changed = false;
    for item in items {
        let is_message = item
            .get("type")
            .is_none_or(|kind| kind.as_str() == Some("message"));
        if is_message && item.get("role").and_then(|r| r.as_str()) == Some("developer") {
            item["role"] = serde_json::Value::from("system");
            changed = true;
        }
    }
    changed.then(|| serde_json::to_vec(&request).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accept_error_that_would_repeat_pauses_the_loop() {
        use std::io::{Error, ErrorKind};
        // EMFILE: out of file descriptors, until a connection closes.
        for repeats in [
            Error::from_raw_os_error(24),
            Error::from(ErrorKind::OutOfMemory),
        ] {
            assert_eq!(pause_after(&repeats), Some(ACCEPT_PAUSE), "{repeats}");
        }
        for lost in [
            ErrorKind::ConnectionAborted,
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionRefused,
        ] {
            assert_eq!(pause_after(&Error::from(lost)), None, "{lost:?}");
        }
    }

    #[test]
    fn developer_messages_become_system_messages_and_nothing_else_changes() {
        let body = serde_json::json!({
            "model": "gpt-oss:20b",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "base"}]},
                {"role": "developer", "content": "skills"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "function_call_output", "call_id": "c", "output": "developer"},
            ],
            "tools": [],
        });
        let out = developer_as_system(&serde_json::to_vec(&body).unwrap()).unwrap();
        let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let roles: Vec<_> = out["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["role"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(roles, ["system", "system", "user", "-"]);
        assert_eq!(out["input"][0]["content"], body["input"][0]["content"]);
        assert_eq!(out["model"], "gpt-oss:20b");
    }

    #[test]
    fn a_request_without_developer_messages_goes_as_it_came() {
        let body = br#"{"input":[{"role":"user","content":"hi"}]}"#;
        assert!(developer_as_system(body).is_none());
        assert!(developer_as_system(b"not json").is_none());
        assert!(developer_as_system(br#"{"input":"plain text"}"#).is_none());
    }
}
