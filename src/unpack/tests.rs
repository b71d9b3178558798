//! The unpacker's rules, on archives made to break them.

use super::*;
use tempfile::TempDir;

/// What the GPU libraries take of an Ollama release.
pub(crate) const CUDA: Take = Take::Folders {
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

/// One tar entry, its name written raw (the tar crate refuses to write unsafe ones).
pub(crate) enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Link(&'a str, &'a str),
    /// Only the Unix tests make hard links.
    #[cfg_attr(not(unix), allow(dead_code))]
    HardLink(&'a str, &'a str),
}

/// A zstd-compressed tar of `entries`.
pub(crate) fn tar_zst(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, data, link) = match entry {
            Entry::File(name, data) => (name, *data, None),
            Entry::Link(name, to) => (name, &b""[..], Some((tar::EntryType::Symlink, to))),
            Entry::HardLink(name, to) => (name, &b""[..], Some((tar::EntryType::Link, to))),
        };
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_mode(0o755);
        header.set_size(data.len() as u64);
        if let Some((kind, target)) = link {
            header.set_entry_type(kind);
            header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    zstd::encode_all(&builder.into_inner().unwrap()[..], 1).unwrap()
}

/// A fresh folder, the empty folder `into` in it, and what unpacking there gave.
type Unpacked = (TempDir, PathBuf, Result<Vec<FileRecord>, ExtractError>);

/// Unpacks what `take` takes of `archive` into an empty folder: as a file `name` beside
/// it (a download), or embedded (`None`).
fn unpack_in(name: Option<&str>, archive: Vec<u8>, take: Take) -> Unpacked {
    let dir = TempDir::new().unwrap();
    let into = dir.path().join("into");
    std::fs::create_dir(&into).unwrap();
    let source = match name {
        Some(name) => {
            std::fs::write(dir.path().join(name), archive).unwrap();
            Source::Archive(dir.path().join(name))
        }
        None => Source::Embedded(Box::leak(archive.into_boxed_slice())),
    };
    let result = unpack(source, &into, take);
    (dir, into, result)
}

