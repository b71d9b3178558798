//! The CUDA libraries of one unpacked Ollama: where they go, the record that says they
//! are complete, and putting them in place or taking them away.
//!
//! They live inside the unpacked Ollama's own versioned folder, beside its CPU
//! libraries, where Ollama looks for them (`<exe dir>/../lib/ollama/cuda_v13/` on Linux,
//! `<exe dir>\lib\ollama\cuda_v13\` on Windows): so they are removed with the Ollama
//! version they belong to, and the payload's own check ignores them (it looks only at
//! the files it unpacked). A record, `.codex-oss-gpu.json` in that folder, is written
//! last: without it nothing counts as installed. It lists every file with its size,
//! mtime and SHA-256, the way the payload's manifest does, so a damaged library is
//! fetched again; a repair of the payload carries the folders and their record over
//! (`carry_over`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::files::{mtime_of, sha256_file};

use serde::{Deserialize, Serialize};

/// The record of the installed CUDA libraries, in the unpacked Ollama's folder.
pub const RECORD: &str = ".codex-oss-gpu.json";

/// One file or link of the libraries, relative to `lib/ollama`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    pub path: String,
    size: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sha256: String,
    #[serde(default)]
    mtime_ns: u128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

impl FileRecord {
    /// A file just written at `written`.
    pub fn file(path: String, size: u64, sha256: String, written: &Path) -> FileRecord {
        let mtime_ns = std::fs::metadata(written).map_or(0, |m| mtime_of(&m));
        FileRecord {
            path,
            size,
            sha256,
            mtime_ns,
            link: None,
        }
    }

    pub fn link(path: String, target: String) -> FileRecord {
        FileRecord {
            path,
            size: 0,
            sha256: String::new(),
            mtime_ns: 0,
            link: Some(target),
        }
    }

    /// True when the file below `lib` is as it was written.
    pub fn is_intact(&self, lib: &Path) -> bool {
        let path = lib.join(&self.path);
        if let Some(target) = &self.link {
            return crate::payload::link_is_intact(&path, target);
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            return false;
        };
        if meta.len() != self.size {
            return false;
        }
        mtime_of(&meta) == self.mtime_ns || sha256_file(&path).is_ok_and(|hash| hash == self.sha256)
    }
}

/// What `RECORD` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The archive they came from, and its SHA-256.
    pub asset: String,
    pub sha256: String,
    /// The folders (`cuda_v12`, `cuda_v13`).
    pub folders: Vec<String>,
    /// Seconds since 1970 when they were installed.
    pub installed_at: u64,
    pub files: Vec<FileRecord>,
}

impl Record {
    /// The bytes the libraries take.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The state of the CUDA libraries of one unpacked Ollama.
#[derive(Debug)]
pub enum State {
    /// Installed and intact.
    Installed(Record),
    /// A record, but a file is missing or changed.
    Damaged,
    /// None (or an interrupted install's leftovers, which do not count).
    Missing,
}

/// One unpacked Ollama, seen from its GPU libraries.
#[derive(Clone, Debug)]
pub struct Place {
    /// The unpacked version folder (`<home>/ollama/<version>-<hash>`).
    root: PathBuf,
}

impl Place {
    pub fn new(root: PathBuf) -> Place {
        Place { root }
    }

    /// The unpacked folder of `executable`, an unpacked payload's `entrypoint`
    /// (`.../0.32.15-abc/bin/ollama` with `bin/ollama`).
    pub fn of_executable(executable: &Path, entrypoint: &str) -> Option<Place> {
        let depth = entrypoint.split('/').filter(|p| !p.is_empty()).count();
        executable
            .ancestors()
            .nth(depth)
            .map(|root| Place::new(root.to_path_buf()))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where Ollama looks for its libraries: `lib/ollama` of the unpacked folder.
    pub fn lib(&self) -> PathBuf {
        self.root.join("lib").join("ollama")
    }

    fn record_path(&self) -> PathBuf {
        self.root.join(RECORD)
    }

    pub fn record(&self) -> Option<Record> {
        serde_json::from_slice(&std::fs::read(self.record_path()).ok()?).ok()
    }

    pub fn state(&self) -> State {
        let Some(record) = self.record() else {
            return State::Missing;
        };
        let lib = self.lib();
        if record.files.iter().all(|f| f.is_intact(&lib)) {
            State::Installed(record)
        } else {
            State::Damaged
        }
    }

    /// The `cuda_*` folders beside the CPU libraries, recorded or not.
    pub fn cuda_folders(&self) -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir(self.lib())
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with("cuda_"))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }

    /// Moves the unpacked folders of `staged` (`staged/cuda_v13`...) into place and
    /// writes the record last. Runs under the payload's unpack lock. Each folder appears
    /// whole (one rename); folders of an earlier or interrupted install go first.
    pub fn put_in_place(&self, staged: &Path, record: &Record) -> io::Result<()> {
        let lib = self.lib();
        crate::home::make_private_dir(&lib)?;
        let _ = std::fs::remove_file(self.record_path());
        let trash = tempfile::Builder::new()
            .prefix(".trash-gpu-")
            .tempdir_in(&self.root)?;
        for folder in self.cuda_folders() {
            std::fs::rename(lib.join(&folder), trash.path().join(&folder))?;
        }
        for folder in &record.folders {
            std::fs::rename(staged.join(folder), lib.join(folder))?;
        }
        crate::files::write_atomically(
            &self.record_path(),
            &serde_json::to_vec_pretty(record).expect("record serialises"),
        )
    }

