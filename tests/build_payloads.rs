//! The build side of the bundle: the build script's download, verification, trimming and
//! embedding, against a loopback HTTP server serving release-shaped archives.
//!
//! The first tests call the build modules (build/*.rs, included here as they are in
//! build.rs); the last ones run the compiled build script itself, with the
//! environment Cargo gives it, the way `cargo build` does.

#[allow(dead_code)]
#[path = "../build/archive.rs"]
mod archive;
#[allow(dead_code)]
#[path = "../build/fetch.rs"]
mod fetch;
#[allow(dead_code)]
#[path = "../build/macho.rs"]
mod macho;
#[allow(dead_code)]
#[path = "../build/pins.rs"]
mod pins;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use archive::{EntryData, Tree};
use pins::{Component, Pin};
use sha2::{Digest, Sha256};

const LINUX: &str = "x86_64-unknown-linux-gnu";

// ------------------------------------------------------------------ fixtures

/// One entry of a test archive: a file (path, bytes, mode), a directory, or a symlink.
enum Item<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Link(&'a str, &'a str),
}

fn tar_bytes(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        match item {
            Item::File(path, bytes, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(bytes.len() as u64);
                builder.append_data(&mut header, path, *bytes).unwrap();
            }
            Item::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, path, std::io::empty())
                    .unwrap();
            }
            Item::Link(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn zstd_bytes(raw: &[u8]) -> Vec<u8> {
    zstd::encode_all(raw, 3).unwrap()
}

fn gzip_bytes(raw: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(raw).unwrap();
    encoder.finish().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

const OLLAMA_EXE: &[u8] = b"#!/bin/sh\necho 'ollama version is 0.32.15'\n";
const CUDA_LIB: &[u8] = b"pretend 1 GB of CUDA kernels";

/// Shaped like ollama-linux-amd64.tar.zst: bin/ollama, CPU backends and the runner in
/// lib/ollama/, GPU backends in subfolders of it.
fn ollama_linux_tar() -> Vec<u8> {
    tar_bytes(&[
        Item::Dir("./"),
        Item::Dir("./bin/"),
        Item::File("./bin/ollama", OLLAMA_EXE, 0o755),
        Item::Dir("./lib/"),
        Item::Dir("./lib/ollama/"),
        Item::File("./lib/ollama/libggml-base.so.0.0.0", b"ggml base", 0o644),
        Item::Link("./lib/ollama/libggml-base.so.0", "libggml-base.so.0.0.0"),
        Item::Link("./lib/ollama/libggml-base.so", "libggml-base.so.0"),
        Item::File("./lib/ollama/libggml-cpu-haswell.so", b"cpu haswell", 0o644),
        Item::File("./lib/ollama/libggml-cpu-x64.so", b"cpu x64", 0o644),
        Item::File(
            "./lib/ollama/llama-server",
            b"#!/bin/sh\necho runner\n",
            0o755,
        ),
        Item::Dir("./lib/ollama/cuda_v12/"),
        Item::File("./lib/ollama/cuda_v12/libggml-cuda.so", CUDA_LIB, 0o644),
        Item::File("./lib/ollama/cuda_v12/libcublas.so.12", CUDA_LIB, 0o644),
        Item::Dir("./lib/ollama/vulkan/"),
        Item::File("./lib/ollama/vulkan/libggml-vulkan.so", CUDA_LIB, 0o644),
    ])
}

/// What the Ollama archive above must be trimmed to: (path, mode or symlink target).
fn trimmed_ollama() -> Vec<(String, String)> {
    [
        ("bin/ollama", "755"),
        ("lib/ollama/libggml-base.so", "-> libggml-base.so.0"),
        ("lib/ollama/libggml-base.so.0", "-> libggml-base.so.0.0.0"),
        ("lib/ollama/libggml-base.so.0.0.0", "644"),
        ("lib/ollama/libggml-cpu-haswell.so", "644"),
        ("lib/ollama/libggml-cpu-x64.so", "644"),
        ("lib/ollama/llama-server", "755"),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), m.to_string()))
    .collect()
}

const CODEX_PACKAGE_JSON: &[u8] = br#"{
  "layoutVersion": 1,
  "version": "0.149.0",
  "target": "x86_64-unknown-linux-musl",
  "variant": "codex",
  "entrypoint": "bin/codex",
  "resourcesDir": "codex-resources",
  "pathDir": "codex-path"
}
"#;

/// Shaped like codex-package-x86_64-unknown-linux-musl.tar.gz (the npm vendor folder).
fn codex_tar() -> Vec<u8> {
    tar_bytes(&[
        Item::Dir("./"),
        Item::File("./codex-package.json", CODEX_PACKAGE_JSON, 0o644),
        Item::Dir("./bin/"),
        Item::File("./bin/codex", b"#!/bin/sh\necho codex-cli 0.149.0\n", 0o755),
        Item::File("./bin/codex-code-mode-host", b"host", 0o755),
        Item::Dir("./codex-path/"),
        Item::File("./codex-path/rg", b"ripgrep", 0o755),
        Item::Dir("./codex-resources/"),
        Item::File("./codex-resources/bwrap", b"bubblewrap", 0o755),
        Item::Dir("./codex-resources/zsh/bin/"),
        Item::File("./codex-resources/zsh/bin/zsh", b"zsh", 0o755),
    ])
}

