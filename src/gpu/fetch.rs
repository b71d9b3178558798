//! Downloads the release archive the GPU libraries come from: resumable (an HTTP Range
//! request picks up an interrupted download where it stopped, across runs), with a
//! progress bar like the model pull's, and checked against the SHA-256 compiled in.
//!
//! The partial file keeps its place (`<home>/gpu/<asset>.part`) until the archive is
//! complete and checked; a download that does not check out is deleted. A resume asks
//! for the rest only of the same file: `If-Range` carries the `ETag` (or Last-Modified)
//! the download began with, kept beside the partial file (`<asset>.part.validator`), so
//! a mirror whose file changed sends all of it again. A partial file the server does not
//! continue (416, or a 206 from another byte) is dropped and the download starts
//! afresh; a file of another size is not the archive and is dropped at once. The
//! internet is reached through the user's proxy (reqwest's default), a loopback mirror
//! directly (see `http`).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use super::GpuSource;
use crate::http::describe;

/// How long the download may go without a byte before it counts as stalled.
const IDLE: Duration = Duration::from_secs(60);

/// Why the archive could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Nothing or not all of it arrived (offline, a proxy, a dropped connection); what
    /// did arrive is kept for the next try.
    #[error("{0}")]
    Network(String),
    /// All of it arrived, and it is not the archive this codex-oss was built with.
    #[error(
        "the download is not the archive this codex-oss was built with (SHA-256 {got}, expected {expected}), so nothing was installed"
    )]
    Mismatch { got: String, expected: String },
    /// The server's file has another size: not the archive either.
    #[error(
        "the download is not the archive this codex-oss was built with ({got} bytes, expected {expected}), so nothing was installed"
    )]
    WrongSize { got: u64, expected: u64 },
    #[error("{0}")]
    Disk(String),
}

impl FetchError {
    /// True when what the server has is not the archive: trying again gets the same.
    pub fn is_wrong_file(&self) -> bool {
        matches!(
            self,
            FetchError::Mismatch { .. } | FetchError::WrongSize { .. }
        )
    }
}

/// Where the validator (`ETag` or Last-Modified) of a partial download is kept.
pub fn validator_path(part: &Path) -> std::path::PathBuf {
    let mut name = part.as_os_str().to_owned();
    name.push(".validator");
    name.into()
}

/// Downloads `url` into `part` (resuming what is there) until it holds `source`'s
/// archive, checked; returns the number of bytes this call downloaded.
pub async fn fetch(url: &str, part: &Path, source: &GpuSource) -> Result<u64, FetchError> {
    let disk = |e: io::Error| FetchError::Disk(format!("could not write {}: {e}", part.display()));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(disk)?;
    let mut have = file.metadata().map_err(disk)?.len();
    if have > source.bytes {
        drop_partial(&file, part).map_err(disk)?;
        have = 0;
    }
    let mut downloaded = 0;
    if have < source.bytes {
        downloaded = match download(url, &mut file, part, have, source).await {
            Ok(bytes) => bytes,
            Err(e) => {
                if e.is_wrong_file() {
                    let _ = std::fs::remove_file(part);
                }
                return Err(e);
            }
        };
    }
    check(&mut file, part, source)?;
    Ok(downloaded)
}

