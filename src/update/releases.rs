//! The releases: found through GitHub's releases API (`self_update`'s GitHub backend, at
//! `CODEX_OSS_UPDATE_API_URL` when set), downloaded (the small files with `self_update`'s
//! downloader, the archive with `download`, checked against its published SHA-256 as it
//! arrives), and verified (`verify`) before anything else reads them.
//!
//! A token (`CODEX_OSS_GITHUB_TOKEN`, else `GITHUB_TOKEN`) raises GitHub's rate limit. It
//! goes to the API server only: `self_update` attaches it to the release listing only for
//! that host (over https, or plain http on loopback), and the asset downloads here do the
//! same; redirects (GitHub sends assets from another host) never carry it.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Result};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use self_update::ReleaseAsset;
use serde::Deserialize;

use super::verify::{self, Subject};
use crate::download::{self, DownloadError};
use crate::env_vars::EnvVars;

/// Where releases are looked for: a server with GitHub's releases API.
pub const API_URL_VAR: &str = EnvVars::CODEX_OSS_UPDATE_API_URL;
/// GitHub's own API.
const DEFAULT_API_URL: &str = "https://api.github.com";
/// Tokens for that server, in order of preference.
const TOKEN_VARS: [&str; 2] = [EnvVars::CODEX_OSS_GITHUB_TOKEN, EnvVars::GITHUB_TOKEN];
/// The signed manifest each release publishes.
pub const MANIFEST: &str = "codex-oss-manifest.json";
/// How long one request for release metadata or a small file may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Large enough for any codex-oss archive; a server streaming without end is cut off.
const MAX_ARCHIVE_BYTES: u64 = 4 << 30;
/// Large enough for a signature, a checksum or the manifest.
const MAX_SMALL_BYTES: u64 = 1 << 20;

/// `codex-oss-<target>.tar.xz`, or `.zip` on Windows: what cargo-dist publishes.
pub fn archive_name() -> String {
    let ext = if cfg!(windows) { "zip" } else { "tar.xz" };
    format!("codex-oss-{}.{ext}", self_update::get_target())
}

/// The server and repository releases come from.
#[derive(Debug)]
pub struct Source {
    api: String,
    owner: String,
    repo: String,
    token: Option<Token>,
}

#[derive(Debug)]
struct Token {
    var: &'static str,
    value: String,
}

/// One release: its version and its files.
#[derive(Debug)]
pub struct Release {
    pub version: semver::Version,
    assets: Vec<ReleaseAsset>,
}

/// What a release says it embeds (`codex-oss-manifest.json`).
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub version: String,
    pub ollama: Option<String>,
    pub codex: Option<String>,
}

impl Manifest {
    /// `Ollama X, Codex Y`.
    pub fn describe(&self) -> String {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_owned());
        format!(
            "Ollama {}, Codex {}",
            or_none(&self.ollama),
            or_none(&self.codex)
        )
    }
}

