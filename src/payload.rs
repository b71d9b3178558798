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
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::home::{make_private_dir, Home};
use crate::lock;
use crate::platform;

/// How long a run waits for another codex-oss that is unpacking the same payload.
const UNPACK_PATIENCE: Duration = Duration::from_secs(10 * 60);

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
    #[error("could not unpack {what}: {source}")]
    Busy { what: String, source: io::Error },
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
        let _lock = unpack_lock(home, self.name).map_err(|source| match source.kind() {
            io::ErrorKind::TimedOut => UnpackError::Busy {
                what: self.label(),
                source,
            },
            _ => self.classify(home.run(), source),
        })?;

        let dest = parent.join(self.dir_name());
        if !self.is_intact(&dest) {
            tracing::info!("unpacking {} into {}", self.label(), dest.display());
            self.unpack(&parent, &dest)?;
        }
        let lease_path = lease_path(&parent, &self.dir_name());
        let lease = lock::open(&lease_path)
            .and_then(|file| lock::try_take(&file, lock::Mode::Shared, &lease_path).map(|_| file))
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
        // A copy that others could have changed is unpacked again, whatever it claims.
        if std::fs::symlink_metadata(dest).map_or(true, |meta| {
            !meta.is_dir() || platform::exposure(&meta).is_some()
        }) {
            return false;
        }
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
        let decoder = zstd::Decoder::with_buffer(self.data).map_err(|e| corrupt(e.to_string()))?;
        extract_tar(decoder, into).map_err(|e| match e {
            ExtractError::Bad(detail) => corrupt(detail),
            // Name the payload's directory, not the temporary one (removed when this fails).
            ExtractError::Write(source) => {
                self.classify(into.parent().unwrap_or(into).to_path_buf(), source)
            }
        })
    }
}

/// Why a tar stream could not be unpacked.
#[derive(Debug)]
enum ExtractError {
    /// The archive itself is wrong: unreadable, or an entry that must not be unpacked.
    Bad(String),
    /// Writing failed.
    Write(io::Error),
}

/// Unpacks a tar stream into the empty directory `into`. Only files, directories and
/// symbolic links are taken, each at a plain relative path (no `..`, no absolute or
/// drive path, no backslash), none written through a link, and no link pointing
/// outside `into`. Returns a record of every file and link, with each file's mode as
/// the filesystem kept it.
fn extract_tar(reader: impl Read, into: &Path) -> Result<Vec<FileRecord>, ExtractError> {
    let bad = |e: io::Error| ExtractError::Bad(e.to_string());
    let mut archive = tar::Archive::new(reader);
    let mut records = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let rel = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| ExtractError::Bad("a file name is not UTF-8".into()))?;
        let parts = plain_relative(&rel)?;
        let path = parts
            .iter()
            .fold(into.to_path_buf(), |p, part| p.join(part));
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            create_dirs_within(into, &parts).map_err(ExtractError::Write)?;
            continue;
        }
        create_dirs_within(into, &parts[..parts.len() - 1]).map_err(ExtractError::Write)?;
        if kind.is_symlink() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .ok_or_else(|| ExtractError::Bad(format!("{rel}: a link without a target")))?;
            let target = target.to_string_lossy().into_owned();
            link_stays_within(&parts, &target)?;
            platform::make_symlink(Path::new(&target), &path).map_err(ExtractError::Write)?;
            records.push(FileRecord {
                path: rel,
                size: 0,
                mode: 0,
                sha256: String::new(),
                mtime_ns: 0,
                link: Some(target),
            });
            continue;
        }
        if !kind.is_file() {
            return Err(ExtractError::Bad(format!(
                "{rel}: not a file, directory or link"
            )));
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let (size, sha256) = copy_hashed(&mut entry, &path).map_err(|e| match e {
            CopyError::Read(e) => ExtractError::Bad(format!("{rel}: {e}")),
            CopyError::Exists => ExtractError::Bad(format!("{rel} appears twice")),
            CopyError::Write(e) => ExtractError::Write(e),
        })?;
        platform::set_mode(&path, mode).map_err(ExtractError::Write)?;
        // Record what the filesystem kept: some (vfat, CIFS, drvfs) ignore chmod.
        let meta = std::fs::metadata(&path).map_err(ExtractError::Write)?;
        records.push(FileRecord {
            path: rel,
            size,
            mode: platform::mode_of(&meta),
            sha256,
            mtime_ns: mtime_of(&meta),
            link: None,
        });
    }
    if records.is_empty() {
        return Err(ExtractError::Bad("no files".into()));
    }
    Ok(records)
}

/// The parts of a plain relative path, or why it is not one.
fn plain_relative(rel: &str) -> Result<Vec<&str>, ExtractError> {
    let parts: Vec<&str> = rel.trim_end_matches('/').split('/').collect();
    let unsafe_part = |part: &&str| {
        part.is_empty() || *part == "." || *part == ".." || part.contains(['\\', ':'])
    };
    if rel.is_empty() || parts.iter().any(unsafe_part) {
        return Err(ExtractError::Bad(format!("unsafe path {rel}")));
    }
    Ok(parts)
}