/// Shaped like `npm pack @openai/codex@<version>-linux-x64`: the package's own files
/// and the release layout under `package/vendor/<triple>/`, with the voice host.
fn npm_codex_tar() -> Vec<u8> {
    const VENDOR: &str = "package/vendor/x86_64-unknown-linux-musl";
    let at = |path: &str| format!("{VENDOR}/{path}");
    let paths: Vec<(String, &[u8], u32)> = vec![
        (
            "package/package.json".into(),
            br#"{"name":"@openai/codex"}"#,
            0o644,
        ),
        ("package/README.md".into(), b"readme", 0o644),
        (at("codex-package.json"), CODEX_PACKAGE_JSON, 0o644),
        (at("bin/codex"), b"#!/bin/sh\necho codex-cli\n", 0o755),
        (at("bin/codex-code-mode-host"), b"host", 0o755),
        (at("codex-path/rg"), b"ripgrep", 0o755),
        (at("codex-resources/bwrap"), b"bubblewrap", 0o755),
        (
            at("codex-resources/voice/bin/codex-voice-host"),
            b"voice",
            0o755,
        ),
        (
            at("codex-resources/voice/lib/libgstreamer-1.0.so.0"),
            b"gst",
            0o755,
        ),
        (at("codex-resources/zsh/bin/zsh"), b"zsh", 0o755),
    ];
    let items: Vec<Item> = paths
        .iter()
        .map(|(path, bytes, mode)| Item::File(path, bytes, *mode))
        .collect();
    tar_bytes(&items)
}

#[test]
fn an_npm_package_gives_its_vendor_folder_without_the_voice_host() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = write_temp(dir.path(), "codex.tgz", &gzip_bytes(&npm_codex_tar()));
    let tree = archive::read_trimmed(&tgz, Component::Codex, LINUX).unwrap();
    assert_eq!(describe(&tree), trimmed_codex());
    assert_eq!(tree.entrypoint, "bin/codex");
}

#[test]
fn an_npm_package_that_is_not_a_platform_package_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = write_temp(
        dir.path(),
        "codex.tgz",
        &gzip_bytes(&tar_bytes(&[
            Item::File("package/package.json", b"{}", 0o644),
            Item::File("package/bin/codex.js", b"js", 0o644),
        ])),
    );
    let err = archive::read_trimmed(&tgz, Component::Codex, LINUX).unwrap_err();
    assert!(err.contains("platform package"), "{err}");
}

#[test]
fn a_wrong_integrity_fails_naming_both_and_the_registry_command() {
    let mirror = Mirror::serve(vec![("codex-9.9.9-linux-x64.tgz", b"tampered".to_vec())]);
    let cache = tempfile::tempdir().unwrap();
    let pin = Pin {
        asset: "codex-9.9.9-linux-x64.tgz".into(),
        sha256: None,
        integrity: Some(integrity(b"the real one")),
        package: Some("@openai/codex@9.9.9-linux-x64".into()),
    };
    let url = mirror.url(&pin.asset);
    let err = fetch::download_verified(Component::Codex, &url, &pin, cache.path(), LINUX)
        .expect_err("a tampered package");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains(&integrity(b"the real one")), "{err}");
    assert!(err.contains(&integrity(b"tampered")), "{err}");
    assert!(
        err.contains("npm view @openai/codex@9.9.9-linux-x64 dist.integrity"),
        "{err}"
    );
    assert_eq!(files_in(cache.path()), Vec::<String>::new());
}

fn trimmed_codex() -> Vec<(String, String)> {
    [
        ("bin/codex", "755"),
        ("bin/codex-code-mode-host", "755"),
        ("codex-package.json", "644"),
        ("codex-path/rg", "755"),
        ("codex-resources/bwrap", "755"),
        ("codex-resources/zsh/bin/zsh", "755"),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), m.to_string()))
    .collect()
}

fn describe(tree: &Tree) -> Vec<(String, String)> {
    tree.entries
        .iter()
        .map(|e| {
            let kind = match &e.data {
                EntryData::File(_) => format!("{:o}", e.mode),
                EntryData::Symlink(target) => format!("-> {target}"),
            };
            (e.path.clone(), kind)
        })
        .collect()
}

fn file_bytes<'t>(tree: &'t Tree, path: &str) -> &'t [u8] {
    match tree
        .entries
        .iter()
        .find(|e| e.path == path)
        .map(|e| &e.data)
    {
        Some(EntryData::File(bytes)) => bytes,
        other => panic!("{path}: {other:?}"),
    }
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

// ------------------------------------------------------------------ loopback server

/// A release mirror on 127.0.0.1 that records every requested path.
struct Mirror {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
}

/// A response body that trickles out.
struct Paced {
    bytes: Vec<u8>,
    at: usize,
    pause: std::time::Duration,
}

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.bytes.len() {
            return Ok(0);
        }
        std::thread::sleep(self.pause);
        let n = buf.len().min(64 * 1024).min(self.bytes.len() - self.at);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Mirror {
    fn serve(files: Vec<(&str, Vec<u8>)>) -> Mirror {
        Mirror::serve_paced(files, std::time::Duration::ZERO)
    }

    /// Serves each file in 64 KiB pieces with `pause` before each, every request in
    /// its own thread, so that downloads can overlap.
    fn serve_paced(files: Vec<(&str, Vec<u8>)>, pause: std::time::Duration) -> Mirror {
        let files: Arc<BTreeMap<String, Vec<u8>>> = Arc::new(
            files
                .into_iter()
                .map(|(name, bytes)| (format!("/{name}"), bytes))
                .collect(),
        );
        let server = tiny_http::Server::http("127.0.0.1:0").expect("listen on 127.0.0.1");
        let port = server.server_addr().to_ip().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let path = request.url().to_string();
                log.lock().unwrap().push(path.clone());
                let files = Arc::clone(&files);
                std::thread::spawn(move || {
                    let _ = match files.get(&path) {
                        Some(bytes) => {
                            let body = Paced {
                                bytes: bytes.clone(),
                                at: 0,
                                pause,
                            };
                            let len = bytes.len();
                            request.respond(tiny_http::Response::new(
                                tiny_http::StatusCode(200),
                                Vec::new(),
                                body,
                                Some(len),
                                None,
                            ))
                        }
                        None => request.respond(
                            tiny_http::Response::from_string("Not Found").with_status_code(404),
                        ),
                    };
                });
            }
        });
        Mirror {
            base: format!("http://127.0.0.1:{port}"),
            requests,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

const OLLAMA_ASSET: &str = "ollama-linux-amd64.tar.zst";
const CODEX_PACKAGE_ASSET: &str = "codex-package-x86_64-unknown-linux-musl.tar.gz";

/// The npm tarball `bundle.toml` pins for Linux `x86_64` (`codex-<version>-linux-x64.tgz`).
fn codex_asset() -> String {
    let bundle = pins::Bundle::parse(&real_bundle_toml()).unwrap();
    bundle.pin(Component::Codex, LINUX).unwrap().asset.clone()
}

/// npm's integrity of `bytes`: `sha512-<base64>`.
fn integrity(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(bytes))
    )
}

