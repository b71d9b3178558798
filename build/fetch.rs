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

use sha2::{Digest, Sha256};

use crate::pins::{Component, Pin};

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

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, String> {
    let mut file =
        fs::File::open(path).map_err(|e| format!("could not open {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("could not read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A local archive is embedded as given; say so when it is not the pinned release.
pub fn warn_if_unpinned(path: &Path, pinned_sha256: Option<&str>) {
    let Ok(actual) = sha256_file(path) else {
        return;
    };
    if pinned_sha256.is_some_and(|pin| pin.eq_ignore_ascii_case(&actual)) {
        return;
    }
    println!(
        "cargo:warning=embedding {} (sha256 {actual}), which is not the release pinned in bundle.toml",
        path.display()
    );
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
    let cached = cache.join(format!("{}-{}", &pin.sha256[..16], pin.asset));
    if cached.is_file() && sha256_file(&cached)?.eq_ignore_ascii_case(&pin.sha256) {
        return Ok(cached);
    }
    fs::create_dir_all(cache).map_err(|e| format!("could not create {}: {e}", cache.display()))?;
    let partial = cached.with_extension(format!(
        "{}-{}.part",
        std::process::id(),
        DOWNLOADS.fetch_add(1, Ordering::Relaxed)
    ));
    let actual = download(url, &partial).map_err(|e| {
        let _ = fs::remove_file(&partial);
        format!(
            "could not download {} for {target} from {url}: {e}\n{}",
            component.display(),
            component.switches_hint()
        )
    })?;
    if !actual.eq_ignore_ascii_case(&pin.sha256) {
        let _ = fs::remove_file(&partial);
        return Err(format!(
            "checksum mismatch for {} from {url}: expected sha256 {}, got {actual}. \
             The download is damaged or not the pinned release; nothing was embedded. \
             Check the pin in bundle.toml against the release's checksum file.\n{}",
            pin.asset,
            pin.sha256,
            component.switches_hint()
        ));
    }
    fs::rename(&partial, &cached)
        .map_err(|e| format!("could not move {} into the cache: {e}", cached.display()))?;
    Ok(cached)
}

/// Streams `url` into `dest`, hashing on the way; returns the SHA-256.
fn download(url: &str, dest: &Path) -> Result<String, String> {
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
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("download interrupted: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("could not write {}: {e}", dest.display()))?;
    }
    file.sync_all().map_err(|e| e.to_string())?;
    Ok(hex::encode(hasher.finalize()))
}
