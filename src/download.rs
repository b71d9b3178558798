//! Downloads one large file, resumably and checked: the GPU libraries' release archive and
//! `codex-oss update`'s archive come through here.
//!
//! The file grows in a partial file of the caller's choosing (`<asset>.part`) until it
//! is complete and its SHA-256 is the one expected; a download that does not check out
//! is deleted. An interrupted download is picked up where it stopped, across runs, by an
//! HTTP Range request, and only of the same file: `If-Range` carries the `ETag` (or
//! Last-Modified) the download began with, kept beside the partial file
//! (`<asset>.part.validator`), so a server whose file changed sends all of it again. A
//! partial file the server does not continue (416, or a 206 from another byte) is dropped
//! and the download starts afresh; a file of another size than expected (or over the
//! most accepted) is not the file and is dropped at once. The internet is reached through
//! the user's proxy (reqwest's default), a loopback server directly (see `http`); a
//! token in the caller's headers is not sent on to another host a redirect names.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};

use crate::http::describe;
use crate::ui::{human, Look, Progress};

/// How long the download may go without a byte before it counts as stalled.
const IDLE: Duration = Duration::from_secs(60);

/// What the file must be, and how its download shows.
pub struct Expected<'a> {
    /// The SHA-256 of the whole file (hex).
    pub sha256: &'a str,
    pub size: Size,
    /// What the file is, for the message when it is not ("the archive this codex-oss was
    /// built with").
    pub what: &'a str,
    /// The progress bar's message.
    pub bar: &'a str,
    /// Without a terminal, said every 10% (`fetching <asset>`: `fetching <asset>: 40% of
    /// 1.4 GB`); `None`: nothing.
    pub lines: Option<&'a str>,
    /// Headers every request carries besides Range and If-Range (an API's Accept, a token).
    pub headers: HeaderMap,
}

/// The file's size, as far as it is known before the download.
#[derive(Clone, Copy, Debug)]
pub enum Size {
    Exactly(u64),
    /// Not known: a server sending more than this is cut off (the update's archive).
    #[cfg_attr(not(feature = "self-update"), allow(dead_code))]
    AtMost(u64),
}

impl Size {
    fn limit(self) -> u64 {
        match self {
            Size::Exactly(bytes) | Size::AtMost(bytes) => bytes,
        }
    }

    fn exact(self) -> Option<u64> {
        match self {
            Size::Exactly(bytes) => Some(bytes),
            Size::AtMost(_) => None,
        }
    }
}

/// Why the file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server refused (404, 403, 500, ...); its headers tell a rate limit apart.
    #[error("{url} answered HTTP {code}")]
    Status {
        url: String,
        code: u16,
        headers: HeaderMap,
    },
    /// Nothing or not all of it arrived (offline, a proxy, a dropped connection); what
    /// did arrive is kept for the next try.
    #[error("{0}")]
    Network(String),
    /// All of it arrived, and it is not the file expected.
    #[error(
        "the download is not {what} (SHA-256 {got}, expected {expected}), so nothing was installed"
    )]
    Mismatch {
        what: String,
        got: String,
        expected: String,
    },
    /// The server's file has another size, or more than any such file holds: not the
    /// file either.
    #[error("the download is not {what} ({size}), so nothing was installed")]
    WrongSize { what: String, size: String },
    /// The partial file could not be written or read.
    #[error("could not {doing} {}: {error}", path.display())]
    Disk {
        doing: &'static str,
        path: PathBuf,
        error: io::Error,
    },
}

impl DownloadError {
    /// True when what the server has is not the file: trying again gets the same.
    pub fn is_wrong_file(&self) -> bool {
        matches!(
            self,
            DownloadError::Mismatch { .. } | DownloadError::WrongSize { .. }
        )
    }
}

/// Makes an error of `doing` (write, read) to the partial file.
fn disk<'a>(doing: &'static str, part: &'a Path) -> impl Fn(io::Error) -> DownloadError + 'a {
    move |error| DownloadError::Disk {
        doing,
        path: part.to_owned(),
        error,
    }
}

/// Where the validator (`ETag` or Last-Modified) of a partial download is kept.
pub fn validator_path(part: &Path) -> PathBuf {
    let mut name = part.as_os_str().to_owned();
    name.push(".validator");
    name.into()
}