// ------------------------------------------------------------------ download and verify

#[test]
fn a_good_hash_downloads_verifies_and_is_cached() {
    let archive = zstd_bytes(&ollama_linux_tar());
    let mirror = Mirror::serve(vec![(OLLAMA_ASSET, archive.clone())]);
    let cache = tempfile::tempdir().unwrap();
    let pin = Pin {
        asset: OLLAMA_ASSET.into(),
        sha256: Some(sha256_hex(&archive)),
        integrity: None,
        package: None,
    };

    let path = fetch::download_verified(
        Component::Ollama,
        &mirror.url(OLLAMA_ASSET),
        &pin,
        cache.path(),
        LINUX,
    )
    .expect("a download matching its pin");
    assert_eq!(std::fs::read(&path).unwrap(), archive);
    assert!(
        path.starts_with(cache.path()),
        "{} is not in the cache",
        path.display()
    );
    assert_eq!(mirror.requests(), vec![format!("/{OLLAMA_ASSET}")]);
    assert_eq!(
        files_in(cache.path()).len(),
        1,
        "{:?}",
        files_in(cache.path())
    );

    // A rebuild finds it in the cache and asks nothing of the network.
    let again = fetch::download_verified(
        Component::Ollama,
        &mirror.url(OLLAMA_ASSET),
        &pin,
        cache.path(),
        LINUX,
    )
    .expect("the cached download");
    assert_eq!(again, path);
    assert_eq!(
        mirror.requests().len(),
        1,
        "the cached asset was downloaded again"
    );

    // And the cached archive trims like the download did.
    let tree = archive::read_trimmed(&again, Component::Ollama, LINUX).unwrap();
    assert_eq!(describe(&tree), trimmed_ollama());
}

#[test]
fn a_damaged_cache_entry_is_downloaded_again() {
    let archive = zstd_bytes(&ollama_linux_tar());
    let mirror = Mirror::serve(vec![(OLLAMA_ASSET, archive.clone())]);
    let cache = tempfile::tempdir().unwrap();
    let pin = Pin {
        asset: OLLAMA_ASSET.into(),
        sha256: Some(sha256_hex(&archive)),
        integrity: None,
        package: None,
    };
    let url = mirror.url(OLLAMA_ASSET);
    let path =
        fetch::download_verified(Component::Ollama, &url, &pin, cache.path(), LINUX).unwrap();
    std::fs::write(&path, b"half a download").unwrap();

    let again =
        fetch::download_verified(Component::Ollama, &url, &pin, cache.path(), LINUX).unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), archive);
    assert_eq!(mirror.requests().len(), 2);
}

#[test]
fn two_builds_fetching_the_same_asset_at_once_both_get_it_whole() {
    // Two builds sharing the cache (`cargo build` and `cargo test`, say): the second
    // starts while the first is past half way.
    let asset: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8 + 1).collect();
    let mirror = Mirror::serve_paced(
        vec![(OLLAMA_ASSET, asset.clone())],
        std::time::Duration::from_millis(15),
    );
    let cache = tempfile::tempdir().unwrap();
    let pin = Pin {
        asset: OLLAMA_ASSET.into(),
        sha256: Some(sha256_hex(&asset)),
        integrity: None,
        package: None,
    };
    let url = mirror.url(OLLAMA_ASSET);
    let build = |delay: u64| {
        let (pin, url, cache) = (pin.clone(), url.clone(), cache.path().to_path_buf());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(delay));
            let path = fetch::download_verified(Component::Ollama, &url, &pin, &cache, LINUX)?;
            // What the build reads right after: it must be the verified archive.
            Ok::<_, String>(sha256_hex(&std::fs::read(path).unwrap()))
        })
    };
    let first = build(0);
    let second = build(300);
    for (which, build) in [("first", first), ("second", second)] {
        let hash = build
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{which} build: {e}"));
        assert_eq!(
            Some(hash),
            pin.sha256,
            "the {which} build read a damaged archive"
        );
    }
    assert_eq!(mirror.requests().len(), 2, "the downloads did not overlap");
}

