//! Reading a model from another Ollama's store as that Ollama reads it, whichever release
//! wrote the store, and turning it into the plain manifest the embedded Ollama (0.32.15)
//! reads.
//!
//! Two layouts, read as `resolveManifestPath` in ollama/ollama's `manifest/paths.go`
//! (the manifest-list releases, "0.40" below) reads them:
//! - `manifests-v2/<host>/<namespace>/<model>/<tag>` (0.40 and newer): the manifest is
//!   stored as a blob, `blobs/sha256-<hex>`, and the tag is a relative symlink to it, or a
//!   hard link, or a copy (`linkManifest` in `manifest/manifest.go`). The public registry's
//!   host there is `ollama.com` (`canonicalV2Name`). This entry wins; a dangling one falls
//!   back to the old path (`manifest/downgrade_test.go`,
//!   `TestResolvePathForNameFallsBackWhenV2EntryDangling`).
//! - `manifests/<host>/<namespace>/<model>/<tag>` (0.32 and older): the manifest itself.
//!   A 0.40 pull leaves one there too, the "legacy anchor" an older Ollama can still run:
//!   the runnable child manifest with the manifest list's and the child manifests' blobs
//!   appended as layers, so that an older Ollama's prune keeps them
//!   (`WriteLegacyAnchor(name, child, parentDigest, childDigests...)` as
//!   `manifest/downgrade_test.go` calls it, and `downgradePrune` there).
//!
//! A tag may name a manifest list (`application/vnd.ollama.manifest.list.v2+json`): one
//! child manifest per runner, inline or a reference to a blob (`isReference`,
//! `selectManifestWithPreferences` in `manifest/manifest.go`). The embedded Ollama runs
//! GGUF models only, through llama-server (`llm/server.go` of v0.32.15): the child taken
//! is a GGUF one, the original Ollama GGUF first.
//!
//! What is written into codex-oss's store is always a plain manifest
//! (`application/vnd.docker.distribution.manifest.v2+json`, as `manifest.Manifest` of
//! v0.32.15 has it) holding the config and only the layers whose media type v0.32.15
//! reads (`GetModel` in its `server/images.go`): the anchor's extra layers and any kind
//! of layer that release does not know are left out. (The anchor exists so that an older
//! Ollama runs the model, so its extra layers cannot be of a type an older Ollama reads:
//! this holds whatever media type `WriteLegacyAnchor` gives them, which the code indexes
//! available here do not show.)

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The registry a bare model name (`gpt-oss:20b`) belongs to.
const DEFAULT_REGISTRY: &str = "registry.ollama.ai";

/// The public registry's host in `manifests-v2` (`v2CanonicalHost`, `manifest/paths.go`).
const V2_PUBLIC_HOST: &str = "ollama.com";

/// A single runnable manifest (`MediaTypeManifest`, `manifest/manifest.go`).
const MEDIA_TYPE_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A manifest list (`MediaTypeManifestList`, `manifest/manifest.go`).
const MEDIA_TYPE_MANIFEST_LIST: &str = "application/vnd.ollama.manifest.list.v2+json";

/// The layer media types Ollama 0.32.15 reads: those `GetModel` in its
/// `server/images.go` handles, and `manifest.MediaTypeImageTensor` (`manifest/layer.go`)
/// and `application/vnd.ollama.image.json` (`Manifest.ReadConfigJSON`) that it reads
/// elsewhere. Every `application/vnd.ollama.image.*` type its Go source names.
const UNDERSTOOD_LAYERS: [&str; 13] = [
    "application/vnd.ollama.image.model",
    "application/vnd.ollama.image.draft",
    "application/vnd.ollama.image.embed",
    "application/vnd.ollama.image.adapter",
    "application/vnd.ollama.image.projector",
    "application/vnd.ollama.image.prompt",
    "application/vnd.ollama.image.template",
    "application/vnd.ollama.image.system",
    "application/vnd.ollama.image.params",
    "application/vnd.ollama.image.messages",
    "application/vnd.ollama.image.license",
    "application/vnd.ollama.image.tensor",
    "application/vnd.ollama.image.json",
];

