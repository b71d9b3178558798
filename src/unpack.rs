//! The one way codex-oss puts an archive on disk: the payloads embedded at build time
//! and the archives it downloads (the GPU libraries from Ollama's release) are unpacked
//! here, under the same rules, and recorded file by file in the same form.
//!
//! Only files, folders, symbolic links and (as copies) hard links are taken, each at a
//! plain relative path (see `Take` for which entries and where), none written through
//! a link or over an earlier entry, no link pointing outside or through another link,
//! no hard link taken from anything but a file the archive gave.
//!
//! Two threads share the work, as `zstd -dc | tar -x` does on two cores: a reader
//! decompresses, checks and hashes the entries, and hands their bytes in large chunks to
//! the calling thread, which writes them (a bounded queue keeps memory flat; the chunks
//! go back to the reader to be filled again). A payload build/pack.rs made records each
//! file's SHA-256 in the archive (a PAX header, `CODEX_OSS.sha256`), so its reader does
//! not hash what the build already did; a downloaded archive is hashed as it is read.

mod paths;
mod record;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use sha2::{Digest, Sha256};

use crate::files::{hex, mtime_of};
use crate::platform;
pub use paths::Take;
pub use record::FileRecord;

/// The PAX keyword under which build/pack.rs records a file's SHA-256.
pub const SHA256_KEY: &str = "CODEX_OSS.sha256";

/// The largest zstd window of an embedded payload: 2^27 bytes (128 MiB of memory while
/// unpacking). build/pack.rs compresses release payloads with it.
const EMBEDDED_WINDOW_LOG: u32 = 27;
/// The largest of a downloaded archive (2 GiB, zstd's own limit): it is checked against
/// its pinned hash before it is read, so its window is the release's own.
const ARCHIVE_WINDOW_LOG: u32 = 31;

/// Bytes a file's content is handed over in.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the reader and the writer (memory: at most this many MiB).
const QUEUED_CHUNKS: usize = 16;

/// Where the archive comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A zstd-compressed tar embedded at build time (its file hashes recorded in it).
    Embedded(&'static [u8]),
    /// A release archive on disk, already checked against its pinned hash: a `.tar.zst`
    /// or a `.zip`.
    Archive(PathBuf),
}

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The archive itself is wrong: unreadable, or an entry that must not be unpacked.
    #[error("{0}")]
    Bad(String),
    /// Writing failed.
    #[error(transparent)]
    Write(io::Error),
    /// The writer stopped (and says why): the reader's way to stop too; never returned.
    #[error("the writer stopped")]
    Gone,
}

/// Unpacks what `take` takes of `source` into the empty folder `into`; returns a record
/// of every file and link, with each file's mode as the filesystem kept it.
pub fn unpack(source: Source, into: &Path, take: Take) -> Result<Vec<FileRecord>, ExtractError> {
    let (tx, rx) = mpsc::sync_channel(QUEUED_CHUNKS);
    let (spent_tx, spent) = mpsc::channel();
    let queue = Queue { tx, spent };
    let reading = std::thread::spawn(move || read(source, take, &queue));
    let written = write_entries(&rx, into, &spent_tx);
    drop(rx); // a writer that stopped early stops the reader too
    let read = reading
        .join()
        .unwrap_or_else(|_| Err(ExtractError::Bad("the archive reader failed".into())));
    // A bad archive explains a failed write (the reader stopped mid-file); say that first.
    match read {
        Err(ExtractError::Gone) | Ok(()) => {}
        Err(e) => return Err(e),
    }
    let records = written?;
    if records.is_empty() {
        return Err(ExtractError::Bad(take.nothing()));
    }
    Ok(records)
}

/// What the reader hands the writer.
enum Piece {
    Dir(Vec<String>),
    Link {
        parts: Vec<String>,
        target: String,
    },
    /// A hard link: a copy of the file an earlier entry made.
    Copy {
        parts: Vec<String>,
        of: Vec<String>,
        mode: u32,
    },
    FileStart {
        parts: Vec<String>,
        mode: u32,
    },
    Chunk(Vec<u8>),
    FileEnd {
        size: u64,
        sha256: String,
    },
}

/// The reader's end: pieces go out, spent chunks come back.
struct Queue {
    tx: SyncSender<Piece>,
    spent: Receiver<Vec<u8>>,
}

impl Queue {
    /// Hands a piece over; `Gone` when the writer has stopped (it says why).
    fn send(&self, piece: Piece) -> Result<(), ExtractError> {
        self.tx.send(piece).map_err(|_| ExtractError::Gone)
    }