#[test]
fn a_wrong_hash_fails_naming_both_hashes_and_caches_nothing() {
    let archive = zstd_bytes(&ollama_linux_tar());
    let actual = sha256_hex(&archive);
    let expected = sha256_hex(b"the release that was pinned");
    let mirror = Mirror::serve(vec![(OLLAMA_ASSET, archive)]);
    let cache = tempfile::tempdir().unwrap();
    let pin = Pin {
        asset: OLLAMA_ASSET.into(),
        sha256: Some(expected.clone()),
        integrity: None,
        package: None,
    };

    let err = fetch::download_verified(
        Component::Ollama,
        &mirror.url(OLLAMA_ASSET),
        &pin,
        cache.path(),
        LINUX,
    )
    .expect_err("a download that does not match its pin");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(
        err.contains(&expected),
        "the error does not name the pinned hash: {err}"
    );
    assert!(
        err.contains(&actual),
        "the error does not name the downloaded hash: {err}"
    );
    assert!(err.contains(OLLAMA_ASSET), "{err}");
    assert_eq!(
        files_in(cache.path()),
        Vec::<String>::new(),
        "a bad download was kept"
    );

    // Nothing bad was cached: the next attempt downloads (and fails) again.
    fetch::download_verified(
        Component::Ollama,
        &mirror.url(OLLAMA_ASSET),
        &pin,
        cache.path(),
        LINUX,
    )
    .unwrap_err();
    assert_eq!(mirror.requests().len(), 2);
}

#[test]
fn a_missing_file_fails_naming_the_build_switches() {
    let mirror = Mirror::serve(vec![]);
    let cache = tempfile::tempdir().unwrap();
    for (component, asset, archive_var, skip_var) in [
        (
            Component::Ollama,
            OLLAMA_ASSET,
            "CODEX_OSS_OLLAMA_ARCHIVE",
            "SKIP_OLLAMA_DOWNLOAD",
        ),
        (
            Component::Codex,
            CODEX_PACKAGE_ASSET,
            "CODEX_OSS_CODEX_ARCHIVE",
            "SKIP_CODEX_DOWNLOAD",
        ),
    ] {
        let pin = Pin {
            asset: asset.into(),
            sha256: Some(sha256_hex(b"x")),
            integrity: None,
            package: None,
        };
        let url = mirror.url(asset);
        let err = fetch::download_verified(component, &url, &pin, cache.path(), LINUX)
            .expect_err("a download that is not there");
        assert!(err.contains("404"), "{err}");
        assert!(err.contains(&url), "the error does not name the URL: {err}");
        assert!(
            err.contains(archive_var) && err.contains(skip_var),
            "the error does not name the switches: {err}"
        );
    }
    assert_eq!(files_in(cache.path()), Vec::<String>::new());
}

#[test]
fn an_unreachable_server_fails_naming_the_build_switches() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let pin = Pin {
        asset: OLLAMA_ASSET.into(),
        sha256: Some(sha256_hex(b"x")),
        integrity: None,
        package: None,
    };
    let url = format!("http://127.0.0.1:{port}/{OLLAMA_ASSET}");
    let err =
        fetch::download_verified(Component::Ollama, &url, &pin, cache.path(), LINUX).unwrap_err();
    assert!(
        err.contains("CODEX_OSS_OLLAMA_ARCHIVE") && err.contains("SKIP_OLLAMA_DOWNLOAD"),
        "{err}"
    );
}

// ------------------------------------------------------------------ trimming

#[test]
fn ollama_keeps_executable_cpu_backends_and_runner_not_gpu_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let tar = ollama_linux_tar();
    // .tar.zst from 0.14 on, .tgz before.
    for (name, bytes) in [
        ("ollama.tar.zst", zstd_bytes(&tar)),
        ("ollama.tgz", gzip_bytes(&tar)),
    ] {
        let path = write_temp(dir.path(), name, &bytes);
        let tree = archive::read_trimmed(&path, Component::Ollama, LINUX).unwrap();
        assert_eq!(tree.entrypoint, "bin/ollama", "{name}");
        assert_eq!(describe(&tree), trimmed_ollama(), "{name}");
        assert_eq!(file_bytes(&tree, "bin/ollama"), OLLAMA_EXE);
    }
}

