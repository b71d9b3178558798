//! The CUDA libraries of one unpacked Ollama: an add-on of the Ollama payload (see
//! `payload::Folder`). They go beside its CPU libraries, where Ollama looks for them
//! (`<exe dir>/../lib/ollama/cuda_v13/` on Linux, `<exe dir>\lib\ollama\cuda_v13\` on
//! Windows), so they go with the Ollama version they belong to and survive its repairs.

use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::home::Home;
use crate::payload::{AddOn, AddOnState, Folder, Payload};
use crate::unpack::{FileRecord, Take};

/// The add-on's name in the unpacked Ollama's folder.
const ADDON: &str = "gpu";
/// What is taken of an Ollama release archive.
const TAKE: Take = Take::Folders {
    under: &["lib", "ollama"],
    prefix: "cuda_",
};
/// Where codex-oss recorded them before they were an add-on (paths below `lib/ollama`).
const LEGACY_RECORD: &str = ".codex-oss-gpu.json";

/// The record at `LEGACY_RECORD`.
#[derive(Deserialize)]
struct Legacy {
    asset: String,
    sha256: String,
    folders: Vec<String>,
    installed_at: u64,
    files: Vec<FileRecord>,
}

pub type Record = AddOn;
pub type State = AddOnState;

/// One unpacked Ollama, seen from its GPU libraries.
#[derive(Clone, Debug)]
pub struct Place {
    folder: Folder,
}

impl Place {
    /// The unpacked folder of the embedded Ollama `payload` in `home`.
    pub fn of_embedded(payload: &Payload, home: &Home) -> Place {
        Place {
            folder: payload.folder(home),
        }
    }

    pub fn root(&self) -> &Path {
        self.folder.root()
    }

    /// Where Ollama looks for its libraries: `lib/ollama` of the unpacked folder.
    pub fn lib(&self) -> PathBuf {
        self.root().join("lib").join("ollama")
    }

    pub fn record(&self) -> Option<Record> {
        self.migrate();
        self.folder.addon(ADDON)
    }

    pub fn state(&self) -> State {
        self.migrate();
        self.folder.addon_state(ADDON)
    }

    /// The `cuda_*` folders beside the CPU libraries, recorded or not.
    pub fn cuda_folders(&self) -> Vec<String> {
        TAKE.folders_in(self.root())
            .into_iter()
            .map(|f| f.rsplit('/').next().unwrap_or_default().to_owned())
            .collect()
    }

    /// Unpacks the CUDA folders of `archive` (`asset`, checked against `sha256`) into place.
    pub fn install(&self, archive: &Path, asset: &str, sha256: &str) -> Result<Record, String> {
        self.folder.add(ADDON, archive, TAKE, (asset, sha256))
    }

    /// Removes the libraries; returns the bytes freed.
    pub fn remove(&self) -> io::Result<u64> {
        self.migrate();
        self.folder.remove_addon(ADDON, TAKE)
    }

    /// A record an earlier codex-oss wrote becomes the add-on's record, and what its
    /// interrupted installs left goes.
    fn migrate(&self) {
        crate::payload::remove_leftovers(self.root(), &[".gpu-staging-", ".trash-gpu-"]);
        let path = self.root().join(LEGACY_RECORD);
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        if let Ok(legacy) = serde_json::from_slice::<Legacy>(&bytes) {
            let below = |rel: &str| format!("lib/ollama/{rel}");
            let record = AddOn {
                source: legacy.asset,
                sha256: legacy.sha256,
                folders: legacy.folders.iter().map(|f| below(f)).collect(),
                installed_at: legacy.installed_at,
                files: legacy
                    .files
                    .into_iter()
                    .map(|file| FileRecord {
                        path: below(&file.path),
                        ..file
                    })
                    .collect(),
            };
            if self.folder.write_record(ADDON, &record).is_err() {
                return;
            }
        }
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_an_earlier_codex_oss_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().to_path_buf(), None);
        let payload = Payload {
            name: "ollama",
            version: "0.32.15",
            sha256: "e29129a33be1e29129a33be1e29129a33be1e29129a33be1e29129a33be1abcd",
            entrypoint: "bin/ollama",
            raw_bytes: 0,
            data: &[],
        };
        let place = Place::of_embedded(&payload, &home);
        let cuda = place.lib().join("cuda_v13");
        std::fs::create_dir_all(&cuda).unwrap();
        std::fs::write(cuda.join("libggml-cuda.so"), b"cuda").unwrap();
        let sha = crate::files::sha256_file(&cuda.join("libggml-cuda.so")).unwrap();
        let legacy = serde_json::json!({
            "asset": "ollama-linux-amd64.tar.zst", "sha256": "ab", "folders": ["cuda_v13"],
            "installed_at": 1, "files": [{"path": "cuda_v13/libggml-cuda.so", "size": 4, "sha256": sha}],
        });
        std::fs::write(place.root().join(LEGACY_RECORD), legacy.to_string()).unwrap();
        std::fs::create_dir_all(place.root().join(".gpu-staging-x")).unwrap();
        let State::Installed(record) = place.state() else {
            panic!("not taken over: {:?}", place.state());
        };
        assert_eq!(record.folder_names(), ["cuda_v13"]);
        assert!(!place.root().join(LEGACY_RECORD).exists());
        assert!(!place.root().join(".gpu-staging-x").exists());
    }
}