/// Downloads `url` into `part` (resuming what is there) until it holds the file
/// `expected` describes, checked.
pub async fn fetch(url: &str, part: &Path, expected: &Expected<'_>) -> Result<(), DownloadError> {
    let disk = disk("write", part);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(&disk)?;
    let mut have = file.metadata().map_err(&disk)?.len();
    if have > expected.size.limit() {
        drop_partial(&file, part).map_err(&disk)?;
        have = 0;
    }
    let downloaded = if Some(have) == expected.size.exact() {
        Ok(())
    } else {
        download(url, &mut file, part, have, expected).await
    };
    let result = downloaded.and_then(|()| check(&mut file, part, expected));
    if result.as_ref().is_err_and(DownloadError::is_wrong_file) {
        let _ = std::fs::remove_file(part);
        let _ = std::fs::remove_file(validator_path(part));
    }
    result
}

/// Empties the partial download and forgets its validator: the next bytes start afresh.
fn drop_partial(file: &File, part: &Path) -> io::Result<()> {
    match std::fs::remove_file(validator_path(part)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    file.set_len(0)
}

/// The whole file's hash against the one expected.
fn check(file: &mut File, part: &Path, expected: &Expected<'_>) -> Result<(), DownloadError> {
    let disk = disk("read", part);
    file.rewind().map_err(&disk)?;
    let mut hasher = Sha256::new();
    io::copy(file, &mut hasher).map_err(&disk)?;
    let got = crate::files::hex(&hasher.finalize());
    if got.eq_ignore_ascii_case(expected.sha256) {
        return Ok(());
    }
    Err(DownloadError::Mismatch {
        what: expected.what.to_owned(),
        got,
        expected: expected.sha256.to_owned(),
    })
}

/// How the server answered a request for the rest of the file.
enum Answer {
    /// The bytes from `have` on (`have` is 0 when they are all of it).
    Body(reqwest::Response, u64),
    /// The server has no more: the partial file may be all of it.
    Complete,
}

/// Appends the rest of the file to `file`, which holds its first `have` bytes.
async fn download(
    url: &str,
    file: &mut File,
    part: &Path,
    have: u64,
    expected: &Expected<'_>,
) -> Result<(), DownloadError> {
    let disk = disk("write", part);
    let Answer::Body(resp, mut have) = request(url, file, part, have, expected).await? else {
        return Ok(());
    };
    let told = total_size(&resp, have);
    if let Some(told) = told {
        if let Some(size) = expected.size.exact().filter(|&size| size != told) {
            drop_partial(file, part).map_err(&disk)?;
            return Err(DownloadError::WrongSize {
                what: expected.what.to_owned(),
                size: format!("{told} bytes, expected {size}"),
            });
        }
        if told > expected.size.limit() {
            return Err(too_large(expected));
        }
    }
    let total = told.or(expected.size.exact());
    if have == 0 {
        if let Some(validator) = validator_of(&resp) {
            std::fs::write(validator_path(part), validator).map_err(&disk)?;
        }
    }
    file.seek(io::SeekFrom::Start(have)).map_err(&disk)?;
    let mut progress = Progress::new(Look::Transfer, total, expected.bar.to_owned());
    let say = |progress: &mut Progress, have: u64| {
        progress.set_position(have);
        if let (Some(what), Some(total)) = (expected.lines, total) {
            progress.tenth("", what, have, total);
        }
    };
    say(&mut progress, have);
    let of = |have: u64| match total {
        Some(total) => format!("{} of {}", human(have), human(total)),
        None => human(have),
    };
    let mut stream = resp.bytes_stream();
    while total.is_none_or(|total| have < total) {
        let chunk = match tokio::time::timeout(IDLE, stream.next()).await {
            Err(_) => {
                return Err(DownloadError::Network(format!(
                    "nothing arrived for {} s at {}",
                    IDLE.as_secs(),
                    of(have)
                )));
            }
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => {
                return Err(DownloadError::Network(format!(
                    "the download stopped at {} ({})",
                    of(have),
                    root_cause(&e)
                )));
            }
        };
        file.write_all(&chunk).map_err(&disk)?;
        have += chunk.len() as u64;
        if have > expected.size.limit() {
            return Err(too_large(expected));
        }
        say(&mut progress, have);
    }
    file.sync_all().map_err(&disk)?;
    if total.is_some_and(|total| have < total) {
        return Err(DownloadError::Network(format!(
            "the download stopped at {}",
            of(have)
        )));
    }
    progress.finish();
    Ok(())
}

fn too_large(expected: &Expected<'_>) -> DownloadError {
    DownloadError::WrongSize {
        what: expected.what.to_owned(),
        size: format!("over {} bytes", expected.size.limit()),
    }
}

/// Asks for the file from byte `have` on (the validator saying of which version), and
/// again for all of it when the server will not continue the partial file.
async fn request(
    url: &str,
    file: &File,
    part: &Path,
    mut have: u64,
    expected: &Expected<'_>,
) -> Result<Answer, DownloadError> {
    let disk = disk("write", part);
    let client = crate::http::client_builder(url)
        .connect_timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| DownloadError::Network(describe(&e)))?;
    loop {
        let mut request = client.get(url).headers(expected.headers.clone());
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
            if let Ok(validator) = std::fs::read_to_string(validator_path(part)) {
                request = request.header(reqwest::header::IF_RANGE, validator.trim());
            }
        }
        let resp = request
            .send()
            .await
            .map_err(|e| DownloadError::Network(format!("cannot reach {url}: {}", describe(&e))))?;
        let code = resp.status().as_u16();
        match code {
            206 if range_start(&resp) == Some(have) => return Ok(Answer::Body(resp, have)),
            200 => {
                // All of it (no resuming here, or the file changed): start afresh.
                drop_partial(file, part).map_err(&disk)?;
                return Ok(Answer::Body(resp, 0));
            }
            // Nothing after `have`, of a file of `have` bytes: the hash check tells.
            416 if have > 0 && unsatisfied_size(&resp) == Some(have) => {
                return Ok(Answer::Complete)
            }
            // What is here is not the start of the server's file: drop it, ask for all.
            206 | 416 if have > 0 => {
                tracing::info!("{url} answered HTTP {code} to a resume: starting afresh");
                have = 0;
                drop_partial(file, part).map_err(&disk)?;
            }
            code => {
                return Err(DownloadError::Status {
                    url: url.to_owned(),
                    code,
                    headers: resp.headers().clone(),
                })
            }
        }
    }
}