/// A universal Mach-O file made here: a fat header (32- or 64-bit records) and one
/// slice per `(cpu type, bytes)`, each at a 16 KiB boundary as `lipo` aligns them.
fn fat_macho(slices: &[(u32, &[u8])], wide: bool) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(if wide { 0xcafe_babf_u32 } else { 0xcafe_babe }).to_be_bytes());
    out.extend_from_slice(&(slices.len() as u32).to_be_bytes());
    let align = 1 << 14;
    let mut offset = align;
    let mut placed = Vec::new();
    for (cpu, bytes) in slices {
        out.extend_from_slice(&cpu.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes()); // cpusubtype
        if wide {
            out.extend_from_slice(&(offset as u64).to_be_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(&14u32.to_be_bytes());
            out.extend_from_slice(&0u32.to_be_bytes());
        } else {
            out.extend_from_slice(&(offset as u32).to_be_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(&14u32.to_be_bytes());
        }
        placed.push((offset, *bytes));
        offset += bytes.len().div_ceil(align) * align;
    }
    for (at, bytes) in placed {
        out.resize(at, 0);
        out.extend_from_slice(bytes);
    }
    out
}

#[test]
fn darwin_ollama_is_thinned_to_the_target_and_keeps_what_metal_needs() {
    const ARM: &[u8] = b"\xcf\xfa\xed\xfe arm64 ollama";
    const X86: &[u8] = b"\xcf\xfa\xed\xfe x86_64 ollama";
    let dir = tempfile::tempdir().unwrap();
    for wide in [false, true] {
        let fat = fat_macho(
            &[(macho::CPU_TYPE_X86_64, X86), (macho::CPU_TYPE_ARM64, ARM)],
            wide,
        );
        let lib = fat_macho(
            &[
                (macho::CPU_TYPE_X86_64, b"x86 lib"),
                (macho::CPU_TYPE_ARM64, b"arm lib"),
            ],
            wide,
        );
        // Shaped like ollama-darwin.tgz: one folder, Metal built in.
        let tar = tar_bytes(&[
            Item::File("ollama", &fat, 0o755),
            Item::File("llama-server", &fat, 0o755),
            Item::File("llama-quantize", &fat, 0o755),
            Item::File("libggml-base.dylib", &lib, 0o644),
            Item::File("libggml-metal.dylib", &lib, 0o644),
            Item::File("default.metallib", b"metal shaders, not Mach-O", 0o644),
            Item::Dir("mlx_metal_v3/"),
            Item::File("mlx_metal_v3/libmlx.dylib", &lib, 0o644),
        ]);
        let path = write_temp(dir.path(), "ollama-darwin.tgz", &gzip_bytes(&tar));
        for (target, slice, lib_slice) in [
            ("aarch64-apple-darwin", ARM, &b"arm lib"[..]),
            ("x86_64-apple-darwin", X86, &b"x86 lib"[..]),
        ] {
            let tree = archive::read_trimmed(&path, Component::Ollama, target).unwrap();
            let paths: Vec<String> = describe(&tree).into_iter().map(|(p, _)| p).collect();
            assert_eq!(
                paths,
                [
                    "default.metallib",
                    "libggml-base.dylib",
                    "libggml-metal.dylib",
                    "llama-server",
                    "ollama"
                ],
                "{target}"
            );
            assert_eq!(file_bytes(&tree, "ollama"), slice, "{target}");
            assert_eq!(file_bytes(&tree, "llama-server"), slice, "{target}");
            assert_eq!(
                file_bytes(&tree, "libggml-metal.dylib"),
                lib_slice,
                "{target}"
            );
            assert_eq!(
                file_bytes(&tree, "default.metallib"),
                b"metal shaders, not Mach-O"
            );
        }
    }
    // A universal file without the target's slice is an error, not a silent pass.
    let only_x86 = tar_bytes(&[Item::File(
        "ollama",
        &fat_macho(&[(macho::CPU_TYPE_X86_64, X86)], false),
        0o755,
    )]);
    let path = write_temp(dir.path(), "x86-only.tgz", &gzip_bytes(&only_x86));
    let err = archive::read_trimmed(&path, Component::Ollama, "aarch64-apple-darwin").unwrap_err();
    assert!(err.contains("without a slice"), "{err}");
    // Linux builds leave everything as it is.
    assert_eq!(macho::cpu_type("x86_64-unknown-linux-gnu"), None);
}

#[test]
fn codex_keeps_its_whole_package_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(dir.path(), "codex.tar.gz", &gzip_bytes(&codex_tar()));
    let tree = archive::read_trimmed(&path, Component::Codex, LINUX).unwrap();
    assert_eq!(tree.entrypoint, "bin/codex");
    assert_eq!(describe(&tree), trimmed_codex());
    assert_eq!(file_bytes(&tree, "codex-package.json"), CODEX_PACKAGE_JSON);
}

#[test]
fn codex_archive_wrapped_in_one_folder_is_unwrapped() {
    let dir = tempfile::tempdir().unwrap();
    let wrapped = tar_bytes(&[
        Item::File("codex-x86_64/codex-package.json", CODEX_PACKAGE_JSON, 0o644),
        Item::File("codex-x86_64/bin/codex", b"codex", 0o755),
        Item::File("codex-x86_64/codex-path/rg", b"rg", 0o755),
    ]);
    let path = write_temp(dir.path(), "codex.tar.gz", &gzip_bytes(&wrapped));
    let tree = archive::read_trimmed(&path, Component::Codex, LINUX).unwrap();
    assert_eq!(tree.entrypoint, "bin/codex");
    let paths: Vec<_> = describe(&tree).into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["bin/codex", "codex-package.json", "codex-path/rg"]);
}

#[test]
fn an_archive_without_the_executable_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_bytes(&[
        Item::File("lib/ollama/libggml-base.so", b"x", 0o644),
        Item::File("README", b"x", 0o644),
    ]);
    let path = write_temp(dir.path(), "ollama.tar.zst", &zstd_bytes(&tar));
    let err = archive::read_trimmed(&path, Component::Ollama, LINUX).unwrap_err();
    assert!(err.contains("no ollama executable"), "{err}");
}

#[test]
fn an_archive_escaping_its_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_mode(0o755);
    header.set_entry_type(tar::EntryType::Regular);
    // tar::Builder refuses `..` itself: write the name into the header directly.
    let mut raw = Vec::new();
    {
        let name = b"../../bin/ollama";
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        raw.extend_from_slice(header.as_bytes());
        raw.extend_from_slice(b"x");
        raw.resize(1024, 0);
        raw.extend_from_slice(&[0; 1024]);
    }
    let path = write_temp(dir.path(), "evil.tar.zst", &zstd_bytes(&raw));
    let err = archive::read_trimmed(&path, Component::Ollama, LINUX).unwrap_err();
    assert!(err.contains("unsafe path"), "{err}");
}

#[test]
fn a_windows_zip_release_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ollama-windows-amd64.zip");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        for (name, bytes) in [
            ("ollama.exe", &b"MZ windows ollama"[..]),
            ("lib/ollama/ggml-base.dll", b"base"),
            ("lib/ollama/ggml-cpu-x64.dll", b"cpu"),
            ("lib/ollama/llama-server.exe", b"MZ runner"),
            ("lib/ollama/cuda_v12/ggml-cuda.dll", CUDA_LIB),
            ("lib/ollama/rocm/ggml-hip.dll", CUDA_LIB),
        ] {
            zip.start_file(name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.add_directory("lib/ollama/vulkan/", options).unwrap();
        zip.finish().unwrap();
    }
    let tree = archive::read_trimmed(&path, Component::Ollama, "x86_64-pc-windows-msvc").unwrap();
    assert_eq!(tree.entrypoint, "ollama.exe");
    let paths: Vec<_> = describe(&tree).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "lib/ollama/ggml-base.dll",
            "lib/ollama/ggml-cpu-x64.dll",
            "lib/ollama/llama-server.exe",
            "ollama.exe"
        ]
    );
    assert_eq!(file_bytes(&tree, "ollama.exe"), b"MZ windows ollama");
}

