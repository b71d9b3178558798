//! Add-ons of an unpacked payload: what codex-oss unpacks into an unpacked copy after
//! the fact, from an archive it downloaded and checked (the GPU libraries, into the
//! unpacked Ollama, where Ollama looks for them). The payload code does not know what
//! an add-on is: it unpacks, records, checks, carries over and removes it.
//!
//! Each add-on has a record in the unpacked folder, `.codex-oss-addon-<name>.json`,
//! written last: without it nothing counts as installed. It lists every file as the
//! payload's manifest does (`unpack::FileRecord`), so a damaged add-on is known; the
//! payload's own check looks only at the files it unpacked, and its repair carries
//! every recorded add-on over (`carry_over`). An add-on goes with the payload version
//! it was added to. Putting one in place or taking it away runs under the payload's
//! unpack lock.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Payload;
use crate::files::read_json;
use crate::home::{make_private_dir, Home};
use crate::unpack::{self, FileRecord, Source, Take};

/// The record of an add-on: the files it added and where they came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddOn {
    /// The archive it came from, and its SHA-256.
    pub source: String,
    pub sha256: String,
    /// The folders it added, relative to the unpacked payload (`lib/ollama/cuda_v13`).
    pub folders: Vec<String>,
    /// Seconds since 1970 when it was added.
    pub installed_at: u64,
    pub files: Vec<FileRecord>,
}

impl AddOn {
    /// The bytes it takes.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The last part of each folder's path (`cuda_v13`).
    pub fn folder_names(&self) -> Vec<String> {
        self.folders
            .iter()
            .map(|f| f.rsplit('/').next().unwrap_or(f).to_owned())
            .collect()
    }
}

/// The state of one add-on of one unpacked copy.
#[derive(Debug)]
pub enum AddOnState {
    /// Recorded and intact.
    Installed(AddOn),
    /// A record, but a file is missing or changed.
    Damaged,
    /// None (or an interrupted install's leftovers, which do not count).
    Missing,
}

/// One unpacked copy of a payload (`<home>/<name>/<version>-<hash12>`), whether it is
/// there yet or not, seen by the code that adds to it.
#[derive(Clone, Debug)]
pub struct Folder {
    root: PathBuf,
    home: Home,
    payload: &'static str,
}

/// The names of what an interrupted add could leave.
const LEFTOVERS: [&str; 2] = [".addon-staging-", ".trash-addon-"];

impl Payload {
    /// The folder this payload unpacks into in `home`.
    pub fn folder(&self, home: &Home) -> Folder {
        Folder {
            root: home.payload_dir(self.name).join(self.dir_name()),
            home: home.clone(),
            payload: self.name,
        }
    }
}

impl Folder {
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The record of the add-on `name`, intact or not.
    pub fn addon(&self, name: &str) -> Option<AddOn> {
        read_json(&record_path(&self.root, name))
    }

    pub fn addon_state(&self, name: &str) -> AddOnState {
        match self.addon(name) {
            None => AddOnState::Missing,
            Some(record) if record.files.iter().all(|f| f.is_intact(&self.root)) => {
                AddOnState::Installed(record)
            }
            Some(_) => AddOnState::Damaged,
        }
    }

    /// Writes the record of the add-on `name` (in one rename).
    pub fn write_record(&self, name: &str, record: &AddOn) -> io::Result<()> {
        crate::files::write_atomically(
            &record_path(&self.root, name),
            &serde_json::to_vec_pretty(record).expect("record serialises"),
        )
    }