    /// Hands over the file at `parts` and its content in chunks; its SHA-256 is `known`,
    /// or computed here.
    fn send_file(
        &self,
        parts: Vec<String>,
        mode: u32,
        rel: &str,
        content: &mut dyn Read,
        known: Option<String>,
    ) -> Result<(), ExtractError> {
        self.send(Piece::FileStart { parts, mode })?;
        let mut hasher = known.is_none().then(Sha256::new);
        let mut size = 0u64;
        loop {
            // A spent chunk if there is one, else a new one.
            let mut chunk = self
                .spent
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
            chunk.clear();
            let n = (&mut *content)
                .take(CHUNK as u64)
                .read_to_end(&mut chunk)
                .map_err(|e| ExtractError::Bad(format!("{rel}: {e}")))?;
            if n == 0 {
                break;
            }
            if let Some(hasher) = &mut hasher {
                hasher.update(&chunk);
            }
            size += n as u64;
            self.send(Piece::Chunk(chunk))?;
        }
        let sha256 = known.unwrap_or_else(|| hex(&hasher.expect("hashed").finalize()));
        self.send(Piece::FileEnd { size, sha256 })
    }
}

/// The reader's side, for either kind of source.
fn read(source: Source, take: Take, queue: &Queue) -> Result<(), ExtractError> {
    let bad = |e: io::Error| ExtractError::Bad(e.to_string());
    match source {
        Source::Embedded(data) => {
            let mut decoder = zstd::Decoder::with_buffer(data).map_err(bad)?;
            decoder.window_log_max(EMBEDDED_WINDOW_LOG).map_err(bad)?;
            read_tar(decoder, take, queue, true)
        }
        Source::Archive(path) => {
            let named = |e: io::Error| ExtractError::Bad(format!("{}: {e}", path.display()));
            let mut file = File::open(&path).map_err(named)?;
            let mut magic = [0u8; 4];
            file.read_exact(&mut magic).map_err(named)?;
            let file = File::open(&path).map_err(named)?;
            match magic {
                [0x28, 0xb5, 0x2f, 0xfd] => {
                    let mut decoder = zstd::Decoder::new(file).map_err(bad)?;
                    decoder.window_log_max(ARCHIVE_WINDOW_LOG).map_err(bad)?;
                    read_tar(decoder, take, queue, false)
                }
                [b'P', b'K', 3, 4] => read_zip(file, take, queue),
                _ => Err(ExtractError::Bad(
                    "not a .tar.zst or .zip archive".to_owned(),
                )),
            }
        }
    }
}

/// Reads a tar stream; `recorded`: trust the SHA-256 the archive records for a file.
fn read_tar(
    reader: impl Read,
    take: Take,
    queue: &Queue,
    recorded: bool,
) -> Result<(), ExtractError> {
    let bad = |e: io::Error| ExtractError::Bad(e.to_string());
    let mut archive = tar::Archive::new(reader);
    let mut links = paths::Links::default();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let rel = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| ExtractError::Bad("a file name is not UTF-8".into()))?;
        let Some(parts) = take.parts(&rel).map_err(ExtractError::Bad)? else {
            continue;
        };
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let link_name = || Some(entry.link_name().ok()??.to_string_lossy().into_owned());
        let piece = if kind.is_dir() {
            Piece::Dir(parts)
        } else if kind.is_symlink() {
            let target = link_name()
                .ok_or_else(|| ExtractError::Bad(format!("{rel}: a link without a target")))?;
            take.check_link(&parts, &target)
                .map_err(ExtractError::Bad)?;
            links.admit(&parts, &target).map_err(ExtractError::Bad)?;
            Piece::Link { parts, target }
        } else if kind.is_hard_link() {
            let of = link_name()
                .and_then(|p| take.parts(&p).ok().flatten())
                .ok_or_else(|| {
                    ExtractError::Bad(format!("{rel}: a hard link to a file not taken"))
                })?;
            Piece::Copy { parts, of, mode }
        } else if kind.is_file() {
            let known = recorded.then(|| recorded_sha256(&mut entry)).flatten();
            queue.send_file(parts, mode, &rel, &mut entry, known)?;
            continue;
        } else {
            return Err(ExtractError::Bad(format!(
                "{rel}: not a file, directory or link"
            )));
        };
        queue.send(piece)?;
    }
    Ok(())
}