/// What a request was for, to say what went wrong with it.
#[derive(Clone, Copy)]
enum Asked<'a> {
    Latest,
    Version(&'a semver::Version),
    File(&'a str),
}

impl Source {
    /// The server `CODEX_OSS_UPDATE_API_URL` names (default GitHub's API), the repository
    /// Cargo.toml names, and a token from the environment.
    pub fn from_env() -> Result<Source> {
        let api = std::env::var(API_URL_VAR)
            .ok()
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        if !(api.starts_with("https://") || api.starts_with("http://")) {
            bail!(
                "{API_URL_VAR}={api} is not an http(s) URL: set it to a server with GitHub's releases API (the default is {DEFAULT_API_URL}) or unset it"
            );
        }
        let (owner, repo) = repository(env!("CARGO_PKG_REPOSITORY"))
            .expect("Cargo.toml's repository is a GitHub repository URL");
        let token = TOKEN_VARS.iter().find_map(|&var| {
            let value = std::env::var(var).ok()?.trim().to_owned();
            (!value.is_empty()).then_some(Token { var, value })
        });
        Ok(Source {
            api,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            token,
        })
    }

    fn client(&self) -> Result<self_update::backends::github::Update> {
        let mut builder = self_update::backends::github::Update::configure();
        builder
            .repo_owner(self.owner.as_str())
            .repo_name(self.repo.as_str())
            .api_base_url(self.api.as_str())
            .bin_name("codex-oss")
            .current_version(super::CURRENT_VERSION)
            .timeout(REQUEST_TIMEOUT);
        if let Some(token) = &self.token {
            builder.auth_token(token.value.as_str());
        }
        builder
            .build()
            .map_err(|e| anyhow!("could not set up the release check: {e}"))
    }

    /// The newest release (GitHub's "latest": not a draft, not a pre-release).
    pub fn latest(&self) -> Result<Release> {
        let releases = self
            .client()?
            .get_latest_release()
            .map_err(|e| self.explain(&e, Asked::Latest))?;
        let release = releases.latest().ok_or_else(|| {
            anyhow!(
                "{} has no published release of {}/{}: check {API_URL_VAR}, or see {}",
                self.api,
                self.owner,
                self.repo,
                super::releases_page()
            )
        })?;
        Release::from(release)
    }

    /// The release of `version` (tag `v<version>`, as cargo-dist's workflow tags them).
    pub fn release(&self, version: &semver::Version) -> Result<Release> {
        let release = self
            .client()?
            .get_release_version(&format!("v{version}"))
            .map_err(|e| self.explain(&e, Asked::Version(version)))?;
        Release::from(&release)
    }

    /// The release's manifest, verified; `None` when the release publishes none.
    pub fn manifest(&self, release: &Release) -> Result<Option<Manifest>> {
        let Some(asset) = release.asset(MANIFEST) else {
            return Ok(None);
        };
        let version = release.version.to_string();
        let signature = self.text_of(release, &format!("{MANIFEST}.minisig"), "signature")?;
        let bytes = self.fetch_small(asset)?;
        let subject = Subject {
            file: MANIFEST,
            version: &version,
        };
        verify::check(bytes.as_slice(), subject, &signature)?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow!(
                "the signed {MANIFEST} of codex-oss {version} does not parse ({e}): report it at {}",
                super::issues_page()
            )
        })?;
        if manifest.version != version {
            bail!(
                "the signed {MANIFEST} of codex-oss {version} describes codex-oss {}: report it at {}",
                manifest.version,
                super::issues_page()
            );
        }
        Ok(Some(manifest))
    }

    /// Downloads this target's archive of `release` into `dir` and verifies it (checksum,
    /// then signature); returns its path. Nothing is extracted here.
    pub fn download_verified(&self, release: &Release, dir: &Path) -> Result<PathBuf> {
        let name = archive_name();
        let version = release.version.to_string();
        let asset = release.asset(&name).ok_or_else(|| {
            anyhow!(
                "codex-oss {version} has no archive for this system ({name}): nothing was installed: see {} for the systems it supports",
                super::releases_page()
            )
        })?;
        // The small files first: a release without them is refused before the large download.
        let signature = self.text_of(release, &format!("{name}.minisig"), "signature")?;
        let sha256 = self.text_of(release, &format!("{name}.sha256"), "checksum")?;

        let subject = Subject {
            file: &name,
            version: &version,
        };
        let sha256 = verify::published_sha256(&sha256, subject)?;

        let path = dir.join(&name);
        say!("downloading codex-oss {version} ({name})");
        // `download`: hash-checked against `sha256`, at most `MAX_ARCHIVE_BYTES`, with a
        // progress bar on a terminal. The command runs outside any async runtime: the
        // download gets one of its own.
        let url = asset.download_url();
        let bar = format!("downloading codex-oss {version}");
        let expected = download::Expected {
            sha256: &sha256,
            size: download::Size::AtMost(MAX_ARCHIVE_BYTES),
            what: &name,
            bar: &bar,
            lines: None,
            headers: self.headers(url)?,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow!("could not start the download ({e}): nothing was installed: run `codex-oss update` again"))?;
        runtime
            .block_on(download::fetch(url, &path, &expected))
            .map_err(|e| self.explain_download(&e, subject))?;
        let file = File::open(&path).map_err(|e| unreadable(&path, &e))?;
        // The download checked the SHA-256 already: this pass is the signature's.
        verify::check(BufReader::new(file), subject, &signature)?;
        Ok(path)
    }

    /// A small text file of the release (a signature, a checksum), which must be there.
    fn text_of(&self, release: &Release, name: &str, what: &str) -> Result<String> {
        let asset = release.asset(name).ok_or_else(|| {
            anyhow!(
                "codex-oss {} publishes no {what} {name}: nothing was installed: codex-oss installs only releases whose files are signed; report it at {}",
                release.version,
                super::issues_page()
            )
        })?;
        let bytes = self.fetch_small(asset)?;
        String::from_utf8(bytes).map_err(|_| {
            anyhow!(
                "{name} of codex-oss {} is not text: nothing was installed: report it at {}",
                release.version,
                super::issues_page()
            )
        })
    }

    fn fetch_small(&self, asset: &ReleaseAsset) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self_update::Download::from_url(asset.download_url())
            .replace_headers(self.headers(asset.download_url())?)
            .max_download_size(MAX_SMALL_BYTES)
            .timeout(REQUEST_TIMEOUT)
            .download_to(&mut bytes)
            .map_err(|e| self.explain(&e, Asked::File(asset.name())))?;
        Ok(bytes)
    }

    /// The headers of a request for an asset's content (GitHub's API sends it for this
    /// Accept header), with the token when the URL is the API server's.
    fn headers(&self, url: &str) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/octet-stream"));
        if let Some(token) = self.token.as_ref().filter(|_| self.may_authorize(url)) {
            let value = HeaderValue::from_str(&format!("token {}", token.value))
                .map_err(|_| anyhow!("{} holds no valid token: check or unset it", token.var))?;
            headers.insert(AUTHORIZATION, value);
        }
        Ok(headers)
    }

    /// True when `url` is on the API server, over https (or plain http on loopback).
    fn may_authorize(&self, url: &str) -> bool {
        let (Some(server), Some(target)) = (authority_of(&self.api), authority_of(url)) else {
            return false;
        };
        let loopback = matches!(target.0.as_str(), "localhost" | "127.0.0.1" | "::1");
        server == target && (url.starts_with("https://") || loopback)
    }

    /// One line saying what went wrong with a request of `self_update`'s, and what to do.
    fn explain(&self, err: &self_update::Error, asked: Asked<'_>) -> anyhow::Error {
        use self_update::Error as E;
        let failure = match err {
            E::RateLimited { reset_at, .. } => Failure::RateLimited(*reset_at),
            E::NotFound { .. } => Failure::NotFound,
            E::Unauthorized { status, .. } => Failure::Unauthorized(*status),
            E::HttpStatus { status, .. } => Failure::Status(*status),
            E::InvalidResponse { .. } | E::Json(_) | E::MissingAssetField { .. } | E::SemVer(_) => {
                Failure::NotTheApi
            }
            _ => Failure::Other,
        };
        self.say(failure, err.url().unwrap_or(&self.api), err, asked)
    }

    /// One line saying what went wrong with the archive's download, and what to do.
    fn explain_download(&self, err: &DownloadError, subject: Subject<'_>) -> anyhow::Error {
        let asked = Asked::File(subject.file);
        match err {
            DownloadError::Status { url, code, headers } => {
                self.say(status_failure(*code, headers), url, err, asked)
            }
            DownloadError::Mismatch { got, expected, .. } => verify::Refused::Checksum {
                file: subject.file.to_owned(),
                version: subject.version.to_owned(),
                expected: expected.clone(),
                actual: got.clone(),
            }
            .into(),
            DownloadError::Disk { doing: "read", path, error } => unreadable(path, error),
            DownloadError::Disk { path, error, .. } => anyhow!(
                "could not write {} ({error}): free some space in the temporary folder, or point TMPDIR elsewhere",
                path.display()
            ),
            DownloadError::Network(_) | DownloadError::WrongSize { .. } => {
                self.say(Failure::Other, &self.api, err, asked)
            }
        }
    }

    /// One line saying what `failure` (of a request to `url`, `err` in its own words)
    /// means for what was `asked`, and what to do.
    fn say(
        &self,
        failure: Failure,
        url: &str,
        err: &dyn std::fmt::Display,
        asked: Asked<'_>,
    ) -> anyhow::Error {
        let nothing = match asked {
            Asked::File(_) => "nothing was installed: ",
            Asked::Latest | Asked::Version(_) => "",
        };
        match (failure, asked) {
            (Failure::RateLimited(reset_at), _) => {
                let when = reset_at
                    .and_then(|at| at.duration_since(SystemTime::now()).ok())
                    .map(|wait| format!(" (it resets in about {} minutes)", wait.as_secs() / 60 + 1))
                    .unwrap_or_default();
                match &self.token {
                    Some(token) => anyhow!(
                        "{url} refused the request: the API rate limit of the token in {} is used up{when}; {nothing}try again later",
                        token.var
                    ),
                    None => anyhow!(
                        "{url} refused the request: GitHub's API rate limit for this address is used up{when}; {nothing}try again later, or set GITHUB_TOKEN (or CODEX_OSS_GITHUB_TOKEN) to a GitHub token, which has a higher limit and needs no scopes"
                    ),
                }
            }
            (Failure::NotFound, Asked::Latest) => anyhow!(
                "{url} answered 404: {}/{} has no published release there; check {API_URL_VAR}, or see {}",
                self.owner,
                self.repo,
                super::releases_page()
            ),
            (Failure::NotFound, Asked::Version(version)) => anyhow!(
                "there is no codex-oss {version} ({url} answered 404): see {} for the versions there are",
                super::releases_page()
            ),
            (Failure::NotFound, Asked::File(name)) => anyhow!(
                "{name} could not be downloaded ({url} answered 404): nothing was installed: try again later"
            ),
            (Failure::Unauthorized(status), _) => match &self.token {
                Some(token) => anyhow!(
                    "{url} refused the token in {var} ({status}): {nothing}check or unset {var}",
                    var = token.var
                ),
                None => anyhow!(
                    "{url} refused the request ({status}): {nothing}if the server needs a token, set GITHUB_TOKEN (or CODEX_OSS_GITHUB_TOKEN)"
                ),
            },
            (Failure::Status(status), _) => {
                anyhow!("{url} answered {status}: {nothing}try again later")
            }
            (Failure::NotTheApi, _) => {
                anyhow!(
                    "{url} did not answer like GitHub's releases API ({err}): check {API_URL_VAR}"
                )
            }
            (Failure::Other, Asked::File(name)) => anyhow!(
                "the download of {name} failed ({err}): nothing was installed: check your network connection and run `codex-oss update` again"
            ),
            (Failure::Other, Asked::Latest | Asked::Version(_)) => anyhow!(
                "could not reach {} ({err}): check your network connection{}",
                self.api,
                if self.api == DEFAULT_API_URL {
                    String::new()
                } else {
                    format!(" and {API_URL_VAR}")
                }
            ),
        }
    }
}

