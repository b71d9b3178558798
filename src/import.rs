//! Importing a model the user already has in another Ollama's store, so that nobody
//! downloads gpt-oss:20b (13 GB) twice.
//!
//! An Ollama store is `manifests/<registry>/<namespace>/<model>/<tag>` (JSON naming the
//! config and layer blobs by digest) and `blobs/sha256-<hex>`. A model is brought in by
//! hard-linking each blob into codex-oss's store (same filesystem: no copy, no extra
//! disk) or copying it (elsewhere), hashing every byte on the way: a blob whose content
//! does not match its name is not taken, and the model is then pulled as usual. The
//! manifest is written last, so Ollama never sees half a model. Nothing is ever written
//! into the other store.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The registry a bare model name (`gpt-oss:20b`) belongs to.
const DEFAULT_REGISTRY: &str = "registry.ollama.ai";

/// Other stores where the user's own Ollama keeps models, most likely first: the user's
/// (`~/.ollama/models`) and the Linux service's.
pub fn candidate_stores(user_home: Option<&Path>) -> Vec<PathBuf> {
    let mut stores = Vec::new();
    if let Some(home) = user_home {
        stores.push(home.join(".ollama").join("models"));
    }
    if cfg!(target_os = "linux") {
        stores.push(PathBuf::from("/usr/share/ollama/.ollama/models"));
    }
    stores
}

/// `gpt-oss:20b` -> `manifests/registry.ollama.ai/library/gpt-oss/20b`, as Ollama names it.
pub fn manifest_path(store: &Path, model: &str) -> PathBuf {
    let (name, tag) = match model.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (model, "latest"),
    };
    let parts: Vec<&str> = name.split('/').collect();
    let (registry, namespace, model) = match parts.as_slice() {
        [model] => (DEFAULT_REGISTRY, "library", *model),
        [namespace, model] => (DEFAULT_REGISTRY, *namespace, *model),
        [registry, namespace, model, ..] => (*registry, *namespace, *model),
        [] => (DEFAULT_REGISTRY, "library", name),
    };
    store
        .join("manifests")
        .join(registry)
        .join(namespace)
        .join(model)
        .join(tag)
}

#[derive(Deserialize)]
struct Manifest {
    config: Layer,
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    digest: String,
    #[serde(default)]
    size: u64,
}

impl Layer {
    /// `sha256:<hex>` -> `sha256-<hex>`; `None` for anything else (never a path).
    fn blob_name(&self) -> Option<String> {
        let hex = self.digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("sha256-{hex}"))
    }
}

/// What an import did.
#[derive(Debug, PartialEq, Eq)]
pub enum Imported {
    /// Every blob hard-linked: no bytes copied.
    Linked { from: PathBuf },
    /// At least one blob copied (another filesystem).
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
/// has it, or when what one has is damaged (said in a warning): pull it then.
pub fn import(model: &str, stores: &[PathBuf], ours: &Path) -> Option<Imported> {
    for store in stores {
        if crate::files::same_dir(store, ours) {
            continue;
        }
        let manifest = manifest_path(store, model);
        let Ok(text) = std::fs::read(&manifest) else {
            continue;
        };
        return match import_from(model, store, &text, ours) {
            Ok(done) => Some(done),
            Err(err) => {
                crate::ui::warn(format!(
                    "not using {model} from {}: {err:#}; downloading it instead",
                    store.display()
                ));
                None
            }
        };
    }
    None
}

fn import_from(model: &str, store: &Path, manifest_text: &[u8], ours: &Path) -> Result<Imported> {
    let manifest: Manifest =
        serde_json::from_slice(manifest_text).context("its manifest is not valid")?;
    let layers: Vec<&Layer> = std::iter::once(&manifest.config)
        .chain(&manifest.layers)
        .collect();
    let total: u64 = layers.iter().map(|l| l.size).sum();
    let blobs = ours.join("blobs");
    std::fs::create_dir_all(&blobs)
        .with_context(|| format!("could not create {}", blobs.display()))?;
    let progress = Progress::new(model, total);
    let mut copied = 0;
    for layer in layers {
        let name = layer
            .blob_name()
            .with_context(|| format!("a layer has an unexpected digest {:?}", layer.digest))?;
        let dest = blobs.join(&name);
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() == layer.size) {
            progress.advance(layer.size);
            continue;
        }
        let source = store.join("blobs").join(&name);
        copied +=
            bring(&source, &dest, &name, &progress).with_context(|| format!("blob {name}"))?;
    }
    progress.finish();
    let manifest_dest = manifest_path(ours, model);
    std::fs::create_dir_all(manifest_dest.parent().unwrap_or(ours))
        .and_then(|()| crate::files::write_atomically(&manifest_dest, manifest_text))
        .with_context(|| format!("could not write {}", manifest_dest.display()))?;
    Ok(if copied == 0 {
        Imported::Linked {
            from: store.to_path_buf(),
        }
    } else {
        Imported::Copied {
            from: store.to_path_buf(),
            bytes: copied,
        }
    })
}

