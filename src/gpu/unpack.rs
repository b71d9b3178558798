//! Takes the CUDA libraries (`lib/ollama/cuda_*/`) out of an Ollama release archive: a
//! `.tar.zst` (Linux) or a `.zip` (Windows), already checked against its SHA-256.
//!
//! Everything else in the archive is skipped unread. Only files, folders and (in a tar)
//! symbolic links are taken, each at a plain relative path under a `cuda_*` folder, none
//! written through a link, no link pointing outside its folder or through another link,
//! and no hard link taken from anything but a file the archive gave (never through a link).

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::libs::FileRecord;
use crate::platform;

/// The longest zstd window accepted (2 GiB, zstd's own limit): the archive is checked
/// against its pinned hash before it is read, so its window is the release's own.
const WINDOW_LOG_MAX: u32 = 31;

/// Unpacks the `cuda_*` folders of `archive` into the empty folder `into` (so that
/// `into/cuda_v13/libggml-cuda.so` ...); returns a record of every file and link,
/// relative to `into`.
pub fn cuda_folders(archive: &Path, into: &Path) -> Result<Vec<FileRecord>, String> {
    let mut magic = [0u8; 4];
    let file = File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader
        .read_exact(&mut magic)
        .map_err(|e| format!("{}: {e}", archive.display()))?;
    let file = File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let records = match magic {
        [0x28, 0xb5, 0x2f, 0xfd] => {
            let mut decoder = zstd::Decoder::new(file).map_err(|e| e.to_string())?;
            decoder
                .window_log_max(WINDOW_LOG_MAX)
                .map_err(|e| e.to_string())?;
            from_tar(decoder, into)?
        }
        [b'P', b'K', 3, 4] => from_zip(file, into)?,
        _ => return Err("not a .tar.zst or .zip archive".to_owned()),
    };
    if records.is_empty() {
        return Err("it holds no lib/ollama/cuda_* folder".to_owned());
    }
    Ok(records)
}

/// `lib/ollama/cuda_v13/x.so` (or under one wrapping folder, or with `./`) ->
/// `["cuda_v13", "x.so"]`; `None` for everything else. An unsafe path is an error.
pub fn cuda_parts(raw: &str) -> Result<Option<Vec<String>>, String> {
    let parts: Vec<&str> = raw
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let start = (0..=1).find(|&skip| {
        parts.len() > skip + 2
            && parts[skip] == "lib"
            && parts[skip + 1] == "ollama"
            && parts[skip + 2].starts_with("cuda_")
    });
    let Some(start) = start else {
        return Ok(None);
    };
    let rest = &parts[start + 2..];
    if raw.starts_with('/') || rest.iter().any(|p| *p == ".." || p.contains(':')) {
        return Err(format!("unsafe path in the archive: {raw}"));
    }
    Ok(Some(rest.iter().map(|p| (*p).to_owned()).collect()))
}

/// A link must be relative and stay inside its `cuda_*` folder.
fn link_stays_within(parts: &[String], target: &str) -> Result<(), String> {
    // Depth below the cuda_* folder of the link's own folder.
    if crate::payload::target_stays_within(parts.len().saturating_sub(2), target) {
        Ok(())
    } else {
        Err(format!("link {} points outside: {target}", parts.join("/")))
    }
}

/// Writes one file's content, creating it new; returns its record.
fn write_file(
    into: &Path,
    parts: &[String],
    mode: u32,
    content: &mut dyn Read,
) -> Result<FileRecord, String> {
    let rel = parts.join("/");
    let path = make_parents(into, parts)?;
    let mut file = platform::create_new_file(&path, mode).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            format!("{rel} appears twice in the archive")
        } else {
            format!("could not write {}: {e}", path.display())
        }
    })?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("{rel}: {e}")),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
        file.write_all(&buf[..n])
            .map_err(|e| format!("could not write {}: {e}", path.display()))?;
    }
    file.sync_all()
        .map_err(|e| format!("could not write {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if platform::has_exec_bit(&meta) != (mode & 0o100 != 0) {
        platform::set_mode(&path, mode).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(FileRecord::file(
        rel,
        size,
        crate::files::hex(&hasher.finalize()),
        &path,
    ))
}

/// Creates the folders `dirs` inside `into`, one at a time, never through a link.
fn make_dirs(into: &Path, dirs: &[String]) -> Result<PathBuf, String> {
    let mut dir = into.to_path_buf();
    for part in dirs {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a folder", dirs.join("/"))),
            Err(_) => crate::home::make_private_dir(&dir)
                .map_err(|e| format!("could not create {}: {e}", dir.display()))?,
        }
    }
    Ok(dir)
}

/// Creates the folders above `parts` inside `into`; returns the path of `parts`.
fn make_parents(into: &Path, parts: &[String]) -> Result<PathBuf, String> {
    let (name, dirs) = parts.split_last().expect("a path has a name");
    Ok(make_dirs(into, dirs)?.join(name))
}

