//! The unpacker's rules, on archives made to break them.

use super::*;

/// What the GPU libraries take of an Ollama release.
const CUDA: Take = Take::Folders {
    under: &["lib", "ollama"],
    prefix: "cuda_",
};

/// `cuda_v13/x` as unpacked: `lib/ollama/cuda_v13/x`, in parts.
fn cuda_path(rel: &str) -> Vec<String> {
    format!("lib/ollama/{rel}")
        .split('/')
        .map(str::to_owned)
        .collect()
}

/// Unpacks the CUDA folders of the archive at `archive`.
fn cuda(archive: &Path, into: &Path) -> Result<Vec<FileRecord>, String> {
    unpack(Source::Archive(archive.to_path_buf()), into, CUDA).map_err(|e| e.to_string())
}

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

fn extract(entries: &[Entry<'_>]) -> (tempfile::TempDir, Result<Vec<FileRecord>, ExtractError>) {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("into");
    std::fs::create_dir(&into).unwrap();
    let tar = zstd::encode_all(&tar_of(entries)[..], 1).unwrap();
    let result = unpack(
        Source::Embedded(Box::leak(tar.into_boxed_slice())),
        &into,
        Take::All,
    );
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
    let (dir, result) = extract(&[
        Entry::File("real/x", b"x"),
        Entry::Link("lib", "real"),
        Entry::File("lib/evil", b"y"),
    ]);
    #[cfg(unix)]
    assert!(matches!(result, Err(ExtractError::Write(_))), "{result:?}");
    // Windows copies what an inner link points to: the file lands in the copy.
    #[cfg(windows)]
    {
        result.expect("unpacks");
        assert!(!dir.path().join("into/real/evil").exists());
    }
    drop(dir);
    let detail = refused(&[
        Entry::File("real", b"x"),
        Entry::Link("alias", "real"),
        Entry::File("alias", b"y"),
    ]);
    assert!(detail.contains("appears twice"), "{detail}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_link_through_another_link_is_refused_in_either_order() {
    // `a -> .` makes `a/a/a/../../..` climb three folders above the root.
    let detail = refused(&[Entry::Link("a", "."), Entry::Link("b", "a/a/a/../../..")]);
    assert!(detail.contains("through another link"), "{detail}");
    let detail = refused(&[Entry::Link("b", "a/a/a/../../.."), Entry::Link("a", ".")]);
    assert!(detail.contains("passes through it"), "{detail}");
    // A chain of links (each a last step) is what releases have: allowed.
    let (_dir, result) = extract(&[
        Entry::File("lib/x.so.0.0", b"x"),
        Entry::Link("lib/x.so.0", "x.so.0.0"),
        Entry::Link("lib/x.so", "x.so.0"),
        Entry::Link("bin/lib", "../lib"),
    ]);
    result.expect("unpacks");
}

#[test]
fn only_cuda_folders_are_taken() {
    let yes = |raw: &str| CUDA.parts(raw).unwrap();
    assert_eq!(
        yes("lib/ollama/cuda_v13/libggml-cuda.so"),
        Some(cuda_path("cuda_v13/libggml-cuda.so"))
    );
    assert_eq!(yes("./lib/ollama/cuda_v12/"), Some(cuda_path("cuda_v12")));
    assert_eq!(
        yes("ollama-windows/lib/ollama/cuda_v12/ggml-cuda.dll"),
        Some(cuda_path("cuda_v12/ggml-cuda.dll"))
    );
    assert_eq!(
        yes(r"lib\ollama\cuda_v13\cublas64_13.dll"),
        Some(cuda_path("cuda_v13/cublas64_13.dll"))
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
        assert!(CUDA.parts(evil).is_err(), "{evil}");
    }
}

#[test]
fn links_stay_inside_their_folder() {
    let parts = cuda_path;
    assert!(CUDA
        .check_link(&parts("cuda_v13/libcudart.so.13"), "libcudart.so.13.0.96")
        .is_ok());
    assert!(CUDA.check_link(&parts("cuda_v13/sub/x"), "../y").is_ok());
    for target in ["../libggml-base.so", "/etc/passwd", "../../x", "sub\\x"] {
        assert!(
            CUDA.check_link(&parts("cuda_v13/x"), target).is_err(),
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
    let records = cuda(&archive, &into).unwrap();
    let mut names: Vec<_> = records.iter().map(|r| r.path.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "lib/ollama/cuda_v12/libggml-cuda.so",
            "lib/ollama/cuda_v13/libcudart.so.13",
            "lib/ollama/cuda_v13/libcudart.so.13.0.96"
        ]
    );
    assert_eq!(
        std::fs::read(into.join("lib/ollama/cuda_v13/libcudart.so.13")).unwrap(),
        b"rt"
    );
    assert!(!into.join("lib/ollama/vulkan").exists() && !into.join("bin").exists());
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
    let records = cuda(&archive, &into).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        std::fs::read(into.join("lib/ollama/cuda_v13/ggml-cuda.dll")).unwrap(),
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
    let err = cuda(&archive, &into).unwrap_err();
    assert!(err.contains("no lib/ollama/cuda_*"), "{err}");

    std::fs::write(
        &archive,
        tar_zst(&[("lib/ollama/cuda_v12/evil", Some("../../../../etc"), b"")]),
    )
    .unwrap();
    let err = cuda(&archive, &into).unwrap_err();
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
    let err = cuda(&archive, &into).unwrap_err();
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
    let err = cuda(&archive, &into).unwrap_err();
    // Windows copies what a link names, and refuses `a -> .` itself.
    let windows_refusal = cfg!(windows) && err.contains("links to a folder that holds it");
    assert!(
        err.contains("through another link") || windows_refusal,
        "{err}"
    );
}

/// A tar of one file whose PAX header records `sha256` for it.
fn tar_with_recorded_hash(data: &[u8], sha256: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([(SHA256_KEY, sha256.as_bytes())])
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    builder.append_data(&mut header, "bin/x", data).unwrap();
    zstd::encode_all(&builder.into_inner().unwrap()[..], 1).unwrap()
}

#[test]
fn an_embedded_payload_gives_its_hashes_and_a_downloaded_archive_is_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let actual = hex(&Sha256::digest(b"content"));
    let recorded = "ab".repeat(32);
    let tar = tar_with_recorded_hash(b"content", &recorded);

    let into = dir.path().join("embedded");
    std::fs::create_dir(&into).unwrap();
    let records = unpack(
        Source::Embedded(Box::leak(tar.clone().into_boxed_slice())),
        &into,
        Take::All,
    )
    .unwrap();
    assert_eq!(
        records[0].sha256, recorded,
        "the build's hash is taken as it is"
    );

    let archive = dir.path().join("a.tar.zst");
    std::fs::write(&archive, &tar).unwrap();
    let into = dir.path().join("archive");
    std::fs::create_dir(&into).unwrap();
    let records = unpack(Source::Archive(archive), &into, Take::All).unwrap();
    assert_eq!(records[0].sha256, actual, "a download's content is hashed");
    assert_eq!(std::fs::read(into.join("bin/x")).unwrap(), b"content");
}