/// Links `source` to `dest` (or copies it when linking is not possible), checking that
/// its content hashes to `name`. Returns the bytes copied (0 for a link).
fn bring(source: &Path, dest: &Path, name: &str, progress: &Progress) -> Result<u64> {
    let want = &name["sha256-".len()..];
    let partial = dest.with_extension(format!("import-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let linked = std::fs::hard_link(source, &partial).is_ok();
    let result = if linked {
        // Reading through the link checks the very bytes Ollama will read.
        hash_file(&partial, progress).map(|got| (got, 0))
    } else {
        copy_hashed(source, &partial, progress)
    };
    let (got, copied) = match result {
        Ok(done) => done,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err.into());
        }
    };
    if got != want {
        let _ = std::fs::remove_file(&partial);
        bail!("its content does not match its name (sha256 {got})");
    }
    std::fs::rename(&partial, dest)?;
    Ok(copied)
}

fn hash_file(path: &Path, progress: &Progress) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(crate::files::hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
    }
}

fn copy_hashed(source: &Path, dest: &Path, progress: &Progress) -> io::Result<(String, u64)> {
    let mut from = File::open(source)?;
    let mut to = File::create(dest)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            to.sync_all()?;
            return Ok((crate::files::hex(&hasher.finalize()), total));
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        total += n as u64;
        progress.advance(n as u64);
    }
}

/// A byte-counting bar on a terminal; nothing otherwise (the result is said in a line).
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(model: &str, total: u64) -> Progress {
        let bar = crate::ui::stderr_is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes}")
                    .expect("valid template"),
            );
            bar.set_message(format!("checking {model}"));
            bar
        });
        Progress { bar }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_follow_ollamas_naming() {
        let store = Path::new("/s");
        assert_eq!(
            manifest_path(store, "gpt-oss:20b"),
            Path::new("/s/manifests/registry.ollama.ai/library/gpt-oss/20b")
        );
        assert_eq!(
            manifest_path(store, "gpt-oss"),
            Path::new("/s/manifests/registry.ollama.ai/library/gpt-oss/latest")
        );
        assert_eq!(
            manifest_path(store, "me/tuned:v1"),
            Path::new("/s/manifests/registry.ollama.ai/me/tuned/v1")
        );
        assert_eq!(
            manifest_path(store, "hf.co/org/model:q4"),
            Path::new("/s/manifests/hf.co/org/model/q4")
        );
    }

    #[test]
    fn digests_that_are_not_sha256_are_never_paths() {
        let layer = |digest: &str| Layer {
            digest: digest.to_owned(),
            size: 0,
        };
        assert!(layer("sha256:../../etc/passwd").blob_name().is_none());
        assert!(layer("md5:abcd").blob_name().is_none());
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            layer(&good).blob_name(),
            Some(format!("sha256-{}", "a".repeat(64)))
        );
    }
}