/// Opens the file an earlier entry made at `parts` for reading, refusing to follow a
/// link anywhere on the way: a hard link names a file of the archive's, not what a
/// link points at.
fn open_earlier(into: &Path, parts: &[String]) -> Result<File, String> {
    let mut path = into.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", parts.join("/")))?;
        let fits = if i + 1 < parts.len() {
            meta.is_dir()
        } else {
            meta.is_file()
        };
        if !fits {
            return Err(format!(
                "a hard link to {}, which is not a file of the archive",
                parts.join("/")
            ));
        }
    }
    platform::open_no_follow(&path).map_err(|e| format!("{}: {e}", parts.join("/")))
}

fn from_tar(reader: impl Read, into: &Path) -> Result<Vec<FileRecord>, String> {
    let mut archive = tar::Archive::new(reader);
    let mut records = Vec::new();
    let mut links = crate::payload::Links::default();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(parts) = cuda_parts(&raw)? else {
            continue;
        };
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            make_dirs(into, &parts)?;
        } else if kind.is_hard_link() {
            // A second name for a file the archive gave earlier: a copy of it.
            let earlier = entry
                .link_name()
                .ok()
                .flatten()
                .map(|p| p.to_string_lossy().into_owned())
                .and_then(|p| cuda_parts(&p).ok().flatten())
                .ok_or_else(|| format!("{raw}: a hard link to a file outside the CUDA folders"))?;
            let mut source = open_earlier(into, &earlier).map_err(|e| format!("{raw}: {e}"))?;
            let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
            records.push(write_file(into, &parts, mode, &mut source)?);
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .ok_or_else(|| format!("{raw}: a link without a target"))?
                .to_string_lossy()
                .into_owned();
            link_stays_within(&parts, &target)?;
            links.admit(&parts, &target)?;
            let path = make_parents(into, &parts)?;
            platform::make_symlink(Path::new(&target), &path)
                .map_err(|e| format!("could not create {}: {e}", path.display()))?;
            records.push(FileRecord::link(parts.join("/"), target));
        } else if kind.is_file() {
            let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
            records.push(write_file(into, &parts, mode, &mut entry)?);
        } else {
            return Err(format!("{raw}: not a file, folder or link"));
        }
    }
    Ok(records)
}

