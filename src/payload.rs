//! The payloads embedded at build time, and their unpacking into the codex-oss home.
//!
//! Each payload unpacks into its own versioned directory,
//! `<home>/<name>/<version>-<hash12>/`, the way rustup keeps toolchains, so a running
//! instance keeps its copy while a newer bundle unpacks beside it. Unpacking is
//! atomic (a temporary directory in the same parent, then a rename) and serialised
//! by a lock file, so simultaneous first runs leave one intact copy. A manifest
//! written last records every file's size, mode, mtime and SHA-256: it is the stamp
//! that decides whether to unpack again, and a missing or damaged file (other size,
//! or other content after a changed mtime) is repaired by unpacking again.
//!
//! Each instance holds a shared lock on its version's lease file while it runs;
//! versions whose lease nobody holds are removed when a newer one is unpacked.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::home::{make_private_dir, Home};

/// One payload embedded by build.rs.
#[derive(Debug)]
pub struct Payload {
    pub name: &'static str,
    pub version: &'static str,
    /// SHA-256 of the compressed bytes; part of the directory name.
    pub sha256: &'static str,
    /// The executable, relative to the unpacked directory.
    pub entrypoint: &'static str,
    pub raw_bytes: u64,
    pub data: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/payloads.rs"));

/// The embedded Ollama, if this build has one.
pub fn ollama() -> Option<&'static Payload> {
    OLLAMA.as_ref()
}

/// The embedded Codex, if this build has one.
pub fn codex() -> Option<&'static Payload> {
    CODEX.as_ref()
}

const MANIFEST: &str = ".codex-oss-manifest.json";

/// Why a payload could not be unpacked. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(
        "not enough disk space to unpack {what} ({mb} MB) into {}: free some space or set CODEX_OSS_HOME to a disk with room",
        dir.display()
    )]
    NoSpace { what: String, mb: u64, dir: PathBuf },
    #[error(
        "cannot write to {} to unpack {what} ({source}): make it writable or set CODEX_OSS_HOME to a writable directory",
        dir.display()
    )]
    NotWritable {
        what: String,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("could not unpack {what} into {}: {source}", dir.display())]
    Io {
        what: String,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("the embedded {what} is damaged ({detail}): reinstall codex-oss")]
    Corrupt { what: String, detail: String },
}