/// Runners of a manifest list's children, best first for the embedded Ollama: the
/// original Ollama GGUF (`RunnerGGML` "ggml" in `manifest/manifest.go`, called
/// `RunnerOllama` "ollama" in an earlier revision of it), which is what v0.32.15 itself
/// pulls; then the GGUF converted for upstream llama.cpp (`RunnerLlamaCPP`), whose
/// architecture names v0.32.15 knows as well (`fs/ggml/ggml.go`: "gptoss", "gpt-oss").
/// Any other runner's GGUF comes last; `mlx` children are safetensors and never taken.
const GGUF_RUNNERS: [&[&str]; 2] = [&["ggml", "ollama"], &["llamacpp"]];

/// The most a manifest (a small JSON file) may weigh: a tag pointing at a model's
/// weights by mistake is refused rather than read into memory.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// A model name split as Ollama's `model.Name`: host, namespace, model and tag.
#[derive(Debug, PartialEq, Eq)]
pub struct Name<'a> {
    host: &'a str,
    namespace: &'a str,
    model: &'a str,
    tag: &'a str,
}

impl<'a> Name<'a> {
    /// `gpt-oss:20b` -> registry.ollama.ai / library / gpt-oss / 20b.
    pub fn parse(model: &'a str) -> Name<'a> {
        let (name, tag) = match model.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag),
            _ => (model, "latest"),
        };
        let parts: Vec<&str> = name.split('/').collect();
        let (host, namespace, model) = match parts.as_slice() {
            [model] => (DEFAULT_REGISTRY, "library", *model),
            [namespace, model] => (DEFAULT_REGISTRY, *namespace, *model),
            [host, namespace, model, ..] => (*host, *namespace, *model),
            [] => (DEFAULT_REGISTRY, "library", name),
        };
        Name {
            host,
            namespace,
            model,
            tag,
        }
    }

    fn is_public(&self) -> bool {
        // `isDefaultPublicHost`, manifest/paths.go.
        self.host.eq_ignore_ascii_case(DEFAULT_REGISTRY)
            || self.host.eq_ignore_ascii_case(V2_PUBLIC_HOST)
    }

    fn under(&self, root: &Path, host: &str) -> PathBuf {
        root.join(host)
            .join(self.namespace)
            .join(self.model)
            .join(self.tag)
    }

    /// Where Ollama up to 0.32 keeps the manifest (and where the embedded one reads it).
    pub fn legacy_path(&self, store: &Path) -> PathBuf {
        self.under(&store.join("manifests"), self.host)
    }

    /// Where Ollama 0.40 keeps the tag (`V2PathForName`, manifest/paths.go).
    fn v2_path(&self, store: &Path) -> PathBuf {
        let host = if self.is_public() {
            V2_PUBLIC_HOST
        } else {
            self.host
        };
        self.under(&store.join("manifests-v2"), host)
    }

    /// The old-layout paths Ollama 0.40 tries, in its order (`legacyNameCandidates`):
    /// the name's own host, then the other public host.
    fn legacy_candidates(&self, store: &Path) -> Vec<PathBuf> {
        let mut paths = vec![self.legacy_path(store)];
        if self.is_public() {
            let other = if self.host.eq_ignore_ascii_case(DEFAULT_REGISTRY) {
                V2_PUBLIC_HOST
            } else {
                DEFAULT_REGISTRY
            };
            paths.push(self.under(&store.join("manifests"), other));
        }
        paths
    }
}

/// A manifest, a manifest list or a list's entry: the fields of `manifest.Manifest` in
/// ollama/ollama's `manifest/manifest.go` (a reference entry has `digest` instead of
/// `config` and `layers`).
#[derive(Deserialize, Clone, Default)]
#[serde(default, rename_all = "camelCase")]
struct Document {
    media_type: String,
    config: Layer,
    layers: Vec<Layer>,
    runner: String,
    format: String,
    manifests: Vec<Document>,
    digest: String,
}

impl Document {
    /// A list entry that names its child manifest's blob (`isReference`).
    fn is_reference(&self) -> bool {
        self.media_type != MEDIA_TYPE_MANIFEST_LIST
            && !self.digest.is_empty()
            && self.config.digest.is_empty()
            && self.layers.is_empty()
    }
}