fn from_zip(file: File, into: &Path) -> Result<Vec<FileRecord>, String> {
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
        let Some(parts) = cuda_parts(entry.name())? else {
            continue;
        };
        if entry.is_dir() {
            make_dirs(into, &parts)?;
            continue;
        }
        let mode = entry.unix_mode().unwrap_or(0o644) & 0o777;
        records.push(write_file(into, &parts, mode, &mut entry)?);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cuda_folders_are_taken() {
        let yes = |raw: &str| cuda_parts(raw).unwrap();
        assert_eq!(
            yes("lib/ollama/cuda_v13/libggml-cuda.so"),
            Some(vec!["cuda_v13".into(), "libggml-cuda.so".into()])
        );
        assert_eq!(yes("./lib/ollama/cuda_v12/"), Some(vec!["cuda_v12".into()]));
        assert_eq!(
            yes("ollama-windows/lib/ollama/cuda_v12/ggml-cuda.dll"),
            Some(vec!["cuda_v12".into(), "ggml-cuda.dll".into()])
        );
        assert_eq!(
            yes(r"lib\ollama\cuda_v13\cublas64_13.dll"),
            Some(vec!["cuda_v13".into(), "cublas64_13.dll".into()])
        );
        for other in [
            "bin/ollama",
            "lib/ollama/libggml-base.so",
            "lib/ollama/vulkan/libggml-vulkan.so",
            "lib/ollama/rocm/x",
            "a/b/lib/ollama/cuda_v12/x",
        ] {
            assert_eq!(yes(other), None, "{other}");
        }
        for evil in ["lib/ollama/cuda_v12/../../../x", "lib/ollama/cuda_v12/C:x"] {
            assert!(cuda_parts(evil).is_err(), "{evil}");
        }
    }

    #[test]
    fn links_stay_inside_their_folder() {
        let parts = |p: &str| p.split('/').map(str::to_owned).collect::<Vec<_>>();
        assert!(
            link_stays_within(&parts("cuda_v13/libcudart.so.13"), "libcudart.so.13.0.96").is_ok()
        );
        assert!(link_stays_within(&parts("cuda_v13/sub/x"), "../y").is_ok());
        for target in ["../libggml-base.so", "/etc/passwd", "../../x", "sub\\x"] {
            assert!(
                link_stays_within(&parts("cuda_v13/x"), target).is_err(),
                "{target}"
            );
        }
    }

    fn tar_zst(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, link, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o755);
            header.set_size(data.len() as u64);
            if let Some(target) = link {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, name, target).unwrap();
            } else {
                builder.append_data(&mut header, name, *data).unwrap();
            }
        }
        zstd::encode_all(&builder.into_inner().unwrap()[..], 3).unwrap()
    }

    #[test]
    fn a_release_shaped_tar_zst_gives_its_cuda_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("ollama-linux-amd64.tar.zst");
        std::fs::write(
            &archive,
            tar_zst(&[
                ("bin/ollama", None, b"#!/bin/sh\n"),
                ("lib/ollama/libggml-base.so", None, b"base"),
                ("lib/ollama/cuda_v12/libggml-cuda.so", None, b"v12"),
                ("lib/ollama/cuda_v13/libcudart.so.13.0.96", None, b"rt"),
                (
                    "lib/ollama/cuda_v13/libcudart.so.13",
                    Some("libcudart.so.13.0.96"),
                    b"",
                ),
                ("lib/ollama/vulkan/libggml-vulkan.so", None, b"vk"),
            ]),
        )
        .unwrap();
        let into = dir.path().join("into");
        std::fs::create_dir(&into).unwrap();
        let records = cuda_folders(&archive, &into).unwrap();
        let mut names: Vec<_> = records.iter().map(|r| r.path.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "cuda_v12/libggml-cuda.so",
                "cuda_v13/libcudart.so.13",
                "cuda_v13/libcudart.so.13.0.96"
            ]
        );
        assert_eq!(
            std::fs::read(into.join("cuda_v13/libcudart.so.13")).unwrap(),
            b"rt"
        );
        assert!(!into.join("vulkan").exists() && !into.join("bin").exists());
        assert!(records.iter().all(|r| r.is_intact(&into)));
    }

    #[test]
    fn a_windows_zip_gives_its_cuda_folders() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("ollama-windows-amd64.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        for (name, data) in [
            ("ollama.exe", &b"MZ"[..]),
            ("lib/ollama/ggml-base.dll", b"base"),
            ("lib/ollama/cuda_v12/ggml-cuda.dll", b"v12"),
            ("lib/ollama/cuda_v13/ggml-cuda.dll", b"v13"),
        ] {
            zip.start_file(name, options).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        let into = dir.path().join("into");
        std::fs::create_dir(&into).unwrap();
        let records = cuda_folders(&archive, &into).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(
            std::fs::read(into.join("cuda_v13/ggml-cuda.dll")).unwrap(),
            b"v13"
        );
    }

    #[test]
    fn an_archive_without_cuda_or_with_an_escaping_link_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.zst");
        std::fs::write(&archive, tar_zst(&[("bin/ollama", None, b"x")])).unwrap();
        let into = dir.path().join("into");
        std::fs::create_dir(&into).unwrap();
        let err = cuda_folders(&archive, &into).unwrap_err();
        assert!(err.contains("no lib/ollama/cuda_*"), "{err}");

        std::fs::write(
            &archive,
            tar_zst(&[("lib/ollama/cuda_v12/evil", Some("../../../../etc"), b"")]),
        )
        .unwrap();
        let err = cuda_folders(&archive, &into).unwrap_err();
        assert!(err.contains("points outside"), "{err}");
    }

    // Windows has no links in archives: `make_symlink` copies, and the copy is a file.
    #[cfg(unix)]
    #[test]
    fn a_hard_link_is_never_taken_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.zst");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(4);
        builder
            .append_data(&mut header, "lib/ollama/cuda_v12/real", &b"real"[..])
            .unwrap();
        for (kind, name, target) in [
            (tar::EntryType::Symlink, "lib/ollama/cuda_v12/alias", "real"),
            (
                tar::EntryType::Link,
                "lib/ollama/cuda_v12/copy",
                "lib/ollama/cuda_v12/alias",
            ),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(0);
            header.set_entry_type(kind);
            builder.append_link(&mut header, name, target).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        std::fs::write(&archive, zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
        let into = dir.path().join("into");
        std::fs::create_dir(&into).unwrap();
        let err = cuda_folders(&archive, &into).unwrap_err();
        assert!(err.contains("not a file of the archive"), "{err}");
    }

    #[test]
    fn a_link_through_another_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.zst");
        std::fs::write(
            &archive,
            tar_zst(&[
                ("lib/ollama/cuda_v12/a", Some("."), b""),
                ("lib/ollama/cuda_v12/b", Some("a/a/../.."), b""),
            ]),
        )
        .unwrap();
        let into = dir.path().join("into");
        std::fs::create_dir(&into).unwrap();
        let err = cuda_folders(&archive, &into).unwrap_err();
        // Windows copies what a link names, and refuses `a -> .` itself.
        let windows_refusal = cfg!(windows) && err.contains("links to a folder that holds it");
        assert!(
            err.contains("through another link") || windows_refusal,
            "{err}"
        );
    }
}
