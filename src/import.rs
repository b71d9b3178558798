//! Importing a model the user already has in another Ollama's store, so that nobody
//! downloads gpt-oss:20b (13 GB) twice.
//!
//! The other store may be written by any Ollama release, old or new (`store` reads both
//! layouts and manifest lists). A model is brought in by hard-linking each blob into
//! codex-oss's store (same filesystem: no copy, no extra disk) or copying it, hashing
//! every byte on the way: a blob whose content does not match its name is not taken, and
//! the model is then pulled as usual. Only a regular file of the user's own that nobody
//! else may write is linked (anyone who could write it could change the model codex-oss
//! runs); anything else is copied. Copies in progress are `partial` files. The manifest
//! is written last, so Ollama never sees half a model. Nothing is ever written into the
//! other store.

mod partial;
mod store;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::ui::{Look, Progress};
use partial::Partial;
pub use partial::{remove_stale as remove_stale_partials, Stop};

/// `gpt-oss:20b` -> `manifests/registry.ollama.ai/library/gpt-oss/20b`: where the
/// embedded Ollama reads a model's manifest.
pub fn manifest_path(store: &Path, model: &str) -> PathBuf {
    store::Name::parse(model).legacy_path(store)
}

/// What an import did.
#[derive(Debug, PartialEq, Eq)]
pub enum Imported {
    /// Every blob hard-linked: no bytes copied.
    Linked { from: PathBuf },
    /// At least one blob copied (another filesystem, or a file others could change).
    Copied { from: PathBuf, bytes: u64 },
}

impl Imported {
    pub fn describe(&self, model: &str) -> String {
        match self {
            Imported::Linked { from } => format!(
                "found {model} in {}: linked it in (no download, no extra disk)",
                from.display()
            ),
            Imported::Copied { from, bytes } => format!(
                "found {model} in {}: copied it in ({:.1} GB, no download)",
                from.display(),
                *bytes as f64 / 1e9
            ),
        }
    }
}

/// Brings `model` from the first of `stores` that has it into `ours`. `None` when none
/// has it, or when what one has is damaged (said in a warning): pull it then. `stop`
/// ends it early (nothing said; its partial files removed).
pub fn import(model: &str, stores: &[PathBuf], ours: &Path, stop: &Stop) -> Option<Imported> {
    partial::remove_stale(&ours.join("blobs"));
    for store in stores {
        if crate::files::same_dir(store, ours) {
            continue;
        }
        let Some(found) = store::find(store, model) else {
            continue;
        };
        return match found.and_then(|runnable| import_from(model, store, &runnable, ours, stop)) {
            Ok(done) => Some(done),
            Err(_) if stop.is_stopped() => None,
            Err(err) => {
                caution!(
                    "not using {model} from {}: {err:#}; downloading it instead",
                    store.display()
                );
                None
            }
        };
    }
    None
}

fn import_from(
    model: &str,
    store: &Path,
    runnable: &store::Runnable,
    ours: &Path,
    stop: &Stop,
) -> Result<Imported> {
    let total: u64 = runnable.blobs.iter().map(|l| l.size).sum();
    let blobs = ours.join("blobs");
    std::fs::create_dir_all(&blobs)
        .with_context(|| format!("could not create {}", blobs.display()))?;
    // A byte-counting bar on a terminal; nothing otherwise (the result is said in a line).
    let mut progress = Progress::new(Look::Bytes, Some(total), format!("checking {model}"));
    let mut bytes = 0;
    for layer in &runnable.blobs {
        let name = store::blob_name(&layer.digest)
            .with_context(|| format!("a layer has an unexpected digest {:?}", layer.digest))?;
        let dest = blobs.join(&name);
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() == layer.size) {
            progress.inc(layer.size);
            continue;
        }
        let source = store.join("blobs").join(&name);
        bytes += bring(&source, &dest, &name, &progress, stop)
            .with_context(|| format!("blob {name}"))?;
    }
    progress.finish();
    stop.check()?;
    let manifest_dest = manifest_path(ours, model);
    std::fs::create_dir_all(manifest_dest.parent().unwrap_or(ours))
        .and_then(|()| crate::files::write_atomically(&manifest_dest, &runnable.manifest))
        .with_context(|| format!("could not write {}", manifest_dest.display()))?;
    let from = store.to_path_buf();
    Ok(if bytes == 0 {
        Imported::Linked { from }
    } else {
        Imported::Copied { from, bytes }
    })
}

/// Links `source` to `dest` when nobody else can change it, copies it otherwise, checking
/// that its content hashes to `name`. Returns the bytes copied (0 for a link).
fn bring(source: &Path, dest: &Path, name: &str, progress: &Progress, stop: &Stop) -> Result<u64> {
    let want = &name["sha256-".len()..];
    let link = |path: &Path| std::fs::hard_link(source, path);
    let linked = match may_link(source).then(|| Partial::create(stop, dest, link)) {
        // Checked again on the link itself: the file it names is the one Ollama reads.
        Some(Ok((link, ()))) => may_link(link.path()).then_some(link),
        Some(Err(err)) if err.kind() == io::ErrorKind::Interrupted => return Err(err.into()),
        // Another filesystem, or no hard links there; or a file others could change.
        Some(Err(_)) | None => None,
    };
    let (partial, got, copied) = if let Some(link) = linked {
        // Reading through the link checks the very bytes Ollama will read.
        let (got, _) = hash_copy(link.path(), None, progress, stop)?;
        (link, got, 0)
    } else {
        if !std::fs::metadata(source)?.is_file() {
            bail!("{} is not a regular file", source.display());
        }
        let (copy, mut to) = Partial::create(stop, dest, |path| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
        })?;
        let (got, copied) = hash_copy(source, Some(&mut to), progress, stop)?;
        (copy, got, copied)
    };
    if got != want {
        bail!("its content does not match its name (sha256 {got})");
    }
    partial.persist(dest)?;
    Ok(copied)
}

/// True for a regular file (not a symlink) of the current user's that group and others
/// cannot write: the only kind of file linked in, not copied.
fn may_link(path: &Path) -> bool {
    path.symlink_metadata()
        .is_ok_and(|m| m.file_type().is_file() && crate::platform::exposure(&m).is_none())
}

/// Hashes `source`, copying it into `to` (then synced) when there is one; returns the
/// hash and the bytes read.
fn hash_copy(
    source: &Path,
    mut to: Option<&mut File>,
    progress: &Progress,
    stop: &Stop,
) -> io::Result<(String, u64)> {
    let mut from = File::open(source)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        stop.check()?;
        let n = from.read(&mut buf)?;
        if n == 0 {
            if let Some(to) = to {
                to.sync_all()?;
            }
            return Ok((crate::files::hex(&hasher.finalize()), total));
        }
        hasher.update(&buf[..n]);
        if let Some(to) = to.as_mut() {
            to.write_all(&buf[..n])?;
        }
        total += n as u64;
        progress.inc(n as u64);
    }
}