/// Empties the partial download and forgets its validator: the next bytes start afresh.
fn drop_partial(file: &File, part: &Path) -> io::Result<()> {
    match std::fs::remove_file(validator_path(part)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    file.set_len(0)
}

/// The whole file's hash against the pin; a file that does not match is deleted.
fn check(file: &mut File, part: &Path, source: &GpuSource) -> Result<(), FetchError> {
    let disk = |e: io::Error| FetchError::Disk(format!("could not read {}: {e}", part.display()));
    file.rewind().map_err(disk)?;
    let mut hasher = Sha256::new();
    io::copy(file, &mut hasher).map_err(disk)?;
    let got = crate::files::hex(&hasher.finalize());
    if got.eq_ignore_ascii_case(source.sha256) {
        return Ok(());
    }
    let _ = std::fs::remove_file(part);
    let _ = std::fs::remove_file(validator_path(part));
    Err(FetchError::Mismatch {
        got,
        expected: source.sha256.to_owned(),
    })
}

/// Appends the rest of the archive to `file`, which holds its first `have` bytes.
async fn download(
    url: &str,
    file: &mut File,
    part: &Path,
    mut have: u64,
    source: &GpuSource,
) -> Result<u64, FetchError> {
    let network = |what: String| FetchError::Network(what);
    let disk = |e: io::Error| FetchError::Disk(format!("could not write {}: {e}", part.display()));
    let client = crate::http::client_builder(url)
        .connect_timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| network(describe(&e)))?;
    let resp = loop {
        let mut request = client.get(url);
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
            if let Ok(validator) = std::fs::read_to_string(validator_path(part)) {
                request = request.header(reqwest::header::IF_RANGE, validator.trim());
            }
        }
        let resp = request
            .send()
            .await
            .map_err(|e| network(format!("cannot reach {url}: {}", describe(&e))))?;
        let code = resp.status().as_u16();
        match code {
            206 if range_start(&resp) == Some(have) => break resp,
            200 => {
                // All of it (no resuming here, or the file changed): start afresh.
                have = 0;
                drop_partial(file, part).map_err(disk)?;
                break resp;
            }
            // What is here is not the start of the server's file: drop it, ask for all.
            206 | 416 if have > 0 => {
                tracing::info!("{url} answered HTTP {code} to a resume: starting afresh");
                have = 0;
                drop_partial(file, part).map_err(disk)?;
            }
            code => return Err(network(format!("{url} answered HTTP {code}"))),
        }
    };
    if let Some(total) = total_size(&resp, have) {
        if total != source.bytes {
            drop_partial(file, part).map_err(disk)?;
            return Err(FetchError::WrongSize {
                got: total,
                expected: source.bytes,
            });
        }
    }
    if have == 0 {
        if let Some(validator) = validator_of(&resp) {
            std::fs::write(validator_path(part), validator).map_err(disk)?;
        }
    }
    file.seek(io::SeekFrom::Start(have))
        .map_err(|e| FetchError::Disk(e.to_string()))?;
    let mut progress = Progress::new(source, have);
    let mut stream = resp.bytes_stream();
    let start = have;
    while have < source.bytes {
        let chunk = match tokio::time::timeout(IDLE, stream.next()).await {
            Err(_) => {
                progress.abandon();
                return Err(network(format!(
                    "nothing arrived for {} s at {} of {}",
                    IDLE.as_secs(),
                    human(have),
                    human(source.bytes)
                )));
            }
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => {
                progress.abandon();
                return Err(network(format!(
                    "the download stopped at {} of {} ({})",
                    human(have),
                    human(source.bytes),
                    root_cause(&e)
                )));
            }
        };
        file.write_all(&chunk)
            .map_err(|e| FetchError::Disk(e.to_string()))?;
        have += chunk.len() as u64;
        progress.update(have);
    }
    file.sync_all()
        .map_err(|e| FetchError::Disk(e.to_string()))?;
    if have < source.bytes {
        progress.abandon();
        return Err(network(format!(
            "the download stopped at {} of {}",
            human(have),
            human(source.bytes)
        )));
    }
    progress.finish();
    Ok(have - start)
}

/// What broke a download, in the words of the lowest layer that says it ("connection
/// closed before message completed").
fn root_cause(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_owned();
    }
    let mut cause: &dyn std::error::Error = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The first byte of a 206 answer (`Content-Range: bytes 100-199/200`).
fn range_start(resp: &reqwest::Response) -> Option<u64> {
    let value = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    value
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The size of the whole file, as the answer gives it (`Content-Range: bytes 100-199/200`
/// for a part, `Content-Length` for all of it).
fn total_size(resp: &reqwest::Response, have: u64) -> Option<u64> {
    if resp.status().as_u16() == 206 {
        let value = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)?
            .to_str()
            .ok()?;
        return value.rsplit_once('/')?.1.trim().parse().ok();
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

/// `1.4 GB`, `8.4 MB`, `2.3 kB`.
pub fn human(bytes: u64) -> String {
    const GB: u64 = 1_000_000_000;
    const MB: u64 = 1_000_000;
    if bytes >= GB {
        format!("{:.1} GB", bytes as f64 / GB as f64)
    } else if bytes >= MB {
        format!("{:.1} MB", bytes as f64 / MB as f64)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}

/// A progress bar on a terminal, a line every 10% otherwise (as the model pull draws).
struct Progress {
    bar: Option<ProgressBar>,
    asset: String,
    total: u64,
    last_tenth: Option<u64>,
}

impl Progress {
    fn new(source: &GpuSource, have: u64) -> Progress {
        let bar = crate::ui::stderr_is_terminal().then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(source.bytes), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template"),
            );
            bar.set_message("fetching the CUDA libraries");
            bar.set_position(have);
            bar
        });
        let mut progress = Progress {
            bar,
            asset: source.asset.to_owned(),
            total: source.bytes.max(1),
            last_tenth: None,
        };
        progress.update(have);
        progress
    }

    fn update(&mut self, have: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(have);
            return;
        }
        let percent = have * 100 / self.total;
        if self.last_tenth.is_none_or(|last| percent / 10 > last) {
            self.last_tenth = Some(percent / 10);
            crate::ui::info(format!(
                "fetching {}: {percent}% of {}",
                self.asset,
                human(self.total)
            ));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_the_pull_says_them() {
        assert_eq!(human(1_422_416_084), "1.4 GB");
        assert_eq!(human(8_388_608), "8.4 MB");
        assert_eq!(human(2_345), "2.3 kB");
    }

    #[test]
    fn a_complete_file_of_another_hash_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("a.part");
        std::fs::write(&part, b"not the archive").unwrap();
        let source = GpuSource {
            asset: "a",
            sha256: "00",
            bytes: 15,
            base_url: "http://127.0.0.1:1/",
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = runtime
            .block_on(fetch("http://127.0.0.1:1/a", &part, &source))
            .unwrap_err();
        assert!(matches!(err, FetchError::Mismatch { .. }), "{err}");
        assert!(!part.exists());
    }
}