#[test]
fn a_bare_executable_becomes_bin_name() {
    let dir = tempfile::tempdir().unwrap();
    let elf = b"\x7fELF\x02\x01\x01pretend codex";
    let path = write_temp(dir.path(), "codex", elf);
    let tree = archive::read_trimmed(&path, Component::Codex, LINUX).unwrap();
    assert_eq!(tree.entrypoint, "bin/codex");
    assert_eq!(
        describe(&tree),
        [("bin/codex".to_string(), "755".to_string())]
    );
    assert_eq!(file_bytes(&tree, "bin/codex"), elf);

    let path = write_temp(dir.path(), "ollama.exe", b"MZ ollama");
    let tree = archive::read_trimmed(&path, Component::Ollama, "x86_64-pc-windows-msvc").unwrap();
    assert_eq!(tree.entrypoint, "bin/ollama.exe");
}

// ------------------------------------------------------------------ pins

fn real_bundle_toml() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("bundle.toml")).unwrap()
}

#[test]
fn the_real_pins_cover_every_target_with_an_ollama_codex_accepts() {
    let bundle = pins::Bundle::parse(&real_bundle_toml()).expect("bundle.toml parses");
    // Codex from the npm registry: every target a platform package pinned by integrity.
    for pin in bundle.codex.targets.values() {
        assert!(pin.integrity.is_some(), "{pin:?}");
        assert!(pin
            .package
            .as_deref()
            .is_some_and(|p| p.starts_with("@openai/codex@")));
    }
    for target in [
        "aarch64-apple-darwin",
        "x86_64-apple-darwin",
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "x86_64-pc-windows-msvc",
    ] {
        for component in [Component::Ollama, Component::Codex] {
            bundle
                .pin(component, target)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let err = bundle
        .pin(Component::Codex, "riscv64gc-unknown-linux-gnu")
        .unwrap_err();
    assert!(
        err.contains("CODEX_OSS_CODEX_ARCHIVE") && err.contains("SKIP_CODEX_DOWNLOAD"),
        "{err}"
    );
}

#[test]
fn an_ollama_older_than_codex_accepts_is_refused() {
    let old = real_bundle_toml().replacen("version = \"0.32.15\"", "version = \"0.13.3\"", 1);
    assert_ne!(old, real_bundle_toml());
    let err = pins::Bundle::parse(&old).expect_err("Ollama 0.13.3 pinned");
    assert!(err.contains("0.13.3") && err.contains("0.13.4"), "{err}");

    let bundle = pins::Bundle::parse(&real_bundle_toml()).unwrap();
    assert!(bundle.check_ollama_version("0.13.4").is_ok());
    assert!(bundle.check_ollama_version("v0.14.0").is_ok());
    let err = bundle.check_ollama_version("0.12.11").unwrap_err();
    assert!(err.contains("older than 0.13.4"), "{err}");
}

#[test]
fn a_malformed_pin_is_refused() {
    let text = real_bundle_toml().replacen(
        "50539c5fe9bf85887733355098dcdb266b433cb8c73fa180713417e9ed6e42bb",
        "50539c5fe9bf8588",
        1,
    );
    let err = pins::Bundle::parse(&text).expect_err("a short sha256");
    assert!(
        err.contains("x86_64-unknown-linux-gnu") && err.contains("64 hex digits"),
        "{err}"
    );
}

// ------------------------------------------------------------------ the build script itself

/// The build script Cargo compiled for this package (the newest, when there are several).
fn build_script() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/build_payloads-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let mut found: Vec<(std::time::SystemTime, PathBuf)> =
        std::fs::read_dir(profile_dir.join("build"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("codex-oss-"))
            .map(|e| e.path().join("build-script-build"))
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
    found.sort();
    found
        .pop()
        .expect("no compiled build script under target/*/build/codex-oss-*")
        .1
}

/// A package directory whose bundle.toml pins the test archives for `x86_64` Linux.
struct Package {
    dir: tempfile::TempDir,
    out_dir: PathBuf,
    cache: PathBuf,
}

impl Package {
    fn new(ollama_sha256: &str, codex_integrity: &str) -> Package {
        let mut bundle: toml::Table = toml::from_str(&real_bundle_toml()).unwrap();
        for (name, field, digest) in [
            ("ollama", "sha256", ollama_sha256),
            ("codex", "integrity", codex_integrity),
        ] {
            let pin = bundle[name]["targets"][LINUX].as_table().unwrap().clone();
            let mut pin = pin;
            pin.insert(field.into(), digest.into());
            bundle.get_mut(name).unwrap()["targets"]
                .as_table_mut()
                .unwrap()
                .insert(LINUX.into(), pin.into());
            // Nothing may reach the real release server.
            bundle
                .get_mut(name)
                .unwrap()
                .as_table_mut()
                .unwrap()
                .insert("base_url".into(), "http://127.0.0.1:9/".into());
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bundle.toml"),
            toml::to_string(&bundle).unwrap(),
        )
        .unwrap();
        // The build script also compiles in the update public key.
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/update.pub"),
            keys.join("update.pub"),
        )
        .unwrap();
        let out_dir = dir.path().join("out");
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&out_dir).unwrap();
        Package {
            dir,
            out_dir,
            cache,
        }
    }

    /// Runs the build script as Cargo does, with nothing inherited from this test's
    /// own build switches.
    fn build(&self, mirror: &Mirror, extra: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(build_script());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("CODEX_OSS_")
                || key.starts_with("SKIP_")
                || key.starts_with("CARGO_")
            {
                cmd.env_remove(&key);
            }
        }
        cmd.env("CARGO_MANIFEST_DIR", self.dir.path())
            .env("OUT_DIR", &self.out_dir)
            .env("TARGET", LINUX)
            .env("HOST", LINUX)
            .env("PROFILE", "debug")
            .env("CODEX_OSS_PAYLOAD_MIRROR", &mirror.base)
            .env("CODEX_OSS_DOWNLOAD_CACHE", &self.cache)
            .env("CODEX_OSS_ZSTD_LEVEL", "1")
            .current_dir(self.dir.path());
        for (key, value) in extra {
            cmd.env(key, value);
        }
        cmd.output().expect("run the build script")
    }

    fn payloads_rs(&self) -> String {
        std::fs::read_to_string(self.out_dir.join("payloads.rs")).unwrap_or_default()
    }
}