    /// Removes what an interrupted install left (staging and trash folders).
    pub fn clean_leftovers(&self) {
        for entry in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".gpu-staging-") || name.starts_with(".trash-gpu-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Removes the libraries: the record first (from then on nothing counts as
    /// installed), then every `cuda_*` folder. Runs under the payload's unpack lock.
    /// Returns the bytes freed.
    pub fn remove(&self) -> io::Result<u64> {
        let bytes = self.record().map_or(0, |r| r.bytes());
        match std::fs::remove_file(self.record_path()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for folder in self.cuda_folders() {
            std::fs::remove_dir_all(self.lib().join(folder))?;
        }
        Ok(bytes)
    }
}

/// Seconds since 1970, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Moves the CUDA libraries of an unpacked Ollama about to be replaced (`old`, a damaged
/// copy) into its replacement (`new`, not yet in place), so a repair of the payload keeps
/// them. Best effort: what cannot be moved (a library in use on Windows) is fetched again.
pub fn carry_over(old: &Path, new: &Path) {
    let (old, new) = (Place::new(old.to_path_buf()), Place::new(new.to_path_buf()));
    let Some(record) = old.record() else {
        return;
    };
    // What others could have changed is fetched again, not kept (links cannot be changed
    // in place: their folders are checked).
    let exposed = |path: &Path| {
        std::fs::symlink_metadata(path).map_or(true, |meta| {
            !meta.file_type().is_symlink() && crate::platform::exposure(&meta).is_some()
        })
    };
    let mut paths = vec![old.root().to_path_buf(), old.lib()];
    paths.extend(record.folders.iter().map(|f| old.lib().join(f)));
    paths.extend(record.files.iter().map(|f| old.lib().join(&f.path)));
    if paths.iter().any(|p| exposed(p)) {
        return;
    }
    let moved = crate::home::make_private_dir(&new.lib()).is_ok()
        && record
            .folders
            .iter()
            .all(|folder| std::fs::rename(old.lib().join(folder), new.lib().join(folder)).is_ok())
        && std::fs::rename(old.record_path(), new.record_path()).is_ok();
    if !moved {
        tracing::info!(
            "could not keep the CUDA libraries across the repair; they are fetched again"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged_install(root: &Path) -> (Place, tempfile::TempDir) {
        let place = Place::new(root.to_path_buf());
        std::fs::create_dir_all(place.lib()).unwrap();
        std::fs::write(place.lib().join("libggml-base.so"), b"cpu").unwrap();
        let staged = tempfile::tempdir_in(root).unwrap();
        let mut files = Vec::new();
        for folder in ["cuda_v12", "cuda_v13"] {
            std::fs::create_dir(staged.path().join(folder)).unwrap();
            let path = staged.path().join(folder).join("libggml-cuda.so");
            std::fs::write(&path, folder.as_bytes()).unwrap();
            let sha = crate::files::hex(&<sha2::Sha256 as sha2::Digest>::digest(folder.as_bytes()));
            files.push(FileRecord::file(
                format!("{folder}/libggml-cuda.so"),
                8,
                sha,
                &path,
            ));
        }
        let record = Record {
            asset: "ollama-linux-amd64.tar.zst".into(),
            sha256: "ab".repeat(32),
            folders: vec!["cuda_v12".into(), "cuda_v13".into()],
            installed_at: now_secs(),
            files,
        };
        place.put_in_place(staged.path(), &record).unwrap();
        (place, staged)
    }

    #[test]
    fn installed_damaged_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (place, _staged) = staged_install(dir.path());
        assert!(matches!(place.state(), State::Installed(ref r) if r.bytes() == 16));
        assert_eq!(place.cuda_folders(), ["cuda_v12", "cuda_v13"]);

        // Same size, other content, touched: damaged.
        std::fs::write(place.lib().join("cuda_v13/libggml-cuda.so"), b"cuda_vXX").unwrap();
        assert!(matches!(place.state(), State::Damaged));

        assert_eq!(place.remove().unwrap(), 16);
        assert!(matches!(place.state(), State::Missing));
        assert!(place.cuda_folders().is_empty());
        assert!(
            place.lib().join("libggml-base.so").is_file(),
            "the CPU libraries stay"
        );
    }

    #[test]
    fn leftovers_of_an_interrupted_install_do_not_count_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let place = Place::new(dir.path().to_path_buf());
        std::fs::create_dir_all(place.lib().join("cuda_v12")).unwrap();
        assert!(matches!(place.state(), State::Missing));
        let (place, _staged) = staged_install(dir.path());
        assert!(matches!(place.state(), State::Installed(_)));
    }

    #[test]
    fn a_repair_carries_them_over() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        let (_, _staged) = staged_install(&old);
        let new = dir.path().join("new");
        std::fs::create_dir_all(new.join("lib/ollama")).unwrap();
        carry_over(&old, &new);
        assert!(matches!(Place::new(new).state(), State::Installed(_)));
    }

    #[test]
    fn the_folder_of_an_unpacked_executable() {
        let place =
            Place::of_executable(Path::new("/h/ollama/0.32.15-abc/bin/ollama"), "bin/ollama");
        assert_eq!(
            place.unwrap().lib(),
            Path::new("/h/ollama/0.32.15-abc/lib/ollama")
        );
        let place =
            Place::of_executable(Path::new("/h/ollama/0.32.15-abc/ollama.exe"), "ollama.exe");
        assert_eq!(place.unwrap().root(), Path::new("/h/ollama/0.32.15-abc"));
    }
}
