//! Packs the kept files into one zstd-compressed tar and writes the Rust static that
//! embeds it. The tar keeps file modes, so executables stay executable when unpacked.
//! Also writes where the GPU libraries left out of the embedded Ollama come from.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::archive::Format;
use crate::archive::{EntryData, Tree};
use crate::pins::Component;

/// Sizes and hash of a written payload.
pub struct Packed {
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    pub sha256: String,
    pub file_name: String,
}

/// The zstd window of release payloads: 2^27 bytes. The decoder in src/payload.rs
/// allows exactly this much; raise both together.
const WINDOW_LOG: u32 = 27;
/// Levels from which payloads get the long window (quick test builds do not).
const LONG_FROM_LEVEL: i32 = 10;
/// The release level, chosen by measurement on the Codex 0.149.0 payload (323 MB as
/// tar; README, Building): with the long window, -22 is 78.7 MB (1.05x `xz -9e`),
/// -19 is 82.6 MB (1.11x).
pub const RELEASE_LEVEL: i32 = 22;

/// `CODEX_OSS_ZSTD_LEVEL`, else `RELEASE_LEVEL` for release builds and 3 for the rest.
pub fn zstd_level(release: bool) -> Result<i32, String> {
    match std::env::var("CODEX_OSS_ZSTD_LEVEL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        None => Ok(if release { RELEASE_LEVEL } else { 3 }),
        Some(v) => v
            .parse::<i32>()
            .ok()
            .filter(|l| (1..=22).contains(l))
            .ok_or_else(|| format!("CODEX_OSS_ZSTD_LEVEL={v}: expected a zstd level from 1 to 22")),
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The PAX keyword a file's SHA-256 is recorded under (`SHA256_KEY` in src/unpack.rs).
const SHA256_KEY: &str = "CODEX_OSS.sha256";

/// Writes `tree` as a zstd-compressed tar to `dest`, each file's SHA-256 recorded in a
/// PAX header before it.
pub fn write(tree: &Tree, dest: &Path, level: i32) -> Result<Packed, String> {
    let err = |e: std::io::Error| format!("could not write {}: {e}", dest.display());
    let file = File::create(dest).map_err(err)?;
    let sink = Hashing {
        inner: BufWriter::new(file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut encoder = zstd::Encoder::new(sink, level).map_err(err)?;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u32;
    encoder.multithread(threads).map_err(err)?;
    if level >= LONG_FROM_LEVEL {
        // Codex's 320 MB repeat themselves at long distances: a 128 MiB window finds it
        // (the runtime decoder allows exactly this window, src/payload.rs WINDOW_LOG).
        encoder.window_log(WINDOW_LOG).map_err(err)?;
        encoder.long_distance_matching(true).map_err(err)?;
    }
    encoder.include_checksum(true).map_err(err)?;
    let mut builder = tar::Builder::new(encoder);
    let mut raw_bytes = 0;
    for entry in &tree.entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        header.set_mtime(0);
        match &entry.data {
            EntryData::File(bytes) => {
                raw_bytes += bytes.len() as u64;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                // The file's SHA-256, so that unpacking need not hash what the build did
                // (src/unpack.rs reads it under the same keyword).
                let sha256 = hex::encode(Sha256::digest(bytes));
                builder
                    .append_pax_extensions([(SHA256_KEY, sha256.as_bytes())])
                    .map_err(err)?;
                builder
                    .append_data(&mut header, &entry.path, bytes.as_slice())
                    .map_err(err)?;
            }
            EntryData::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, &entry.path, target)
                    .map_err(err)?;
            }
        }
    }
    let encoder = builder.into_inner().map_err(err)?;
    let mut sink = encoder.finish().map_err(err)?;
    sink.flush().map_err(err)?;
    Ok(Packed {
        raw_bytes,
        compressed_bytes: sink.bytes,
        sha256: hex::encode(sink.hasher.finalize()),
        file_name: dest
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
    })
}

/// The line of `payloads.rs` that embeds one payload (`Payload` is defined in src/payload.rs).
pub fn payload_static(
    component: Component,
    version: &str,
    entrypoint: &str,
    packed: &Packed,
) -> String {
    format!(
        "pub static {name}: Option<Payload> = Some(Payload {{ name: {lower:?}, version: {version:?}, \
         sha256: {sha:?}, entrypoint: {entrypoint:?}, raw_bytes: {raw}, \
         data: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}\")) }});\n",
        name = component.upper(),
        lower = component.lower(),
        sha = packed.sha256,
        raw = packed.raw_bytes,
        file = packed.file_name,
    )
}

/// The release archive the embedded Ollama came from: its file name and its SHA-256
/// (pinned for a download; hashed for a local archive, see `fetch::check_local`).
pub struct Origin {
    pub asset: String,
    pub sha256: Option<String>,
}

/// `gpu_source.rs`, which src/gpu compiles in: where the GPU libraries left out of the
/// embedded Ollama come from at run time. They are fetched from the very archive the
/// embedded Ollama was taken from (the pinned release, or the `CODEX_OSS_OLLAMA_ARCHIVE`
/// file), trusted only under its SHA-256, so nothing else is ever unpacked. None for
/// macOS (Metal is built into Ollama there), for a bare executable or an archive format
/// the run time does not unpack (it reads .tar.zst and .zip), and when the build keeps
/// the GPU libraries (`CODEX_OSS_KEEP_GPU_LIBS=1`).
pub fn gpu_source(
    target: &str,
    archive: Option<(&Path, &Origin)>,
    base_url: &str,
) -> Result<String, String> {
    let keep = std::env::var("CODEX_OSS_KEEP_GPU_LIBS").as_deref() == Ok("1");
    let source = match archive {
        Some((path, origin))
            if !keep
                && !target.contains("apple")
                && matches!(crate::archive::sniff(path)?, Format::Zstd | Format::Zip) =>
        {
            let asset = &origin.asset;
            let sha256 = match &origin.sha256 {
                Some(pinned) => pinned.clone(),
                None => crate::fetch::digests_of(path, None)?.sha256,
            };
            let bytes = std::fs::metadata(path)
                .map_err(|e| format!("could not read {}: {e}", path.display()))?
                .len();
            format!(
                "Some(GpuSource {{ asset: {asset:?}, sha256: {sha256:?}, bytes: {bytes}, \
                 base_url: {base_url:?} }})"
            )
        }
        _ => "None".to_owned(),
    };
    Ok(format!(
        "// Generated by build.rs: where the GPU libraries of the embedded Ollama come from.\n\
         pub static GPU_SOURCE: Option<GpuSource> = {source};\n\
         pub static GPU_LIBS_EMBEDDED: bool = {};\n",
        keep && archive.is_some() && !target.contains("apple")
    ))
}