/// An unpacked payload, kept from removal for as long as this value lives.
#[derive(Debug)]
pub struct Unpacked {
    pub executable: PathBuf,
    _lease: File,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Manifest {
    name: String,
    version: String,
    sha256: String,
    files: Vec<FileRecord>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct FileRecord {
    path: String,
    size: u64,
    mode: u32,
    sha256: String,
    mtime_ns: u128,
    /// For a symbolic link (Ollama's `libggml-base.so -> libggml-base.so.0`...): its target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

impl Payload {
    pub fn label(&self) -> String {
        let name = match self.name {
            "ollama" => "Ollama",
            "codex" => "Codex",
            other => other,
        };
        format!("{name} {}", self.version)
    }

    /// `<version>-<first 12 hex digits of the payload hash>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.version, &self.sha256[..12])
    }

    /// Makes sure an intact copy is unpacked, and leases it for this process.
    pub fn ensure_unpacked(&self, home: &Home) -> Result<Unpacked, UnpackError> {
        let parent = home.payload_dir(self.name);
        let io_err = |dir: &Path| {
            let dir = dir.to_path_buf();
            move |source: io::Error| self.classify(dir, source)
        };
        make_private_dir(&parent).map_err(io_err(&parent))?;
        make_private_dir(&home.run()).map_err(io_err(&home.run()))?;
        let _lock = lock_file(
            &home.run().join(format!("unpack-{}.lock", self.name)),
            Lock::Exclusive,
        )
        .map_err(io_err(&home.run()))?;

        let dest = parent.join(self.dir_name());
        if !self.is_intact(&dest) {
            tracing::info!("unpacking {} into {}", self.label(), dest.display());
            self.unpack(&parent, &dest)?;
        }
        let lease = lock_file(&lease_path(&parent, &self.dir_name()), Lock::Shared)
            .map_err(io_err(&parent))?;
        remove_unused(&parent, Some(&self.dir_name()));
        Ok(Unpacked {
            executable: dest.join(self.entrypoint),
            _lease: lease,
        })
    }

    fn classify(&self, dir: PathBuf, source: io::Error) -> UnpackError {
        let what = self.label();
        if matches!(
            source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ) || source.raw_os_error() == Some(28)
        {
            UnpackError::NoSpace {
                what,
                mb: self.raw_bytes.div_ceil(1_000_000),
                dir,
            }
        } else if matches!(
            source.kind(),
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
        ) {
            UnpackError::NotWritable { what, dir, source }
        } else {
            UnpackError::Io { what, dir, source }
        }
    }

    /// True when `dest` holds this payload with every file as it was unpacked.
    fn is_intact(&self, dest: &Path) -> bool {
        let Ok(text) = std::fs::read(dest.join(MANIFEST)) else {
            return false;
        };
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&text) else {
            return false;
        };
        if manifest.sha256 != self.sha256 || manifest.version != self.version {
            return false;
        }
        manifest.files.iter().all(|record| record.is_intact(dest))
    }

    /// Unpacks into a temporary directory beside `dest`, then renames it into place.
    fn unpack(&self, parent: &Path, dest: &Path) -> Result<(), UnpackError> {
        let err = |source| self.classify(parent.to_path_buf(), source);
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(parent)
            .map_err(|e| err(without_temp_path(e)))?;
        let files = self.extract(temp.path())?;
        let manifest = Manifest {
            name: self.name.to_owned(),
            version: self.version.to_owned(),
            sha256: self.sha256.to_owned(),
            files,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        write_synced(&temp.path().join(MANIFEST), &json).map_err(err)?;

        if dest.exists() {
            // A damaged copy: move it aside (a running instance keeps its open files).
            let trash = tempfile::Builder::new()
                .prefix(".trash-")
                .tempdir_in(parent)
                .map_err(|e| err(without_temp_path(e)))?;
            let aside = trash.path().join("old");
            std::fs::rename(dest, &aside).map_err(err)?;
            std::fs::rename(temp.keep(), dest).map_err(err)?;
            drop(trash);
        } else {
            std::fs::rename(temp.keep(), dest).map_err(err)?;
        }
        Ok(())
    }

    fn extract(&self, into: &Path) -> Result<Vec<FileRecord>, UnpackError> {
        let corrupt = |detail: String| UnpackError::Corrupt {
            what: self.label(),
            detail,
        };
        // Name the payload's directory, not the temporary one (removed when this fails).
        let err = |source| self.classify(into.parent().unwrap_or(into).to_path_buf(), source);
        let decoder = zstd::Decoder::with_buffer(self.data).map_err(|e| corrupt(e.to_string()))?;
        let mut archive = tar::Archive::new(decoder);
        let mut records = Vec::new();
        for entry in archive.entries().map_err(|e| corrupt(e.to_string()))? {
            let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
            let rel = entry
                .path()
                .map_err(|e| corrupt(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            if rel.split('/').any(|part| part == ".." || part.is_empty()) {
                return Err(corrupt(format!("unsafe path {rel}")));
            }
            let path = into.join(&rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(err)?;
            }
            let kind = entry.header().entry_type();
            if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| corrupt(format!("{rel}: bad link")))?;
                make_symlink(&target, &path).map_err(err)?;
                records.push(FileRecord {
                    path: rel,
                    size: 0,
                    mode: 0,
                    sha256: String::new(),
                    mtime_ns: 0,
                    link: Some(target.to_string_lossy().into_owned()),
                });
                continue;
            }
            let mode = entry.header().mode().unwrap_or(0o644);
            let (size, sha256) = copy_hashed(&mut entry, &path).map_err(|e| match e {
                CopyError::Read(e) => corrupt(format!("{rel}: {e}")),
                CopyError::Write(e) => err(e),
            })?;
            set_mode(&path, mode).map_err(err)?;
            let mtime_ns = mtime_ns(&path).map_err(err)?;
            records.push(FileRecord {
                path: rel,
                size,
                mode: mode & 0o777,
                sha256,
                mtime_ns,
                link: None,
            });
        }
        if records.is_empty() {
            return Err(corrupt("no files".into()));
        }
        Ok(records)
    }
}

impl FileRecord {
    fn is_intact(&self, dest: &Path) -> bool {
        let path = dest.join(&self.path);
        if let Some(target) = &self.link {
            // Windows has no links in its archives; `make_symlink` copies there.
            return if cfg!(unix) {
                std::fs::read_link(&path).is_ok_and(|t| t == Path::new(target))
            } else {
                path.exists()
            };
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            return false;
        };
        if meta.len() != self.size || !mode_matches(&meta, self.mode) {
            return false;
        }
        if mtime_of(&meta) == self.mtime_ns {
            return true;
        }
        // Same size but touched since unpacking: trust only the content.
        sha256_file(&path).is_ok_and(|hash| hash == self.sha256)
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_hashed(reader: &mut impl Read, dest: &Path) -> Result<(u64, String), CopyError> {
    let mut file = File::create(dest).map_err(CopyError::Write)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(CopyError::Read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(CopyError::Write)?;
        size += n as u64;
    }
    file.flush().map_err(CopyError::Write)?;
    Ok((size, hex(&hasher.finalize())))
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// tempfile's errors end "at path <the temporary directory>", a name that means nothing
/// to the user and no longer exists: keep the cause (and its kind) only.
fn without_temp_path(e: io::Error) -> io::Error {
    match e.to_string().split_once(" at path ") {
        Some((cause, _)) => io::Error::new(e.kind(), cause.to_owned()),
        None => e,
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn mtime_of(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

fn mtime_ns(path: &Path) -> io::Result<u128> {
    Ok(mtime_of(&std::fs::metadata(path)?))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn mode_matches(meta: &std::fs::Metadata, mode: u32) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777 == mode & 0o777
}

#[cfg(not(unix))]
fn mode_matches(_meta: &std::fs::Metadata, _mode: u32) -> bool {
    true
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    // Release archives for Windows carry no links; copy the target if one appears.
    std::fs::copy(link.parent().unwrap_or(Path::new(".")).join(target), link).map(|_| ())
}

/// How a lock file is held.
#[derive(Clone, Copy)]
pub enum Lock {
    Shared,
    Exclusive,
}

/// Opens (creating) `path` and blocks until the lock is held; released when the file drops.
pub fn lock_file(path: &Path, lock: Lock) -> io::Result<File> {
    // A lock on an existing file works read-only too (a read-only home, say).
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .or_else(|e| File::open(path).map_err(|_| e))?;
    match lock {
        Lock::Shared => file.lock_shared()?,
        Lock::Exclusive => file.lock()?,
    }
    Ok(file)
}

/// Removes every unpacked version of `name` that no running instance leases.
pub fn remove_unleased(home: &Home, name: &str) -> Result<(), UnpackError> {
    let parent = home.payload_dir(name);
    if !parent.exists() {
        return Ok(());
    }
    let io = |source| UnpackError::Io {
        what: name.to_owned(),
        dir: home.run(),
        source,
    };
    make_private_dir(&home.run()).map_err(io)?;
    let _lock = lock_file(
        &home.run().join(format!("unpack-{name}.lock")),
        Lock::Exclusive,
    )
    .map_err(io)?;
    remove_unused(&parent, None);
    Ok(())
}

fn lease_path(parent: &Path, dir_name: &str) -> PathBuf {
    parent.join(format!(".{dir_name}.lease"))
}

/// Removes other versions nobody leases, and leftovers of interrupted unpacks.
/// Runs under the unpack lock, so no instance is between unpacking and leasing.
fn remove_unused(parent: &Path, keep: Option<&str>) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") || name.starts_with(".trash-") {
            let _ = std::fs::remove_dir_all(entry.path());
            continue;
        }
        if Some(name.as_str()) == keep || name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let lease = lease_path(parent, &name);
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lease)
        else {
            continue;
        };
        if file.try_lock().is_ok() {
            tracing::info!("removing unused {}", entry.path().display());
            if std::fs::remove_dir_all(entry.path()).is_ok() {
                let _ = std::fs::remove_file(&lease);
            }
        }
    }
}