/// A config or layer (`manifest.Layer`): what codex-oss needs of it, and the rest of
/// its fields (`from`, `name`) kept as they are.
#[derive(Deserialize, Serialize, Clone, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct Layer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// `sha256:<hex>` (or `sha256-<hex>`, as `BlobsPath` accepts) -> `sha256-<hex>`; `None`
/// for anything else (never a path).
pub fn blob_name(digest: &str) -> Option<String> {
    let hex = digest
        .strip_prefix("sha256:")
        .or_else(|| digest.strip_prefix("sha256-"))?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256-{}", hex.to_ascii_lowercase()))
}

/// The plain manifest written into codex-oss's store, fields in `manifest.Manifest`'s
/// order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Plain<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: &'a Layer,
    layers: Vec<&'a Layer>,
}

/// A model found in a store, as the embedded Ollama is to see it.
pub struct Runnable {
    /// The manifest to write into codex-oss's store.
    pub manifest: Vec<u8>,
    /// The blobs that manifest names: its config, then its layers.
    pub blobs: Vec<Layer>,
}

/// The model `model` in `store`: `None` when the store does not have it, an error when
/// what it has cannot be used.
pub fn find(store: &Path, model: &str) -> Option<Result<Runnable>> {
    let name = Name::parse(model);
    let v2 = name.v2_path(store);
    if v2.symlink_metadata().is_ok() {
        match read_tag(store, &v2) {
            Ok(bytes) => return Some(runnable(store, &bytes)),
            // A dangling link: Ollama falls back to the old layout.
            Err(err) if is_not_found(&err) => {}
            Err(err) => return Some(Err(err)),
        }
    }
    let legacy = name
        .legacy_candidates(store)
        .into_iter()
        .find(|path| path.symlink_metadata().is_ok())?;
    Some(read_tag(store, &legacy).and_then(|bytes| runnable(store, &bytes)))
}

fn is_not_found(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// The bytes of a tag. A symlink must lead to the store's own blob of that name, whose
/// content hashes to it (`OpenVerifiedManifest`, manifest/manifest.go); a hard link or a
/// copy is read as it is.
fn read_tag(store: &Path, path: &Path) -> Result<Vec<u8>> {
    let is_link = path.symlink_metadata()?.file_type().is_symlink();
    if !is_link {
        return read_small(path);
    }
    let target = std::fs::canonicalize(path)?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(blob_name)
        .with_context(|| {
            format!(
                "its manifest {} links to {}, not to a blob",
                path.display(),
                target.display()
            )
        })?;
    let blob = store.join("blobs").join(&name);
    // `target` is canonical already.
    if !std::fs::canonicalize(&blob).is_ok_and(|blob| blob == target) {
        bail!(
            "its manifest {} links to {}, outside its blobs folder",
            path.display(),
            target.display()
        );
    }
    let bytes = read_small(&blob)?;
    check_digest(&bytes, &name)?;
    Ok(bytes)
}

fn read_small(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        bail!(
            "{} is too large for a manifest ({} MB or more)",
            path.display(),
            MAX_MANIFEST_BYTES >> 20
        );
    }
    Ok(bytes)
}

fn check_digest(bytes: &[u8], name: &str) -> Result<()> {
    let got = crate::files::hex(&Sha256::digest(bytes));
    if name["sha256-".len()..] != got {
        bail!("its manifest blob {name} does not match its name (sha256 {got})");
    }
    Ok(())
}

/// The plain manifest and its blobs for the manifest (or list) `bytes`.
fn runnable(store: &Path, bytes: &[u8]) -> Result<Runnable> {
    let document: Document = serde_json::from_slice(bytes).context("its manifest is not valid")?;
    let (document, as_is) = if document.media_type == MEDIA_TYPE_MANIFEST_LIST {
        (select_child(store, &document)?, false)
    } else {
        (document, is_plain(bytes))
    };
    let layers: Vec<&Layer> = document
        .layers
        .iter()
        .filter(|l| UNDERSTOOD_LAYERS.contains(&l.media_type.as_str()))
        .collect();
    if layers.is_empty() {
        bail!("its manifest lists no layer the embedded Ollama can read");
    }
    let manifest = if as_is && layers.len() == document.layers.len() {
        // Nothing to leave out: the very bytes, so the model keeps its digest.
        bytes.to_vec()
    } else {
        serde_json::to_vec(&Plain {
            schema_version: 2,
            media_type: MEDIA_TYPE_MANIFEST,
            config: &document.config,
            layers: layers.clone(),
        })?
    };
    let blobs = std::iter::once(&document.config)
        .chain(layers)
        .cloned()
        .collect();
    Ok(Runnable { manifest, blobs })
}

