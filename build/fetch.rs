//! Downloads a pinned release asset once, checks its SHA-256, and caches it.
//!
//! The cache lives beside the target directory (or in `CODEX_OSS_DOWNLOAD_CACHE`),
//! keyed by the pinned hash, so a rebuild or `cargo clean -p codex-oss` never fetches
//! again. `CODEX_OSS_PAYLOAD_MIRROR` replaces the release base URL (tests serve one
//! from 127.0.0.1).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256, Sha512};

use crate::pins::{Component, Expected, Pin};

/// `CODEX_OSS_DOWNLOAD_CACHE`, else `<target dir>/codex-oss-downloads`.
pub fn cache_dir(out_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CODEX_OSS_DOWNLOAD_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out (one level more when cross-compiling).
    out_dir
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .and_then(|build| build.parent()?.parent())
        .map_or_else(
            || out_dir.join("downloads"),
            |target| target.join("codex-oss-downloads"),
        )
}

/// The digests of an asset: its SHA-256 (GitHub release pins, and what the GPU libraries
/// are trusted under), and its SHA-512 (npm `integrity`) when a pin asks for it.
pub struct Digests {
    pub sha256: String,
    pub sha512: Option<Vec<u8>>,
}

impl Digests {
    /// True when these are the digests `expected` names.
    pub fn matches(&self, expected: &Expected) -> bool {
        match expected {
            Expected::Sha256(hex) => self.sha256.eq_ignore_ascii_case(hex),
            Expected::Sha512(bytes) => self.sha512.as_ref() == Some(bytes),
        }
    }

    /// The digest of the kind `expected` names, as it is pinned (hex or npm integrity).
    pub fn shown_as(&self, expected: &Expected) -> String {
        show_expected(&match expected {
            Expected::Sha256(_) => Expected::Sha256(self.sha256.clone()),
            Expected::Sha512(_) => Expected::Sha512(self.sha512.clone().unwrap_or_default()),
        })
    }
}

/// How a pinned digest is shown in messages.
pub fn show_expected(expected: &Expected) -> String {
    use base64::Engine as _;
    match expected {
        Expected::Sha256(hex) => format!("sha256 {hex}"),
        Expected::Sha512(bytes) => format!(
            "integrity sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
    }
}

/// SHA-256 always; SHA-512 only for a pin that names one (hashing is most of the time a
/// local archive costs the build: each digest is computed once, in one pass).
struct Hashers {
    sha256: Sha256,
    sha512: Option<Sha512>,
}

impl Hashers {
    fn for_pin(expected: Option<&Expected>) -> Hashers {
        Hashers {
            sha256: Sha256::new(),
            sha512: matches!(expected, Some(Expected::Sha512(_))).then(Sha512::new),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(sha512) = &mut self.sha512 {
            sha512.update(bytes);
        }
    }

    fn finish(self) -> Digests {
        Digests {
            sha256: hex::encode(self.sha256.finalize()),
            sha512: self.sha512.map(|sha512| sha512.finalize().to_vec()),
        }
    }
}

/// The digests of a file: its SHA-256, and the digest `expected` names.
pub fn digests_of(path: &Path, expected: Option<&Expected>) -> Result<Digests, String> {
    let mut file =
        fs::File::open(path).map_err(|e| format!("could not open {}: {e}", path.display()))?;
    let mut hashers = Hashers::for_pin(expected);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("could not read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hashers.update(&buf[..n]);
    }
    Ok(hashers.finish())
}

/// A local archive is embedded as given: says so when it is not the pinned release, and
/// returns its SHA-256 (hashed once, here).
pub fn check_local(path: &Path, pin: Option<&Pin>) -> Result<String, String> {
    let expected = pin.and_then(|pin| pin.expected().ok());
    let actual = digests_of(path, expected.as_ref())?;
    if !expected.is_some_and(|expected| actual.matches(&expected)) {
        println!(
            "cargo:warning=embedding {} (sha256 {}), which is not the release pinned in bundle.toml",
            path.display(),
            actual.sha256
        );
    }
    Ok(actual.sha256)
}

/// Returns the path of the verified asset, downloading it unless the cache has it.
pub fn download_verified(
    component: Component,
    url: &str,
    pin: &Pin,
    cache: &Path,
    target: &str,
) -> Result<PathBuf, String> {
    // One partial file per download: two builds sharing the cache (`cargo build` and
    // `cargo test` at once) must not write into, or rename away, each other's file.
    static DOWNLOADS: AtomicUsize = AtomicUsize::new(0);
    let expected = pin.expected()?;
    let cached = cache.join(format!("{}-{}", pin.digest_prefix(), pin.asset));
    if cached.is_file() && digests_of(&cached, Some(&expected))?.matches(&expected) {
        return Ok(cached);
    }
    fs::create_dir_all(cache).map_err(|e| format!("could not create {}: {e}", cache.display()))?;
    let partial = cached.with_extension(format!(
        "{}-{}.part",
        std::process::id(),
        DOWNLOADS.fetch_add(1, Ordering::Relaxed)
    ));
    let actual = download(url, &partial, &expected).map_err(|e| {
        let _ = fs::remove_file(&partial);
        format!(
            "could not download {} for {target} from {url}: {e}\n{}",
            component.display(),
            component.switches_hint()
        )
    })?;
    if !actual.matches(&expected) {
        let _ = fs::remove_file(&partial);
        return Err(format!(
            "checksum mismatch for {} from {url}: expected {}, got {}. \
             The download is damaged or not the pinned release; nothing was embedded. \
             Check the pin in bundle.toml against the release's checksum file (or the \
             registry's `npm view {} dist.integrity`).\n{}",
            pin.asset,
            show_expected(&expected),
            actual.shown_as(&expected),
            pin.package.as_deref().unwrap_or("PACKAGE@VERSION"),
            component.switches_hint()
        ));
    }
    fs::rename(&partial, &cached)
        .map_err(|e| format!("could not move {} into the cache: {e}", cached.display()))?;
    Ok(cached)
}

/// Streams `url` into `dest`, hashing on the way; returns its digests.
fn download(url: &str, dest: &Path, expected: &Expected) -> Result<Digests, String> {
    let response = ureq::get(url)
        .timeout(std::time::Duration::from_secs(60 * 30))
        .call()
        .map_err(|e| match e {
            ureq::Error::Status(code, _) => format!("HTTP {code}"),
            ureq::Error::Transport(t) => match t.message() {
                Some(message) => format!("{}: {message}", t.kind()),
                None => t.kind().to_string(),
            },
        })?;
    let mut reader = response.into_reader();
    let mut file =
        fs::File::create(dest).map_err(|e| format!("could not create {}: {e}", dest.display()))?;
    let mut hashers = Hashers::for_pin(Some(expected));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("download interrupted: {e}"))?;
        if n == 0 {
            break;
        }
        hashers.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("could not write {}: {e}", dest.display()))?;
    }
    file.sync_all().map_err(|e| e.to_string())?;
    Ok(hashers.finish())
}
