//! HTTP to an Ollama server: clients that never send a loopback request through the
//! user's proxy, bodies read only up to a limit, and short reasons for failures.

use std::net::IpAddr;

use futures_util::StreamExt;

/// The most of an error body kept for a message.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A client builder for the server at `base_url` (`http://HOST:PORT[/...]`). A server on
/// this machine is reached directly: `HTTP_PROXY`/`ALL_PROXY`, set for the outside
/// world, would send every request to the proxy, which cannot reach our loopback.
pub fn client_builder(base_url: &str) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    if is_loopback_url(base_url) {
        builder.no_proxy()
    } else {
        builder
    }
}

/// True when the URL's host is this machine: a loopback address or `localhost`.
pub fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(is_loopback_host))
        .unwrap_or(false)
}

/// True for `localhost`, `127.0.0.0/8`, `::1` (bracketed or not), and an empty host,
/// which Ollama reads as 127.0.0.1.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host part of an `OLLAMA_HOST`-style address (`[scheme://]host[:port][/path]`),
/// read the way Ollama reads it.
pub fn host_of(address: &str) -> &str {
    let rest = address.trim();
    let rest = rest
        .strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))
        .unwrap_or(rest);
    let rest = rest.split('/').next().unwrap_or_default();
    if let Some(bracketed) = rest.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default();
    }
    match rest.rsplit_once(':') {
        Some((host, _port)) => host,
        None => rest,
    }
}

/// A short reason for a failed request, without reqwest's URL noise.
pub fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connection refused".to_owned()
    } else if err.is_decode() {
        "malformed reply".to_owned()
    } else {
        let mut text = err.to_string();
        if let Some(url) = err.url() {
            text = text
                .replace(&format!(" ({url})"), "")
                .replace(&format!(" for url ({url})"), "");
        }
        text
    }
}

/// The body of a response, read up to `limit` bytes (the rest is dropped unread), as
/// text.
pub async fn text_capped(resp: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_in_every_form() {
        for address in [
            "127.0.0.1:0",
            "127.0.0.2:11434",
            "localhost",
            "http://localhost:8080",
            "[::1]:11434",
            ":11434",
            "",
        ] {
            assert!(is_loopback_host(host_of(address)), "{address}");
        }
        for address in [
            "0.0.0.0",
            "0.0.0.0:0",
            "[::]:11434",
            "http://192.168.1.10:11434",
            "gpu-box:11434",
            "https://ollama.example.com",
        ] {
            assert!(!is_loopback_host(host_of(address)), "{address}");
        }
    }

    #[test]
    fn loopback_urls() {
        assert!(is_loopback_url("http://127.0.0.1:5/v1"));
        assert!(is_loopback_url("http://[::1]:5"));
        assert!(is_loopback_url("http://localhost:11434"));
        assert!(!is_loopback_url("http://10.0.0.2:11434"));
        assert!(!is_loopback_url("not a url"));
    }
}