/// Creates the directories `parts` below `root`, one at a time, refusing to go through
/// anything that is not a directory (a link the archive made, say).
fn create_dirs_within(root: &Path, parts: &[&str]) -> io::Result<()> {
    let mut dir = root.to_path_buf();
    for part in parts {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a directory", dir.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => make_private_dir(&dir)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A link's target must be relative and stay inside the unpacked directory.
fn link_stays_within(link_parts: &[&str], target: &str) -> Result<(), ExtractError> {
    let escape = || {
        ExtractError::Bad(format!(
            "link {} points outside: {target}",
            link_parts.join("/")
        ))
    };
    if target.is_empty() || target.starts_with('/') || target.contains(['\\', ':']) {
        return Err(escape());
    }
    let mut depth = link_parts.len() - 1;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => depth = depth.checked_sub(1).ok_or_else(escape)?,
            _ => depth += 1,
        }
    }
    Ok(())
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
        // The executable bit only: it is what every filesystem keeps (some ignore chmod).
        if meta.len() != self.size || platform::has_exec_bit(&meta) != (self.mode & 0o100 != 0) {
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
    /// Something is already there (an earlier entry, or a link to elsewhere).
    Exists,
    Write(io::Error),
}

fn copy_hashed(reader: &mut impl Read, dest: &Path) -> Result<(u64, String), CopyError> {
    // create_new: never write through a link or over an earlier entry.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => CopyError::Exists,
            _ => CopyError::Write(e),
        })?;
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

/// Takes the payload's unpack lock, waiting (and saying so) while another codex-oss
/// unpacks it.
fn unpack_lock(home: &Home, name: &str) -> io::Result<File> {
    lock::wait(
        &home.run().join(format!("unpack-{name}.lock")),
        lock::Mode::Exclusive,
        "unpacking",
        UNPACK_PATIENCE,
    )
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
    let _lock = unpack_lock(home, name).map_err(io)?;
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
        let Ok(file) = lock::open(&lease) else {
            continue;
        };
        // Without locks nobody can tell whether a version is in use: keep it.
        if lock::try_take(&file, lock::Mode::Exclusive, &lease).ok() == Some(lock::Taken::Held) {
            tracing::info!("removing unused {}", entry.path().display());
            if std::fs::remove_dir_all(entry.path()).is_ok() {
                let _ = std::fs::remove_file(&lease);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tar entry, its name written raw (the tar crate refuses to write unsafe ones).
    enum Entry<'a> {
        File(&'a str, &'a [u8]),
        Link(&'a str, &'a str),
    }

    fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in entries {
            let mut header = tar::Header::new_gnu();
            let (name, data, link) = match entry {
                Entry::File(name, data) => (*name, *data, None),
                Entry::Link(name, target) => (*name, &b""[..], Some(*target)),
            };
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_mode(0o755);
            header.set_size(data.len() as u64);
            if let Some(target) = link {
                header.set_entry_type(tar::EntryType::Symlink);
                header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
            }
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn extract(
        entries: &[Entry<'_>],
    ) -> (tempfile::TempDir, Result<Vec<FileRecord>, ExtractError>) {
        let dir = tempfile::tempdir().unwrap();
        let into = dir.path().join("into");
        std::fs::create_dir(&into).unwrap();
        let result = extract_tar(&tar_of(entries)[..], &into);
        (dir, result)
    }

    fn refused(entries: &[Entry<'_>]) -> String {
        match extract(entries).1 {
            Err(ExtractError::Bad(detail)) => detail,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn plain_files_and_inner_links_unpack() {
        let (dir, result) = extract(&[
            Entry::File("bin/ollama", b"#!/bin/sh\n"),
            Entry::File("lib/ollama/libggml-base.so.0.0.0", b"lib"),
            Entry::Link("lib/ollama/libggml-base.so", "libggml-base.so.0.0.0"),
            Entry::Link("bin/lib", "../lib/ollama"),
        ]);
        let records = result.expect("unpacks");
        assert_eq!(records.len(), 4);
        let into = dir.path().join("into");
        assert_eq!(
            std::fs::read(into.join("lib/ollama/libggml-base.so")).unwrap(),
            b"lib"
        );
        #[cfg(unix)]
        assert!(platform::is_executable(&into.join("bin/ollama")));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for name in [
            "../evil",
            "bin/../../evil",
            "/etc/evil",
            "C:evil",
            "bin\\evil",
            "./evil",
        ] {
            let detail = refused(&[Entry::File(name, b"x")]);
            assert!(detail.contains("unsafe path"), "{name}: {detail}");
        }
    }

    #[test]
    fn nothing_is_written_through_a_link() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().to_string_lossy().into_owned();
        // A link pointing outside is refused as it is.
        let detail = refused(&[Entry::Link("lib", &target)]);
        assert!(detail.contains("points outside"), "{detail}");
        let detail = refused(&[Entry::Link("lib", "../../..")]);
        assert!(detail.contains("points outside"), "{detail}");
        // A file below an inner link, or over one, is refused too.
        let (_dir, result) = extract(&[
            Entry::File("real/x", b"x"),
            Entry::Link("lib", "real"),
            Entry::File("lib/evil", b"y"),
        ]);
        assert!(matches!(result, Err(ExtractError::Write(_))), "{result:?}");
        let detail = refused(&[
            Entry::File("real", b"x"),
            Entry::Link("alias", "real"),
            Entry::File("alias", b"y"),
        ]);
        assert!(detail.contains("appears twice"), "{detail}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