fn text(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Unpacks an embedded payload the way src/payload.rs reads it: (path, mode or link).
fn payload_listing(path: &Path) -> Vec<(String, String)> {
    let mut archive =
        tar::Archive::new(zstd::Decoder::new(std::fs::File::open(path).unwrap()).unwrap());
    let mut listing = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let kind = if entry.header().entry_type().is_symlink() {
            format!(
                "-> {}",
                entry.link_name().unwrap().unwrap().to_string_lossy()
            )
        } else {
            let mut sink = Vec::new();
            entry.read_to_end(&mut sink).unwrap();
            format!("{:o}", entry.header().mode().unwrap() & 0o777)
        };
        listing.push((path, kind));
    }
    listing
}

struct Fixture {
    ollama: Vec<u8>,
    codex: Vec<u8>,
    mirror: Mirror,
}

fn fixture() -> Fixture {
    let ollama = zstd_bytes(&ollama_linux_tar());
    let codex = gzip_bytes(&npm_codex_tar());
    let mirror = Mirror::serve(vec![
        (OLLAMA_ASSET, ollama.clone()),
        (&codex_asset(), codex.clone()),
    ]);
    Fixture {
        ollama,
        codex,
        mirror,
    }
}

#[test]
fn build_script_embeds_verified_trimmed_payloads_and_reuses_its_cache() {
    let f = fixture();
    let package = Package::new(&sha256_hex(&f.ollama), &integrity(&f.codex));
    let output = package.build(&f.mirror, &[]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("cargo:warning=embedding Ollama 0.32.15: 7 files"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "cargo:warning=embedding Codex {}: 6 files",
            pins::Bundle::parse(&real_bundle_toml())
                .unwrap()
                .codex
                .version
        )),
        "{stdout}"
    );
    for var in [
        "SKIP_OLLAMA_DOWNLOAD",
        "CODEX_OSS_CODEX_ARCHIVE",
        "CODEX_OSS_PAYLOAD_MIRROR",
    ] {
        assert!(
            stdout.contains(&format!("cargo:rerun-if-env-changed={var}")),
            "{stdout}"
        );
    }
    let mut requests = f.mirror.requests();
    requests.sort();
    assert_eq!(
        requests,
        [format!("/{}", codex_asset()), format!("/{OLLAMA_ASSET}")]
    );

    let payloads = package.payloads_rs();
    for (name, lower, entrypoint) in [
        ("OLLAMA", "ollama", "bin/ollama"),
        ("CODEX", "codex", "bin/codex"),
    ] {
        let file = package.out_dir.join(format!("{lower}.tar.zst"));
        let hash = sha256_hex(&std::fs::read(&file).unwrap());
        let line = payloads
            .lines()
            .find(|l| l.starts_with(&format!("pub static {name}: Option<Payload> = Some(")))
            .unwrap_or_else(|| panic!("payloads.rs embeds no {name}:\n{payloads}"));
        assert!(line.contains(&format!("sha256: \"{hash}\"")), "{line}");
        assert!(
            line.contains(&format!("entrypoint: \"{entrypoint}\"")),
            "{line}"
        );
        assert!(line.contains(&format!("\"/{lower}.tar.zst\"")), "{line}");
    }
    assert_eq!(
        payload_listing(&package.out_dir.join("ollama.tar.zst")),
        trimmed_ollama()
    );
    assert_eq!(
        payload_listing(&package.out_dir.join("codex.tar.zst")),
        trimmed_codex()
    );

    // A rebuild (same cache, fresh OUT_DIR) downloads nothing.
    std::fs::remove_dir_all(&package.out_dir).unwrap();
    std::fs::create_dir_all(&package.out_dir).unwrap();
    let output = package.build(&f.mirror, &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(f.mirror.requests().len(), 2, "the rebuild downloaded again");
    assert_eq!(
        payload_listing(&package.out_dir.join("codex.tar.zst")),
        trimmed_codex()
    );
}

/// `CODEX_OSS_KEEP_GPU_LIBS=1` embeds Ollama's GPU libraries too (a build for machines
/// that must not fetch them at run time).
#[test]
fn build_script_keeps_the_gpu_libraries_when_asked() {
    let f = fixture();
    let package = Package::new(&sha256_hex(&f.ollama), &integrity(&f.codex));
    let output = package.build(&f.mirror, &[("CODEX_OSS_KEEP_GPU_LIBS", "1")]);
    assert!(output.status.success(), "{}", text(&output));
    let listing = payload_listing(&package.out_dir.join("ollama.tar.zst"));
    let paths: Vec<&str> = listing.iter().map(|(p, _)| p.as_str()).collect();
    for gpu in [
        "lib/ollama/cuda_v12/libggml-cuda.so",
        "lib/ollama/cuda_v12/libcublas.so.12",
    ] {
        assert!(paths.contains(&gpu), "{gpu} left out: {paths:?}");
    }
    // Everything the trimmed payload has is there as well.
    for (path, _) in trimmed_ollama() {
        assert!(paths.contains(&path.as_str()), "{path} left out");
    }
}