/// The downloaded archive at `path` could not be read.
fn unreadable(path: &Path, error: &std::io::Error) -> anyhow::Error {
    anyhow!(
        "could not read the downloaded {} ({error}): nothing was installed: run `codex-oss update` again",
        path.display()
    )
}

/// What went wrong with a request, whichever client made it.
#[derive(Clone, Copy)]
enum Failure {
    /// The API's rate limit is used up (until the time given, if any).
    RateLimited(Option<SystemTime>),
    NotFound,
    Unauthorized(u16),
    /// Another HTTP error.
    Status(u16),
    /// An answer that is not the API's.
    NotTheApi,
    /// Anything else: a network error, a download cut short.
    Other,
}

/// What an HTTP error status means, the rate-limit headers considered (a 403 with none
/// of the quota left is GitHub's rate limit, not a refused token).
fn status_failure(code: u16, headers: &HeaderMap) -> Failure {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let spent = header("x-ratelimit-remaining").is_some_and(|left| left.trim() == "0");
    // The time `x-ratelimit-reset` names, in seconds since 1970.
    let reset_at = header("x-ratelimit-reset")
        .and_then(|seconds| seconds.trim().parse().ok())
        .and_then(|seconds| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds)));
    match code {
        429 => Failure::RateLimited(reset_at),
        403 if spent => Failure::RateLimited(reset_at),
        404 => Failure::NotFound,
        401 | 403 => Failure::Unauthorized(code),
        _ => Failure::Status(code),
    }
}