    /// Unpacks what `take` takes of `archive` (`source`: its file name and SHA-256,
    /// checked already) as the add-on `name`: into a staging folder first, then, under
    /// the payload's unpack lock, each folder in place whole (one rename; the folders
    /// `take` covers that are there now go first) and the record last.
    pub fn add(
        &self,
        name: &str,
        archive: &Path,
        take: Take,
        source: (&str, &str),
    ) -> Result<AddOn, String> {
        super::remove_leftovers(&self.root, &LEFTOVERS);
        let staged = tempfile::Builder::new()
            .prefix(LEFTOVERS[0])
            .tempdir_in(&self.root)
            .map_err(|e| format!("could not unpack into {}: {e}", self.root.display()))?;
        let files = unpack::unpack(Source::Archive(archive.to_path_buf()), staged.path(), take)
            .map_err(|e| format!("could not unpack {}: {e}", source.0))?;
        let mut folders: Vec<String> = files.iter().map(|f| take.folder_of(&f.path)).collect();
        folders.sort();
        folders.dedup();
        let record = AddOn {
            source: source.0.to_owned(),
            sha256: source.1.to_owned(),
            folders,
            installed_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            files,
        };
        let _lock = super::unpack_lock(&self.home, self.payload).map_err(|e| e.to_string())?;
        self.put_in_place(name, take, staged.path(), &record)
            .map_err(|e| format!("could not put it in {}: {e}", self.root.display()))?;
        Ok(record)
    }