#[test]
fn build_script_fails_on_a_wrong_pin_and_embeds_nothing() {
    let f = fixture();
    let package = Package::new(&sha256_hex(b"not this archive"), &integrity(&f.codex));
    let output = package.build(&f.mirror, &[]);
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(stderr.contains(&sha256_hex(&f.ollama)), "{stderr}");
    assert!(stderr.contains("CODEX_OSS_OLLAMA_ARCHIVE"), "{stderr}");
    assert_eq!(
        package.payloads_rs(),
        "",
        "payloads.rs written by a failed build"
    );
    assert_eq!(files_in(&package.cache), Vec::<String>::new());
}

#[test]
fn build_script_names_the_switches_when_the_download_is_missing() {
    let f = fixture();
    let package = Package::new(&sha256_hex(&f.ollama), &integrity(&f.codex));
    let empty = Mirror::serve(vec![]);
    let output = package.build(&empty, &[]);
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HTTP 404"), "{stderr}");
    assert!(
        stderr.contains("CODEX_OSS_OLLAMA_ARCHIVE=FILE")
            && stderr.contains("SKIP_OLLAMA_DOWNLOAD=1"),
        "{stderr}"
    );
}

#[test]
fn build_script_skips_ollama_when_asked() {
    let f = fixture();
    let package = Package::new(&sha256_hex(b"never fetched"), &integrity(&f.codex));
    let output = package.build(&f.mirror, &[("SKIP_OLLAMA_DOWNLOAD", "1")]);
    assert!(output.status.success(), "{}", text(&output));
    let payloads = package.payloads_rs();
    assert!(
        payloads.contains("pub static OLLAMA: Option<Payload> = None;"),
        "{payloads}"
    );
    assert!(
        payloads.contains("pub static CODEX: Option<Payload> = Some("),
        "{payloads}"
    );
    assert_eq!(f.mirror.requests(), [format!("/{}", codex_asset())]);
    assert!(!package.out_dir.join("ollama.tar.zst").exists());
}

#[test]
fn build_script_embeds_local_archives_without_downloading() {
    let f = fixture();
    let package = Package::new(&sha256_hex(b"unused"), &integrity(b"unused"));
    let ollama = write_temp(
        package.dir.path(),
        "ollama.tgz",
        &gzip_bytes(&ollama_linux_tar()),
    );
    let codex = write_temp(package.dir.path(), "codex", b"\x7fELF pretend codex");
    let output = package.build(
        &f.mirror,
        &[
            ("CODEX_OSS_OLLAMA_ARCHIVE", ollama.to_str().unwrap()),
            ("CODEX_OSS_CODEX_ARCHIVE", codex.to_str().unwrap()),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(f.mirror.requests(), Vec::<String>::new());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("not the release pinned in bundle.toml"),
        "{stdout}"
    );
    assert_eq!(
        payload_listing(&package.out_dir.join("ollama.tar.zst")),
        trimmed_ollama()
    );
    assert_eq!(
        payload_listing(&package.out_dir.join("codex.tar.zst")),
        [("bin/codex".to_string(), "755".to_string())]
    );

    // A switch pointing nowhere fails with what to do.
    let output = package.build(
        &f.mirror,
        &[
            ("SKIP_OLLAMA_DOWNLOAD", "1"),
            ("CODEX_OSS_CODEX_ARCHIVE", "/nonexistent/codex.tgz"),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/codex.tgz") && stderr.contains("SKIP_CODEX_DOWNLOAD=1"),
        "{stderr}"
    );
}

/// A local Ollama archive is hashed once, and its SHA-256 both decides the warning and
/// is what its GPU libraries are trusted under at run time.
#[test]
fn a_local_ollama_archive_gives_its_own_sha256_to_the_gpu_libraries() {
    let f = fixture();
    for (pinned, warned) in [(sha256_hex(&f.ollama), false), (sha256_hex(b"other"), true)] {
        let package = Package::new(&pinned, &integrity(&f.codex));
        let ollama = write_temp(package.dir.path(), OLLAMA_ASSET, &f.ollama);
        let output = package.build(
            &f.mirror,
            &[
                ("CODEX_OSS_OLLAMA_ARCHIVE", ollama.to_str().unwrap()),
                ("SKIP_CODEX_DOWNLOAD", "1"),
            ],
        );
        assert!(output.status.success(), "{}", text(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout.contains("not the release pinned in bundle.toml"),
            warned,
            "{stdout}"
        );
        let gpu_source = std::fs::read_to_string(package.out_dir.join("gpu_source.rs")).unwrap();
        assert!(
            gpu_source.contains(&format!(
                "asset: \"{OLLAMA_ASSET}\", sha256: \"{}\", bytes: {},",
                sha256_hex(&f.ollama),
                f.ollama.len()
            )),
            "{gpu_source}"
        );
    }
    assert_eq!(f.mirror.requests(), Vec::<String>::new());
}

#[test]
fn build_script_refuses_an_ollama_older_than_codex_accepts() {
    let f = fixture();
    let package = Package::new(&sha256_hex(&f.ollama), &integrity(&f.codex));
    let ollama = write_temp(package.dir.path(), "ollama.tar.zst", &f.ollama);
    let output = package.build(
        &f.mirror,
        &[
            ("CODEX_OSS_OLLAMA_ARCHIVE", ollama.to_str().unwrap()),
            ("CODEX_OSS_OLLAMA_ARCHIVE_VERSION", "0.13.3"),
        ],
    );
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Ollama 0.13.3 is older than 0.13.4"),
        "{stderr}"
    );
    assert_eq!(package.payloads_rs(), "");
}