impl Release {
    fn from(release: &self_update::Release) -> Result<Release> {
        let version = semver::Version::parse(release.version()).map_err(|e| {
            anyhow!(
                "the release `{}` has no semver version ({e}): report it at {}",
                release.version(),
                super::issues_page()
            )
        })?;
        Ok(Release {
            version,
            assets: release.assets().to_vec(),
        })
    }

    fn asset(&self, name: &str) -> Option<&ReleaseAsset> {
        self.assets.iter().find(|asset| asset.name() == name)
    }
}

/// The host of `url` (lower-cased, without IPv6 brackets) and its port.
fn authority_of(url: &str) -> Option<(String, u16)> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    Some((host.to_owned(), url.port_or_known_default()?))
}

/// Owner and name of a `https://github.com/OWNER/NAME` repository URL.
fn repository(url: &str) -> Option<(&str, &str)> {
    let path = url
        .strip_prefix("https://github.com/")?
        .trim_end_matches('/')
        .trim_end_matches(".git");
    let (owner, name) = path.split_once('/')?;
    (!owner.is_empty() && !name.is_empty() && !name.contains('/')).then_some((owner, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_comes_from_cargo_toml() {
        assert_eq!(
            repository(env!("CARGO_PKG_REPOSITORY")),
            Some(("codex-oss", "codex-oss"))
        );
        assert_eq!(repository("https://github.com/a/b.git/"), Some(("a", "b")));
        assert_eq!(repository("https://gitlab.com/a/b"), None);
        assert_eq!(repository("https://github.com/a"), None);
    }

    #[test]
    fn the_archive_is_cargo_dists() {
        let name = archive_name();
        let stem = format!("codex-oss-{}", self_update::get_target());
        assert!(
            name == format!("{stem}.tar.xz") || name == format!("{stem}.zip"),
            "{name}"
        );
    }

    fn source(api: &str) -> Source {
        Source {
            api: api.to_owned(),
            owner: "o".to_owned(),
            repo: "r".to_owned(),
            token: Some(Token {
                var: "GITHUB_TOKEN",
                value: "t".to_owned(),
            }),
        }
    }

    #[test]
    fn the_token_goes_to_the_api_server_only() {
        let github = source("https://api.github.com");
        assert!(github.may_authorize("https://api.github.com/repos/o/r/releases/assets/1"));
        assert!(!github.may_authorize("https://objects.githubusercontent.com/x"));
        assert!(!github.may_authorize("http://api.github.com/repos/o/r/releases/assets/1"));
        let local = source("http://127.0.0.1:8080");
        assert!(local.may_authorize("http://127.0.0.1:8080/assets/1"));
        assert!(!local.may_authorize("http://localhost:8080/assets/1"));
        assert!(!local.may_authorize("http://127.0.0.1:9090/assets/1"));
    }
}
