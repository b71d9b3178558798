//! HTTP to an Ollama server: clients that never send a loopback request through the
//! user's proxy, bodies read only up to a limit, and short reasons for failures.

use std::net::IpAddr;

use futures_util::StreamExt;

/// The most of an error body kept for a message.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A client builder for the server at `base_url` (`http://HOST:PORT[/...]`). A server on
/// this machine is reached directly: `HTTP_PROXY`/`ALL_PROXY`, set for the outside
/// world, would send every request to the proxy, which cannot reach our loopback. Plain
/// HTTP on this machine is `loopback_client_builder`'s.
pub fn client_builder(base_url: &str) -> reqwest::ClientBuilder {
    if !is_loopback_url(base_url) {
        return reqwest::Client::builder();
    }
    if base_url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        return loopback_client_builder();
    }
    reqwest::Client::builder().no_proxy()
}

/// A client builder for plain HTTP on this machine (Ollama, the relay): no proxy, and no
/// TLS, so none of the system's root certificates, which a client otherwise reads and
/// parses (hundreds of files) each time it is built, on the way to every Codex start.
pub fn loopback_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
}

/// True when the URL's host is this machine: a loopback address or `localhost`.
pub fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(is_loopback_host))
        .unwrap_or(false)
}

/// True for `localhost`, `127.0.0.0/8` and `::1` (bracketed or not). An empty host is
/// not: Ollama listens on every interface for `:11434` (see `host_of`).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host part of an `OLLAMA_HOST`-style address (`[scheme://]host[:port][/path]`),
/// read the way Ollama 0.32.15 reads it (`envconfig.Host`): without a port the whole
/// is the host, and nothing at all is 127.0.0.1; with a port, the host may be empty
/// (`:11434`, `http://:0`), which Ollama listens on as every interface.
pub fn host_of(address: &str) -> &str {
    let text = address.trim();
    let hostport = text.split_once("://").map_or(text, |(_, rest)| rest);
    let hostport = hostport.split('/').next().unwrap_or_default();
    match split_host_port(hostport) {
        Some((host, _port)) => host,
        None if hostport.is_empty() => "127.0.0.1",
        None => hostport.trim_start_matches('[').trim_end_matches(']'),
    }
}

/// Go's `net.SplitHostPort`: `host:port` or `[host]:port`, the port possibly empty;
/// None where Go returns an error (no port, or an IPv6 address without brackets).
fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = hostport.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    if host.contains(['[', ']']) || port.contains(['[', ']', ':']) {
        return None;
    }
    Some((host, port))
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
        // reqwest's words end in " for url (URL)", which the caller names already; what
        // went wrong is in the error beneath (the connection closed, a reset...).
        let mut text = err.to_string();
        if let Some(url) = err.url() {
            text = text.replace(&format!(" for url ({url})"), "");
        }
        let cause = root_cause(err);
        if !std::ptr::addr_eq(cause, err) {
            text = format!("{text}: {cause}");
        }
        text
    }
}

/// The innermost error beneath `err` (itself when there is none): what went wrong.
pub fn root_cause<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    std::iter::successors(Some(err), |e| e.source())
        .last()
        .unwrap_or(err)
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

    #[tokio::test]
    async fn a_request_the_server_drops_says_why_without_the_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/tags", listener.local_addr().unwrap());
        // Reads the request, then closes the connection without an answer.
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
        });
        let client = loopback_client_builder().build().unwrap();
        let err = client.get(&url).send().await.unwrap_err();
        let text = describe(&err);
        assert_eq!(
            text,
            "error sending request: connection closed before message completed"
        );
    }

    #[test]
    fn loopback_addresses_in_every_form() {
        for address in [
            "127.0.0.1:0",
            "127.0.0.2:11434",
            "localhost",
            "http://localhost:8080",
            "[::1]:11434",
            "[::1]",
            "::1",
            "http://127.0.0.1",
            "http://",
            "",
        ] {
            assert!(is_loopback_host(host_of(address)), "{address}");
        }
        for address in [
            "0.0.0.0",
            "0.0.0.0:0",
            "[::]:11434",
            // Ollama listens on every interface for an empty host.
            ":11434",
            ":0",
            "http://:11434",
            "https://:0/path",
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
