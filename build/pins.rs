//! What `bundle.toml` pins, and which source the build takes for each payload.
//!
//! Shared by build.rs and its tests (`tests/build_payloads.rs`), so it depends only on
//! build-dependencies and reads the environment through one function.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Every environment variable the build reads; build.rs reruns when one changes.
pub const BUILD_ENV_VARS: &[&str] = &[
    "SKIP_OLLAMA_DOWNLOAD",
    "SKIP_CODEX_DOWNLOAD",
    "CODEX_OSS_OLLAMA_ARCHIVE",
    "CODEX_OSS_CODEX_ARCHIVE",
    "CODEX_OSS_OLLAMA_ARCHIVE_VERSION",
    "CODEX_OSS_CODEX_ARCHIVE_VERSION",
    "CODEX_OSS_PAYLOAD_MIRROR",
    "CODEX_OSS_DOWNLOAD_CACHE",
    "CODEX_OSS_ZSTD_LEVEL",
    "CODEX_OSS_KEEP_GPU_LIBS",
];

/// The two payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Ollama,
    Codex,
}

impl Component {
    pub fn display(self) -> &'static str {
        match self {
            Component::Ollama => "Ollama",
            Component::Codex => "Codex",
        }
    }

    pub fn upper(self) -> String {
        self.display().to_ascii_uppercase()
    }

    pub fn lower(self) -> String {
        self.display().to_ascii_lowercase()
    }

    pub fn skip_var(self) -> String {
        format!("SKIP_{}_DOWNLOAD", self.upper())
    }

    pub fn archive_var(self) -> String {
        format!("CODEX_OSS_{}_ARCHIVE", self.upper())
    }

    fn archive_version_var(self) -> String {
        format!("CODEX_OSS_{}_ARCHIVE_VERSION", self.upper())
    }

    /// The sentence every "cannot get the payload" error ends with.
    pub fn switches_hint(self) -> String {
        let name = self.lower();
        format!(
            "to build without downloading, set {}=FILE (a local release archive: .tgz, .tar.zst, .zip, \
             or the bare {name} executable) or {}=1 (embed no {}; at run time codex-oss uses \
             CODEX_OSS_{} or `{name}` on PATH)",
            self.archive_var(),
            self.skip_var(),
            self.display(),
            self.upper()
        )
    }
}

/// One release asset for one target, pinned by its SHA-256 (a GitHub release asset,
/// checked against the release's `sha256sum.txt`) or by the npm registry's `integrity`
/// (`sha512-<base64>`, what `npm view <package> dist.integrity` prints).
#[derive(Clone, Debug, Deserialize)]
pub struct Pin {
    pub asset: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub integrity: Option<String>,
    /// The npm package and version the asset is (`@openai/codex@0.171.0-linux-x64`).
    #[serde(default)]
    pub package: Option<String>,
}

/// What a downloaded asset must hash to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Lowercase hex SHA-256.
    Sha256(String),
    /// The SHA-512 digest, decoded from an npm `integrity`.
    Sha512(Vec<u8>),
}

impl Pin {
    /// The digest the asset must have: its `integrity` when pinned, else its `sha256`.
    pub fn expected(&self) -> Result<Expected, String> {
        if let Some(integrity) = &self.integrity {
            return parse_integrity(integrity)
                .map(Expected::Sha512)
                .ok_or_else(|| {
                    format!(
                        "the integrity pinned for {} ({integrity}) is not sha512-<base64 of 64 bytes>",
                        self.asset
                    )
                });
        }
        match &self.sha256 {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Expected::Sha256(hex.to_ascii_lowercase()))
            }
            Some(hex) => Err(format!(
                "the sha256 pinned for {} ({hex}) is not 64 hex digits",
                self.asset
            )),
            None => Err(format!(
                "{} is pinned by neither sha256 nor integrity",
                self.asset
            )),
        }
    }

    /// A short name for the pinned digest, for cache file names (16 hex digits).
    pub fn digest_prefix(&self) -> String {
        match self.expected() {
            Ok(Expected::Sha256(hex)) => hex[..16].to_owned(),
            Ok(Expected::Sha512(bytes)) => hex::encode(&bytes[..8]),
            Err(_) => "unpinned".to_owned(),
        }
    }
}