/// Every entry of an embedded payload.
fn extract(entries: &[Entry<'_>]) -> Unpacked {
    unpack_in(None, tar_zst(entries), Take::All)
}

/// The CUDA folders of a downloaded `.tar.zst`.
fn cuda(entries: &[Entry<'_>]) -> Unpacked {
    unpack_in(Some("a.tar.zst"), tar_zst(entries), CUDA)
}

/// Why the archive was refused (it must be).
fn refusal((_, _, result): Unpacked) -> String {
    match result {
        Err(ExtractError::Bad(detail)) => detail,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn plain_files_and_inner_links_unpack() {
    let (_dir, into, result) = extract(&[
        Entry::File("bin/ollama", b"#!/bin/sh\n"),
        Entry::File("lib/ollama/libggml-base.so.0.0.0", b"lib"),
        Entry::Link("lib/ollama/libggml-base.so", "libggml-base.so.0.0.0"),
        Entry::Link("bin/lib", "../lib/ollama"),
    ]);
    let records = result.expect("unpacks");
    assert_eq!(records.len(), 4);
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
        let detail = refusal(extract(&[Entry::File(name, b"x")]));
        assert!(detail.contains("unsafe path"), "{name}: {detail}");
    }
}

#[test]
fn nothing_is_written_through_a_link() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_string_lossy().into_owned();
    // A link pointing outside is refused as it is.
    for target in [&*target, "../../.."] {
        let detail = refusal(extract(&[Entry::Link("lib", target)]));
        assert!(detail.contains("points outside"), "{detail}");
    }
    // A file below an inner link, or over one, is refused too.
    let (dir, _, result) = extract(&[
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
    let detail = refusal(extract(&[
        Entry::File("real", b"x"),
        Entry::Link("alias", "real"),
        Entry::File("alias", b"y"),
    ]));
    assert!(detail.contains("appears twice"), "{detail}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_link_through_another_link_is_refused_in_either_order() {
    // `a -> .` makes `a/a/a/../../..` climb three folders above the root.
    let detail = refusal(extract(&[
        Entry::Link("a", "."),
        Entry::Link("b", "a/a/a/../../.."),
    ]));
    assert!(detail.contains("through another link"), "{detail}");
    let detail = refusal(extract(&[
        Entry::Link("b", "a/a/a/../../.."),
        Entry::Link("a", "."),
    ]));
    assert!(detail.contains("passes through it"), "{detail}");
    // A chain of links (each a last step) is what releases have: allowed.
    extract(&[
        Entry::File("lib/x.so.0.0", b"x"),
        Entry::Link("lib/x.so.0", "x.so.0.0"),
        Entry::Link("lib/x.so", "x.so.0"),
        Entry::Link("bin/lib", "../lib"),
    ])
    .2
    .expect("unpacks");
}

#[test]
fn only_cuda_folders_are_taken() {
    for (raw, rel) in [
        (
            "lib/ollama/cuda_v13/libggml-cuda.so",
            "cuda_v13/libggml-cuda.so",
        ),
        ("./lib/ollama/cuda_v12/", "cuda_v12"),
        (
            "ollama-windows/lib/ollama/cuda_v12/ggml-cuda.dll",
            "cuda_v12/ggml-cuda.dll",
        ),
        (
            r"lib\ollama\cuda_v13\cublas64_13.dll",
            "cuda_v13/cublas64_13.dll",
        ),
    ] {
        assert_eq!(CUDA.parts(raw).unwrap(), Some(cuda_path(rel)), "{raw}");
    }
    for other in [
        "bin/ollama",
        "lib/ollama/libggml-base.so",
        "lib/ollama/vulkan/libggml-vulkan.so",
        "lib/ollama/rocm/x",
        "a/b/lib/ollama/cuda_v12/x",
    ] {
        assert_eq!(CUDA.parts(other).unwrap(), None, "{other}");
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

#[test]
fn a_release_shaped_tar_zst_gives_its_cuda_folders_only() {
    let (_dir, into, result) = cuda(&[
        Entry::File("bin/ollama", b"#!/bin/sh\n"),
        Entry::File("lib/ollama/libggml-base.so", b"base"),
        Entry::File("lib/ollama/cuda_v12/libggml-cuda.so", b"v12"),
        Entry::File("lib/ollama/cuda_v13/libcudart.so.13.0.96", b"rt"),
        Entry::Link(
            "lib/ollama/cuda_v13/libcudart.so.13",
            "libcudart.so.13.0.96",
        ),
        Entry::File("lib/ollama/vulkan/libggml-vulkan.so", b"vk"),
    ]);
    let records = result.unwrap();
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
    let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    for (name, data) in [
        ("ollama.exe", &b"MZ"[..]),
        ("lib/ollama/ggml-base.dll", b"base"),
        ("lib/ollama/cuda_v12/ggml-cuda.dll", b"v12"),
        ("lib/ollama/cuda_v13/ggml-cuda.dll", b"v13"),
    ] {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(data).unwrap();
    }
    let zip = zip.finish().unwrap().into_inner();
    let (_dir, into, result) = unpack_in(Some("ollama-windows-amd64.zip"), zip, CUDA);
    assert_eq!(result.unwrap().len(), 2);
    assert_eq!(
        std::fs::read(into.join("lib/ollama/cuda_v13/ggml-cuda.dll")).unwrap(),
        b"v13"
    );
}

#[test]
fn an_archive_without_cuda_or_with_an_escaping_link_gives_nothing() {
    let err = refusal(cuda(&[Entry::File("bin/ollama", b"x")]));
    assert!(err.contains("no lib/ollama/cuda_*"), "{err}");
    let err = refusal(cuda(&[Entry::Link(
        "lib/ollama/cuda_v12/evil",
        "../../../../etc",
    )]));
    assert!(err.contains("points outside"), "{err}");
}

// Windows has no links in archives: `make_symlink` copies, and the copy is a file.
#[cfg(unix)]
#[test]
fn a_hard_link_is_never_taken_through_a_link() {
    let err = refusal(cuda(&[
        Entry::File("lib/ollama/cuda_v12/real", b"real"),
        Entry::Link("lib/ollama/cuda_v12/alias", "real"),
        Entry::HardLink("lib/ollama/cuda_v12/copy", "lib/ollama/cuda_v12/alias"),
    ]));
    assert!(err.contains("not a file of the archive"), "{err}");
}

#[test]
fn a_link_through_another_link_is_refused() {
    let (_dir, _, result) = cuda(&[
        Entry::Link("lib/ollama/cuda_v12/a", "."),
        Entry::Link("lib/ollama/cuda_v12/b", "a/a/../.."),
    ]);
    let err = result.unwrap_err().to_string();
    // Windows copies what a link names, and refuses `a -> .` itself.
    let windows_refusal = cfg!(windows) && err.contains("links to a folder that holds it");
    assert!(
        err.contains("through another link") || windows_refusal,
        "{err}"
    );
}

#[test]
fn an_embedded_payload_gives_its_hashes_and_a_downloaded_archive_is_hashed() {
    // A tar of one file whose PAX header records another hash for it.
    let recorded = "ab".repeat(32);
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([(SHA256_KEY, recorded.as_bytes())])
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(7);
    builder
        .append_data(&mut header, "bin/x", &b"content"[..])
        .unwrap();
    let tar = zstd::encode_all(&builder.into_inner().unwrap()[..], 1).unwrap();

    let records = unpack_in(None, tar.clone(), Take::All).2.unwrap();
    assert_eq!(
        records[0].sha256, recorded,
        "the build's hash is taken as it is"
    );
    let (_dir, into, result) = unpack_in(Some("a.tar.zst"), tar, Take::All);
    let actual = hex(&Sha256::digest(b"content"));
    assert_eq!(
        result.unwrap()[0].sha256,
        actual,
        "a download's content is hashed"
    );
    assert_eq!(std::fs::read(into.join("bin/x")).unwrap(), b"content");
}