/// True when `bytes` hold nothing but what Ollama 0.32.15's `manifest.Manifest` has.
fn is_plain(bytes: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(bytes) else {
        return false;
    };
    fields
        .keys()
        .all(|k| ["schemaVersion", "mediaType", "config", "layers"].contains(&k.as_str()))
}

/// The child of a manifest list the embedded Ollama can run: a GGUF one, best runner
/// first (`GGUF_RUNNERS`). References are read from the store's blobs and checked; a
/// child whose blob is not there is passed over, as Ollama does
/// (`resolveLocalManifestReference`).
fn select_child(store: &Path, list: &Document) -> Result<Document> {
    let mut children = Vec::new();
    let mut runners = Vec::new();
    for entry in &list.manifests {
        // `selectManifestReferenceWithPreferences`: plain manifests only.
        if !entry.media_type.is_empty() && entry.media_type != MEDIA_TYPE_MANIFEST {
            continue;
        }
        let mut child = if entry.is_reference() {
            let Some(child) = read_child(store, &entry.digest)? else {
                continue;
            };
            child
        } else {
            entry.clone()
        };
        if child.media_type == MEDIA_TYPE_MANIFEST_LIST {
            bail!("its manifest list holds another list, which Ollama does not support");
        }
        if child.runner.is_empty() {
            child.runner.clone_from(&entry.runner);
        }
        if child.format.is_empty() {
            child.format.clone_from(&entry.format);
        }
        child.runner = child.runner.trim().to_ascii_lowercase();
        runners.push(if child.runner.is_empty() {
            "unnamed".to_owned()
        } else {
            child.runner.clone()
        });
        if is_gguf(store, &child) {
            children.push(child);
        }
    }
    let rank = |child: &Document| {
        GGUF_RUNNERS
            .iter()
            .position(|names| names.contains(&child.runner.as_str()))
            .unwrap_or(GGUF_RUNNERS.len())
    };
    match children.into_iter().min_by_key(rank) {
        Some(child) => Ok(child),
        None if runners.is_empty() => {
            bail!("its manifest list names no manifest found in its blobs")
        }
        None => bail!(
            "its manifest list has no GGUF model the embedded Ollama can run (runners: {})",
            runners.join(", ")
        ),
    }
}

/// The child manifest stored as the blob `digest`: `None` when the blob is not there.
fn read_child(store: &Path, digest: &str) -> Result<Option<Document>> {
    let name = blob_name(digest)
        .with_context(|| format!("its manifest list names an unexpected digest {digest:?}"))?;
    let path = store.join("blobs").join(&name);
    let bytes = match read_small(&path) {
        Ok(bytes) => bytes,
        Err(err) if is_not_found(&err) => return Ok(None),
        Err(err) => return Err(err),
    };
    check_digest(&bytes, &name)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("its child manifest {name} is not valid"))
}