/// The SHA-256 build/pack.rs recorded for this entry, if any.
fn recorded_sha256<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<String> {
    let extensions = entry.pax_extensions().ok()??;
    extensions.flatten().find_map(|ext| {
        (ext.key().ok()? == SHA256_KEY)
            .then(|| ext.value().ok().map(str::to_owned))
            .flatten()
            .filter(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Reads a zip archive (Windows releases: no links in it).
fn read_zip(file: File, take: Take, queue: &Queue) -> Result<(), ExtractError> {
    let bad = |e: zip::result::ZipError| ExtractError::Bad(e.to_string());
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(bad)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(bad)?;
        let rel = entry.name().to_owned();
        let Some(parts) = take.parts(&rel).map_err(ExtractError::Bad)? else {
            continue;
        };
        if entry.is_dir() {
            queue.send(Piece::Dir(parts))?;
            continue;
        }
        let mode = entry.unix_mode().unwrap_or(0o644) & 0o777;
        queue.send_file(parts, mode, &rel, &mut entry, None)?;
    }
    Ok(())
}

/// A file being written.
struct Open {
    parts: Vec<String>,
    file: File,
    mode: u32,
}

/// The writer's side: folders, links and files, with a record of each.
fn write_entries(
    rx: &Receiver<Piece>,
    into: &Path,
    spent: &Sender<Vec<u8>>,
) -> Result<Vec<FileRecord>, ExtractError> {
    let write = ExtractError::Write;
    let mut records = Vec::new();
    let mut made = HashSet::new();
    let mut current: Option<Open> = None;
    let parent_of = |parts: &[String], made: &mut HashSet<PathBuf>| {
        let (name, dirs) = parts.split_last().expect("a path has a name");
        paths::create_dirs_within(into, dirs, made).map(|dir| dir.join(name))
    };
    for piece in rx {
        match piece {
            Piece::Dir(parts) => {
                paths::create_dirs_within(into, &parts, &mut made).map_err(write)?;
            }
            Piece::Link { parts, target } => {
                let path = parent_of(&parts, &mut made).map_err(write)?;
                platform::make_symlink(Path::new(&target), &path).map_err(write)?;
                records.push(FileRecord {
                    path: parts.join("/"),
                    mode: Some(0),
                    link: Some(target),
                    ..FileRecord::default()
                });
            }
            Piece::Copy { parts, of, mode } => {
                let path = parent_of(&parts, &mut made).map_err(write)?;
                let rel = parts.join("/");
                let mut source = paths::open_earlier(into, &of)
                    .map_err(|e| ExtractError::Bad(format!("{rel}: {e}")))?;
                let mut file = create_new(&path, &rel, mode)?;
                let size = io::copy(&mut source, &mut file).map_err(write)?;
                let sha256 = crate::files::sha256_file(&path).map_err(write)?;
                records.push(finish(&Open { parts, file, mode }, into, size, sha256)?);
            }
            Piece::FileStart { parts, mode } => {
                let path = parent_of(&parts, &mut made).map_err(write)?;
                let file = create_new(&path, &parts.join("/"), mode)?;
                current = Some(Open { parts, file, mode });
            }
            Piece::Chunk(bytes) => {
                let open = current.as_mut().expect("a chunk belongs to a file");
                open.file.write_all(&bytes).map_err(write)?;
                let _ = spent.send(bytes);
            }
            Piece::FileEnd { size, sha256 } => {
                let open = current.take().expect("an end belongs to a file");
                records.push(finish(&open, into, size, sha256)?);
            }
        }
    }
    Ok(records)
}

/// Creates a file that was not there: never written through a link or over an earlier entry.
fn create_new(path: &Path, rel: &str, mode: u32) -> Result<File, ExtractError> {
    platform::create_new_file(path, mode).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            ExtractError::Bad(format!("{rel} appears twice"))
        } else {
            ExtractError::Write(e)
        }
    })
}

/// The record of a file written whole, its mode as the filesystem kept it.
fn finish(open: &Open, into: &Path, size: u64, sha256: String) -> Result<FileRecord, ExtractError> {
    let rel = open.parts.join("/");
    let mut meta = open.file.metadata().map_err(ExtractError::Write)?;
    if platform::has_exec_bit(&meta) != (open.mode & 0o100 != 0) {
        // The umask took a bit the archive asked for.
        platform::set_mode(&into.join(&rel), open.mode).map_err(ExtractError::Write)?;
        meta = open.file.metadata().map_err(ExtractError::Write)?;
    }
    // Record what the filesystem kept: some (vfat, CIFS, drvfs) ignore chmod.
    Ok(FileRecord {
        path: rel,
        size,
        mode: Some(platform::mode_of(&meta)),
        sha256,
        mtime_ns: mtime_of(&meta),
        link: None,
    })
}

#[cfg(test)]
pub(crate) mod tests;