/// What broke a download, in the words of the lowest layer that says it ("connection
/// closed before message completed").
fn root_cause(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_owned();
    }
    crate::http::root_cause(err).to_string()
}

fn content_range(resp: &reqwest::Response) -> Option<&str> {
    resp.headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()
}

/// The first byte of a 206 answer (`Content-Range: bytes 100-199/200`).
fn range_start(resp: &reqwest::Response) -> Option<u64> {
    content_range(resp)?
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The size of the file a 416 answer gives (`Content-Range: bytes */200`).
fn unsatisfied_size(resp: &reqwest::Response) -> Option<u64> {
    content_range(resp)?
        .strip_prefix("bytes */")?
        .trim()
        .parse()
        .ok()
}

/// The size of the whole file, as the answer gives it (`Content-Range: bytes 100-199/200`
/// for a part, `Content-Length` for all of it).
fn total_size(resp: &reqwest::Response, have: u64) -> Option<u64> {
    if resp.status().as_u16() == 206 {
        return content_range(resp)?.rsplit_once('/')?.1.trim().parse().ok();
    }
    resp.content_length().map(|len| len + have)
}

/// What identifies this version of the file for `If-Range`: a strong `ETag`, else the
/// Last-Modified date (a weak `ETag` may not be used there).
fn validator_of(resp: &reqwest::Response) -> Option<String> {
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    header(reqwest::header::ETAG)
        .filter(|tag| !tag.starts_with("W/"))
        .or_else(|| header(reqwest::header::LAST_MODIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(size: Size) -> Expected<'static> {
        Expected {
            sha256: "00",
            size,
            what: "the file",
            bar: "fetching a",
            lines: None,
            headers: HeaderMap::new(),
        }
    }

    #[tokio::test]
    async fn a_complete_file_of_another_hash_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("a.part");
        std::fs::write(&part, b"not the archive").unwrap();
        let err = fetch("http://127.0.0.1:1/a", &part, &expected(Size::Exactly(15)))
            .await
            .unwrap_err();
        assert!(matches!(err, DownloadError::Mismatch { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with("the download is not the file (SHA-256 "));
        assert!(!part.exists());
    }

    #[tokio::test]
    async fn a_partial_file_over_the_limit_is_dropped_before_asking() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("a.part");
        std::fs::write(&part, b"more than four").unwrap();
        std::fs::write(validator_path(&part), "\"etag\"").unwrap();
        let err = fetch("http://127.0.0.1:1/a", &part, &expected(Size::AtMost(4)))
            .await
            .unwrap_err();
        // Nothing listens there: the network failed, after the partial file was emptied.
        assert!(matches!(err, DownloadError::Network(_)), "{err}");
        assert_eq!(std::fs::metadata(&part).unwrap().len(), 0);
        assert!(!validator_path(&part).exists());
    }
}