/// A GGUF child: its `format`, else its config's `model_format` ("gguf", or the older
/// "ggml"), as `FillMetadata`/`MetadataForConfig` (manifest/manifest.go) read it.
fn is_gguf(store: &Path, child: &Document) -> bool {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        model_format: String,
    }
    let format = child.format.trim().to_ascii_lowercase();
    if !format.is_empty() {
        return format == "gguf";
    }
    blob_name(&child.config.digest)
        .and_then(|name| read_small(&store.join("blobs").join(name)).ok())
        .and_then(|bytes| serde_json::from_slice::<Config>(&bytes).ok())
        .is_some_and(|c| ["gguf", "ggml"].contains(&c.model_format.to_ascii_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_ollamas_naming() {
        let store = Path::new("/s");
        for (model, legacy) in [
            ("gpt-oss:20b", "registry.ollama.ai/library/gpt-oss/20b"),
            ("gpt-oss", "registry.ollama.ai/library/gpt-oss/latest"),
            ("me/tuned:v1", "registry.ollama.ai/me/tuned/v1"),
            ("hf.co/org/model:q4", "hf.co/org/model/q4"),
        ] {
            let path = Name::parse(model).legacy_path(store);
            assert_eq!(path, Path::new("/s/manifests").join(legacy), "{model}");
        }
        for (model, v2) in [
            ("gpt-oss:20b", "ollama.com/library/gpt-oss/20b"),
            ("hf.co/org/model:q4", "hf.co/org/model/q4"),
        ] {
            let path = Name::parse(model).v2_path(store);
            assert_eq!(path, Path::new("/s/manifests-v2").join(v2), "{model}");
        }
        assert_eq!(
            Name::parse("gpt-oss:20b").legacy_candidates(store),
            [
                Path::new("/s/manifests/registry.ollama.ai/library/gpt-oss/20b"),
                Path::new("/s/manifests/ollama.com/library/gpt-oss/20b")
            ]
        );
    }

    #[test]
    fn digests_that_are_not_sha256_are_never_paths() {
        assert!(blob_name("sha256:../../etc/passwd").is_none());
        assert!(blob_name("md5:abcd").is_none());
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(blob_name(&good), Some(format!("sha256-{}", "a".repeat(64))));
    }

    fn layer(media_type: &str, byte: char) -> serde_json::Value {
        serde_json::json!({
            "mediaType": media_type,
            "digest": format!("sha256:{}", byte.to_string().repeat(64)),
            "size": 1,
        })
    }

    fn manifest(runner: &str, format: &str, model: char) -> serde_json::Value {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "runner": runner,
            "format": format,
            "config": layer("application/vnd.docker.container.image.v1+json", 'c'),
            "layers": [layer("application/vnd.ollama.image.model", model)],
        })
    }

    fn model_digest(runnable: &Runnable) -> String {
        let written: Document = serde_json::from_slice(&runnable.manifest).unwrap();
        written.layers[0].digest.clone()
    }

    #[test]
    fn a_list_gives_its_original_gguf_child_else_another_gguf_one_never_mlx() {
        let store = Path::new("/nowhere");
        let list = |children: Vec<serde_json::Value>| {
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_MANIFEST_LIST,
                "manifests": children,
            }))
            .unwrap()
        };
        let both = list(vec![
            manifest("mlx", "safetensors", 'a'),
            manifest("llamacpp", "gguf", 'b'),
            manifest("ggml", "gguf", 'd'),
        ]);
        let got = runnable(store, &both).unwrap();
        assert_eq!(model_digest(&got), format!("sha256:{}", "d".repeat(64)));
        let written: serde_json::Value = serde_json::from_slice(&got.manifest).unwrap();
        assert!(written.get("runner").is_none(), "{written}");

        let converted = list(vec![
            manifest("mlx", "safetensors", 'a'),
            manifest("llamacpp", "gguf", 'b'),
        ]);
        let got = runnable(store, &converted).unwrap();
        assert_eq!(model_digest(&got), format!("sha256:{}", "b".repeat(64)));

        let err = runnable(store, &list(vec![manifest("mlx", "safetensors", 'a')]))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "its manifest list has no GGUF model the embedded Ollama can run (runners: mlx)"
        );
    }

    #[test]
    fn layers_the_embedded_ollama_does_not_read_are_left_out() {
        let mut anchor = manifest("", "", 'd');
        anchor["layers"]
            .as_array_mut()
            .unwrap()
            .push(layer(MEDIA_TYPE_MANIFEST_LIST, 'e'));
        let got = runnable(Path::new("/nowhere"), &serde_json::to_vec(&anchor).unwrap()).unwrap();
        assert_eq!(got.blobs.len(), 2, "config and model");
        let written: Document = serde_json::from_slice(&got.manifest).unwrap();
        assert_eq!(written.layers.len(), 1);
        assert_eq!(written.media_type, MEDIA_TYPE_MANIFEST);

        // A manifest with nothing to leave out is written byte for byte.
        let plain = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": layer("application/vnd.docker.container.image.v1+json", 'c'),
            "layers": [layer("application/vnd.ollama.image.model", 'd')],
        }))
        .unwrap();
        assert_eq!(
            runnable(Path::new("/nowhere"), &plain).unwrap().manifest,
            plain
        );
    }
}