/// `sha512-<base64>` (npm's Subresource Integrity string) -> the 64 digest bytes.
pub fn parse_integrity(integrity: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let encoded = integrity.trim().strip_prefix("sha512-")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    (bytes.len() == 64).then_some(bytes)
}

#[derive(Debug, Deserialize)]
pub struct Release {
    pub version: String,
    pub base_url: String,
    #[serde(default)]
    pub min_ollama: Option<String>,
    pub targets: BTreeMap<String, Pin>,
}

/// The parsed `bundle.toml`.
#[derive(Debug, Deserialize)]
pub struct Bundle {
    pub ollama: Release,
    pub codex: Release,
}

/// Where one payload comes from in this build.
#[derive(Debug)]
pub enum SourceChoice {
    Skip,
    Local {
        path: PathBuf,
        version: String,
    },
    Download {
        pin: Pin,
        url: String,
        version: String,
    },
}

impl SourceChoice {
    pub fn version(&self) -> Option<&str> {
        match self {
            SourceChoice::Skip => None,
            SourceChoice::Local { version, .. } | SourceChoice::Download { version, .. } => {
                Some(version)
            }
        }
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Bundle {
    pub fn load(path: &Path) -> Result<Bundle, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read {}: {e}", path.display()))?;
        Bundle::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Bundle, String> {
        let bundle: Bundle = toml::from_str(text).map_err(|e| e.to_string())?;
        for release in [&bundle.ollama, &bundle.codex] {
            for (target, pin) in &release.targets {
                pin.expected().map_err(|e| format!("{target}: {e}"))?;
            }
        }
        bundle.check_ollama_version(&bundle.ollama.version)?;
        Ok(bundle)
    }

    pub fn release(&self, component: Component) -> &Release {
        match component {
            Component::Ollama => &self.ollama,
            Component::Codex => &self.codex,
        }
    }

    pub fn pin(&self, component: Component, target: &str) -> Result<&Pin, String> {
        let release = self.release(component);
        release.targets.get(target).ok_or_else(|| {
            format!(
                "bundle.toml pins no {} {} for target {target} (pinned: {}); {}",
                component.display(),
                release.version,
                release
                    .targets
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                component.switches_hint()
            )
        })
    }

    /// Codex refuses an Ollama older than `codex.min_ollama`: refuse to embed one.
    pub fn check_ollama_version(&self, version: &str) -> Result<(), String> {
        let Some(min) = &self.codex.min_ollama else {
            return Ok(());
        };
        let parse = |v: &str| {
            semver::Version::parse(v.trim_start_matches('v'))
                .map_err(|e| format!("Ollama version '{v}' is not a semantic version: {e}"))
        };
        if parse(version)? < parse(min)? {
            return Err(format!(
                "Ollama {version} is older than {min}, the oldest that Codex {} accepts; pin a newer Ollama in bundle.toml",
                self.codex.version
            ));
        }
        Ok(())
    }
}

/// Applies the build switches (README, "Building") for one payload.
pub fn choose_source(
    bundle: &Bundle,
    component: Component,
    target: &str,
) -> Result<SourceChoice, String> {
    if env_var(&component.skip_var()).as_deref() == Some("1") {
        return Ok(SourceChoice::Skip);
    }
    let release = bundle.release(component);
    let version =
        env_var(&component.archive_version_var()).unwrap_or_else(|| release.version.clone());
    if let Some(file) = env_var(&component.archive_var()) {
        let path = PathBuf::from(&file);
        if !path.is_file() {
            return Err(format!(
                "{}={file}: no such file; point it at a local {} release archive or executable, or set {}=1",
                component.archive_var(),
                component.display(),
                component.skip_var()
            ));
        }
        return Ok(SourceChoice::Local { path, version });
    }
    let pin = bundle.pin(component, target)?.clone();
    let base = env_var("CODEX_OSS_PAYLOAD_MIRROR").unwrap_or_else(|| release.base_url.clone());
    let url = format!("{}/{}", base.trim_end_matches('/'), pin.asset);
    Ok(SourceChoice::Download { pin, url, version })
}