    fn put_in_place(
        &self,
        name: &str,
        take: Take,
        staged: &Path,
        record: &AddOn,
    ) -> io::Result<()> {
        match std::fs::remove_file(record_path(&self.root, name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let trash = tempfile::Builder::new()
            .prefix(LEFTOVERS[1])
            .tempdir_in(&self.root)?;
        for (i, folder) in take.folders_in(&self.root).iter().enumerate() {
            std::fs::rename(self.root.join(folder), trash.path().join(i.to_string()))?;
        }
        for folder in &record.folders {
            let dest = self.root.join(folder);
            if let Some(parent) = dest.parent() {
                make_private_dir(parent)?;
            }
            std::fs::rename(staged.join(folder), dest)?;
        }
        self.write_record(name, record)
    }

    /// Removes the add-on `name` under the payload's unpack lock: its record first (from
    /// then on nothing counts as installed), then every folder `take` covers. Returns
    /// the bytes freed.
    pub fn remove_addon(&self, name: &str, take: Take) -> io::Result<u64> {
        let _lock = super::unpack_lock(&self.home, self.payload)?;
        let bytes = self.addon(name).map_or(0, |r| r.bytes());
        match std::fs::remove_file(record_path(&self.root, name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for folder in take.folders_in(&self.root) {
            std::fs::remove_dir_all(self.root.join(folder))?;
        }
        super::remove_leftovers(&self.root, &LEFTOVERS);
        Ok(bytes)
    }
}

fn record_path(root: &Path, name: &str) -> PathBuf {
    root.join(format!(".codex-oss-addon-{name}.json"))
}

/// Moves every recorded add-on of an unpacked copy about to be replaced (`old`, a
/// damaged copy) into its replacement (`new`, not yet in place), so a repair keeps
/// them. Best effort: what others could have changed, or what cannot be moved (a
/// library in use on Windows), is not kept, and is fetched again.
pub fn carry_over(old: &Path, new: &Path) {
    for entry in std::fs::read_dir(old).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file
            .strip_prefix(".codex-oss-addon-")
            .and_then(|rest| rest.strip_suffix(".json"))
        else {
            continue;
        };
        if read_json::<AddOn>(&entry.path()).is_some_and(|record| !carry(old, new, name, &record)) {
            tracing::info!("could not keep the add-on {name} across the repair");
        }
    }
}

fn carry(old: &Path, new: &Path, name: &str, record: &AddOn) -> bool {
    // Links cannot be changed in place: their folders are checked.
    let exposed = |path: &Path| {
        std::fs::symlink_metadata(path).map_or(true, |meta| {
            !meta.file_type().is_symlink() && crate::platform::exposure(&meta).is_some()
        })
    };
    let mut paths = vec![old.to_path_buf()];
    for folder in &record.folders {
        let path = old.join(folder);
        paths.extend(path.parent().map(Path::to_path_buf));
        paths.push(path);
    }
    paths.extend(record.files.iter().map(|f| old.join(&f.path)));
    if paths.iter().any(|p| exposed(p)) {
        return false;
    }
    record.folders.iter().all(|folder| {
        let dest = new.join(folder);
        dest.parent()
            .is_none_or(|parent| make_private_dir(parent).is_ok())
            && std::fs::rename(old.join(folder), dest).is_ok()
    }) && std::fs::rename(record_path(old, name), record_path(new, name)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::tests::{tar_zst, Entry, CUDA};

    /// An archive with a CPU library and two CUDA folders.
    fn archive(dir: &Path) -> PathBuf {
        let path = dir.join("ollama-linux-amd64.tar.zst");
        let archive = tar_zst(&[
            Entry::File("lib/ollama/libggml-base.so", b"cpu"),
            Entry::File("lib/ollama/cuda_v12/libggml-cuda.so", b"cuda_v12"),
            Entry::File("lib/ollama/cuda_v13/libggml-cuda.so", b"cuda_v13"),
        ]);
        std::fs::write(&path, archive).unwrap();
        path
    }

    fn folder(home: &Home, root: &Path) -> Folder {
        std::fs::create_dir_all(root.join("lib/ollama")).unwrap();
        std::fs::write(root.join("lib/ollama/libggml-base.so"), b"cpu").unwrap();
        Folder {
            root: root.to_path_buf(),
            home: home.clone(),
            payload: "ollama",
        }
    }

    fn home(dir: &Path) -> Home {
        let home = Home::new(dir.join("home"), None);
        std::fs::create_dir_all(home.run()).unwrap();
        home
    }

    #[test]
    fn added_damaged_removed() {
        let dir = tempfile::tempdir().unwrap();
        let home = home(dir.path());
        let place = folder(&home, &dir.path().join("copy"));
        let record = place
            .add("gpu", &archive(dir.path()), CUDA, ("a.tar.zst", "ab"))
            .unwrap();
        assert_eq!(
            record.folders,
            ["lib/ollama/cuda_v12", "lib/ollama/cuda_v13"]
        );
        assert_eq!(record.folder_names(), ["cuda_v12", "cuda_v13"]);
        assert!(
            matches!(place.addon_state("gpu"), AddOnState::Installed(ref r) if r.bytes() == 16)
        );

        // Same size, other content, touched: damaged.
        let lib = place.root().join("lib/ollama/cuda_v13/libggml-cuda.so");
        std::fs::write(&lib, b"cuda_vXX").unwrap();
        assert!(matches!(place.addon_state("gpu"), AddOnState::Damaged));

        assert_eq!(place.remove_addon("gpu", CUDA).unwrap(), 16);
        assert!(matches!(place.addon_state("gpu"), AddOnState::Missing));
        assert!(CUDA.folders_in(place.root()).is_empty());
        assert!(
            place.root().join("lib/ollama/libggml-base.so").is_file(),
            "the payload's own files stay"
        );
    }

    #[test]
    fn leftovers_of_an_interrupted_add_do_not_count_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let home = home(dir.path());
        let place = folder(&home, &dir.path().join("copy"));
        std::fs::create_dir_all(place.root().join("lib/ollama/cuda_v12/old")).unwrap();
        std::fs::create_dir_all(place.root().join(".addon-staging-x")).unwrap();
        assert!(matches!(place.addon_state("gpu"), AddOnState::Missing));
        place
            .add("gpu", &archive(dir.path()), CUDA, ("a.tar.zst", "ab"))
            .unwrap();
        assert!(matches!(place.addon_state("gpu"), AddOnState::Installed(_)));
        assert!(!place.root().join("lib/ollama/cuda_v12/old").exists());
        assert!(!place.root().join(".addon-staging-x").exists());
    }

    #[test]
    fn a_repair_carries_every_recorded_addon_over() {
        let dir = tempfile::tempdir().unwrap();
        let home = home(dir.path());
        let old = folder(&home, &dir.path().join("old"));
        old.add("gpu", &archive(dir.path()), CUDA, ("a.tar.zst", "ab"))
            .unwrap();
        let new = folder(&home, &dir.path().join("new"));
        carry_over(old.root(), new.root());
        assert!(matches!(new.addon_state("gpu"), AddOnState::Installed(_)));
    }
}
