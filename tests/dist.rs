//! Packaging tests: what cargo-dist (pinned 0.34.0) makes from this repository, checked
//! the way users meet it: the release archive and its checksum, the shell installer
//! installing from a web server, the Homebrew formula, the MSI, the release workflows,
//! the universal macOS archive.
//!
//! One `dist build --artifacts=all` for this machine's target (payloads from the
//! local-archive switches, `scripts/fixtures.sh`) is shared by the tests. It builds in
//! `target/dist-test` so it never waits on the lock of the `cargo test` running it;
//! dist itself always writes its artifacts to `target/distrib`, so the tests copy them
//! out before reading them. A second, global `dist build` then plays the release
//! workflow's build-global-artifacts job: it merges the per-target manifests (the real
//! Linux one and stand-ins for the four targets this machine cannot compile) into the
//! installers and the formula the release publishes.
//!
//! A tool that is missing fails its test with a message naming
//! scripts/install-test-deps.sh, which installs every one of them.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const APP: &str = "codex-oss";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const DIST_VERSION: &str = "0.34.0";
const ACTION_VALIDATOR_VERSION: &str = "0.6.0";
/// The target this machine builds; the others come from GitHub's runners.
const HOST_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The targets built on other runners, stood in for by manifests here.
const OTHER_TARGETS: [&str; 4] = [
    "aarch64-apple-darwin",
    "x86_64-apple-darwin",
    "aarch64-unknown-linux-gnu",
    "x86_64-pc-windows-msvc",
];
const RELEASE_URL: &str = "https://github.com/codex-oss/codex-oss/releases/download";
const MISSING: &str = "run scripts/install-test-deps.sh";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn archive_name(target: &str) -> String {
    let ext = if target.contains("windows") {
        "zip"
    } else {
        "tar.xz"
    };
    format!("{APP}-{target}.{ext}")
}

// ---------------------------------------------------------------- tools

fn cache_dir() -> PathBuf {
    match std::env::var_os("CODEX_OSS_TEST_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => home().join(".cache/codex-oss-test"),
    }
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
}

/// `name` on PATH or in one of `extra` directories.
fn find_tool(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The tool or a one-line failure saying how to get it.
fn need(name: &str) -> PathBuf {
    need_in(name, &[])
}

fn need_in(name: &str, extra: &[PathBuf]) -> PathBuf {
    find_tool(name, extra).unwrap_or_else(|| panic!("`{name}` not found: {MISSING}"))
}

/// The pinned cargo-dist, or an error naming the install script.
fn dist() -> Result<PathBuf, String> {
    let dist = find_tool("dist", &[home().join(".cargo/bin")])
        .ok_or_else(|| format!("`dist` (cargo-dist {DIST_VERSION}) not found: {MISSING}"))?;
    let out = Command::new(&dist)
        .arg("--version")
        .output()
        .map_err(|e| format!("running {}: {e}", dist.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if version != format!("cargo-dist {DIST_VERSION}") {
        return Err(format!(
            "{} is `{version}`, the repository pins cargo-dist {DIST_VERSION}: {MISSING}",
            dist.display()
        ));
    }
    Ok(dist)
}

/// The shell installer downloads with curl or wget.
fn need_downloader() {
    assert!(
        !(find_tool("curl", &[]).is_none() && find_tool("wget", &[]).is_none()),
        "neither `curl` nor `wget` found: the shell installer needs one"
    );
}

fn action_validator() -> PathBuf {
    let npm_bin = cache_dir()
        .join(format!("npm-action-validator-{ACTION_VALIDATOR_VERSION}"))
        .join("node_modules/.bin");
    need_in("action-validator", &[npm_bin])
}

/// Runs `cmd`; its output, or an error carrying its stderr.
fn try_run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn run(cmd: &mut Command) -> Output {
    try_run(cmd).unwrap_or_else(|e| panic!("{e}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_file(path: &Path) -> String {
    let mut file = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    to_hex(&hasher.finalize())
}

fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// A scratch directory outside the repository: dist takes the enclosing git
/// repository for the project it works on.
fn scratch(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(label).tempdir().unwrap()
}

/// Copies the files (not directories) of `from` into a fresh `to`.
fn copy_files(from: &Path, to: &Path) -> Result<(), String> {
    if to.exists() {
        fs::remove_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() {
            fs::copy(&path, to.join(path.file_name().unwrap()))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- the shared build

struct Release {
    /// What `dist build --artifacts=all --target HOST_TARGET` wrote.
    local: PathBuf,
    /// What the release publishes: the host archive plus the global artifacts built
    /// from all five targets' manifests.
    published: PathBuf,
    /// sha256 of every unix and Windows archive the published installers name.
    sha256: BTreeMap<String, String>,
}

fn release() -> &'static Release {
    static RELEASE: OnceLock<Result<Release, String>> = OnceLock::new();
    match RELEASE.get_or_init(build_release) {
        Ok(release) => release,
        Err(e) => panic!("{e}"),
    }
}

/// The fixture archives scripts/test.sh exports, or the script's output when a test
/// runs outside it.
fn payload_env() -> Result<Vec<(String, String)>, String> {
    let mut vars = vec![(
        "CODEX_OSS_ZSTD_LEVEL".to_string(),
        std::env::var("CODEX_OSS_ZSTD_LEVEL").unwrap_or_else(|_| "1".into()),
    )];
    if std::env::var_os("CODEX_OSS_OLLAMA_ARCHIVE").is_some()
        && std::env::var_os("CODEX_OSS_CODEX_ARCHIVE").is_some()
    {
        return Ok(vars);
    }
    let out = try_run(
        Command::new("bash")
            .arg("scripts/fixtures.sh")
            .current_dir(repo()),
    )?;
    for line in stdout(&out).lines() {
        if let Some((key, value)) = line
            .strip_prefix("export ")
            .and_then(|kv| kv.split_once('='))
        {
            vars.push((key.to_string(), value.to_string()));
        }
    }
    Ok(vars)
}

fn build_release() -> Result<Release, String> {
    let dist = dist()?;
    let distrib = repo().join("target/distrib");
    let work = repo().join("target/dist-test");
    // Stale per-target manifests in target/distrib would be merged into this build.
    if distrib.exists() {
        fs::remove_dir_all(&distrib).map_err(|e| format!("{}: {e}", distrib.display()))?;
    }

    let started = Instant::now();
    let out = try_run(
        Command::new(&dist)
            .args(["build", "--artifacts=all", "--target", HOST_TARGET])
            .arg("--output-format=json")
            .current_dir(repo())
            .env("CARGO_TARGET_DIR", &work)
            // dist compresses archives with xz -9 (minutes for a payload-sized binary
            // here); the level changes the size, not what is packed.
            .env("AXOASSET_XZ_LEVEL", "0")
            .envs(payload_env()?),
    )?;
    eprintln!(
        "dist build --artifacts=all --target {HOST_TARGET}: {:.0?}",
        started.elapsed()
    );
    let manifest: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("dist build printed no JSON manifest: {e}"))?;
    let local = work.join("local");
    copy_files(&distrib, &local)?;

    // As the release workflow does: every build-local-artifacts job leaves its
    // manifest in target/distrib, then one global build makes the installers and the
    // formula from all of them.
    let host_archive = archive_name(HOST_TARGET);
    let mut sha256 = BTreeMap::new();
    sha256.insert(
        host_archive.clone(),
        sha256_file(&local.join(&host_archive)),
    );
    let write = |name: String, value: &Value| {
        fs::write(distrib.join(name), value.to_string()).map_err(|e| e.to_string())
    };
    write(format!("{HOST_TARGET}-dist-manifest.json"), &manifest)?;
    for target in OTHER_TARGETS {
        let hash = to_hex(&Sha256::digest(format!("stand-in archive for {target}")));
        write(
            format!("{target}-dist-manifest.json"),
            &stand_in_manifest(&manifest, target, &hash),
        )?;
        sha256.insert(archive_name(target), hash);
    }
    try_run(
        Command::new(&dist)
            .args(["build", "--artifacts=global", "--output-format=json"])
            .current_dir(repo())
            .env("CARGO_TARGET_DIR", &work),
    )?;
    // target/distrib now holds what the release uploads (the host archive is still
    // there), plus the per-target manifests, which it does not.
    let published = work.join("published");
    copy_files(&distrib, &published)?;
    for file in fs::read_dir(&published).map_err(|e| e.to_string())? {
        let path = file.map_err(|e| e.to_string())?.path();
        if path.to_string_lossy().ends_with("-dist-manifest.json") {
            fs::remove_file(path).map_err(|e| e.to_string())?;
        }
    }
    Ok(Release {
        local,
        published,
        sha256,
    })
}

/// The manifest a build-local-artifacts job for `target` would upload: the host's,
/// with its archive renamed and given `sha256`.
fn stand_in_manifest(host: &Value, target: &str, sha256: &str) -> Value {
    let host_archive = archive_name(HOST_TARGET);
    let archive = archive_name(target);
    let renamed = |value: &Value| -> Value {
        let text = value
            .to_string()
            .replace(&host_archive, &archive)
            .replace(HOST_TARGET, target);
        serde_json::from_str(&text).unwrap()
    };
    let mut entry = renamed(&host["artifacts"][&host_archive]);
    entry["checksums"]["sha256"] = json!(sha256);
    let checksum = renamed(&host["artifacts"][format!("{host_archive}.sha256")]);
    let mut manifest = host.clone();
    manifest["artifacts"] =
        json!({ archive.clone(): entry, format!("{archive}.sha256"): checksum });
    manifest["releases"][0]["artifacts"] = json!([archive.clone(), format!("{archive}.sha256")]);
    manifest["systems"] = json!({});
    manifest["assets"] = json!({});
    manifest["upload_files"] = json!([]);
    manifest
}

// ---------------------------------------------------------------- dist build

#[test]
fn dist_build_makes_the_archive_its_checksum_the_installers_and_the_formula() {
    let release = release();
    let archive = archive_name(HOST_TARGET);
    for name in [
        archive.clone(),
        format!("{archive}.sha256"),
        format!("{APP}-installer.sh"),
        format!("{APP}.rb"),
    ] {
        assert!(
            release.local.join(&name).is_file(),
            "dist build --artifacts=all made no {name}"
        );
    }
    // The PowerShell installer needs the Windows build in the plan: the release's
    // global job makes it (a --target linux build leaves it out).
    assert!(release
        .published
        .join(format!("{APP}-installer.ps1"))
        .is_file());

    // The .sha256 is what `sha256sum -c` reads, for the archive as published.
    let hash = &release.sha256[&archive];
    let line = fs::read_to_string(release.local.join(format!("{archive}.sha256"))).unwrap();
    assert_eq!(line.trim_end(), format!("{hash} *{archive}"));
    run(Command::new(need("sha256sum"))
        .args(["-c", &format!("{archive}.sha256")])
        .current_dir(&release.local));

    // The archive holds the launcher in a folder named after it, beside the README.
    let listing = stdout(&run(Command::new(need("tar"))
        .arg("-tJvf")
        .arg(release.local.join(&archive))));
    let stem = archive.trim_end_matches(".tar.xz");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwx") && l.ends_with(&format!("{stem}/{APP}"))),
        "no executable {stem}/{APP} in {archive}:\n{listing}"
    );
    assert!(listing.contains(&format!("{stem}/README.md")), "{listing}");
}

/// What scripts/notices.sh wrote, as committed.
const NOTICES: &str = "THIRD-PARTY-NOTICES.txt";

#[test]
fn archive_carries_the_licence_and_the_third_party_notices() {
    let release = release();
    let archive = archive_name(HOST_TARGET);
    let stem = archive.trim_end_matches(".tar.xz");
    // Beside the launcher, the very files of the repository.
    for name in ["LICENSE", NOTICES] {
        let packed = run(Command::new(need("tar"))
            .arg("-xJOf")
            .arg(release.local.join(&archive))
            .arg(format!("{stem}/{name}")))
        .stdout;
        let committed = fs::read(repo().join(name)).unwrap();
        assert!(
            packed == committed,
            "{stem}/{name} in {archive} (sha256 {}) differs from the repository's {name} \
             (sha256 {})",
            to_hex(&Sha256::digest(&packed)),
            to_hex(&Sha256::digest(&committed))
        );
    }

    // The notices are those of the Ollama and Codex that bundle.toml pins: a version
    // bump without `scripts/notices.sh` fails here.
    let notices = fs::read_to_string(repo().join(NOTICES)).unwrap();
    let bundle: toml::Value =
        toml::from_str(&fs::read_to_string(repo().join("bundle.toml")).unwrap()).unwrap();
    for (section, title) in [("ollama", "Ollama"), ("codex", "Codex CLI")] {
        let version = bundle[section]["version"].as_str().unwrap();
        assert!(
            notices.contains(&format!("  {title} {version}\n")),
            "{NOTICES} has no section for {title} {version}: run scripts/notices.sh"
        );
    }
    assert!(
        notices.contains("Apache License"),
        "{NOTICES} lacks the Apache-2.0 text"
    );

    // Homebrew installs the LICENSE itself; the formula puts the rest of the archive
    // (the notices) in pkgshare, $(brew --prefix)/share/codex-oss/.
    let formula = fs::read_to_string(release.published.join(format!("{APP}.rb"))).unwrap();
    let docs = formula
        .lines()
        .find(|l| l.trim_start().starts_with("doc_files = "))
        .unwrap_or_else(|| panic!("no doc_files in the formula:\n{formula}"));
    assert!(!docs.contains("THIRD-PARTY"), "{docs}");
    assert!(
        formula.contains("pkgshare.install(*leftover_contents)"),
        "the formula no longer installs the archive's other files:\n{formula}"
    );
}

/// Cargo.lock changes without `scripts/notices.sh` fail here, without cargo-about: every
/// crate that a release target compiles into codex-oss is in the notices, and every crate
/// the notices name is still in Cargo.lock.
#[test]
fn notices_name_every_crate_compiled_into_codex_oss() {
    let notices = fs::read_to_string(repo().join(NOTICES)).unwrap();
    let listed = |name: &str, version: &str| {
        let entry = format!("\n  - {name} {version}");
        notices.contains(&format!("{entry} (")) || notices.contains(&format!("{entry}\n"))
    };
    let cargo = std::env::var_os("CARGO").map_or_else(|| need("cargo"), PathBuf::from);
    let mut tree = Command::new(cargo);
    tree.args(["tree", "--locked", "--offline", "--edges", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(repo());
    for target in OTHER_TARGETS.iter().chain([&HOST_TARGET]) {
        tree.args(["--target", target]);
    }
    let tree = stdout(&run(&mut tree));
    let mut missing = std::collections::BTreeSet::new();
    for line in tree.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        let version = version.trim_start_matches('v');
        if !listed(name, version) {
            missing.insert(format!("{name} {version}"));
        }
    }
    assert!(
        missing.is_empty(),
        "{NOTICES} lacks {missing:?}: run scripts/notices.sh"
    );

    let lock = fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    let rust_part = &notices[notices
        .find("PART 2.")
        .unwrap_or_else(|| panic!("{NOTICES} has no part 2"))..];
    let mut gone = std::collections::BTreeSet::new();
    for entry in rust_part.lines().filter_map(|l| l.strip_prefix("  - ")) {
        let mut words = entry.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        if !lock.contains(&format!("name = \"{name}\"\nversion = \"{version}\"\n")) {
            gone.insert(format!("{name} {version}"));
        }
    }
    assert!(
        gone.is_empty(),
        "{NOTICES} names crates no longer in Cargo.lock, {gone:?}: run scripts/notices.sh"
    );
}

#[test]
fn installers_name_every_archive_and_the_shell_installer_its_sha256() {
    let release = release();
    // The shell installer the release publishes (it also serves Git Bash on Windows)
    // checks whichever archive it picks against the sha256 its build reported.
    let sh = fs::read_to_string(release.published.join(format!("{APP}-installer.sh"))).unwrap();
    for (archive, hash) in &release.sha256 {
        let entry = format!("\"{archive}\")");
        let at = sh
            .find(&entry)
            .unwrap_or_else(|| panic!("installer.sh has no case for {archive}"));
        let case = &sh[at..at + sh[at..].find(";;").unwrap()];
        assert!(
            case.contains(&format!("_checksum_value=\"{hash}\"")),
            "installer.sh lacks the sha256 of {archive}:\n{case}"
        );
    }
    assert!(
        !sh.contains("universal"),
        "installer.sh offers the universal archive"
    );

    // The PowerShell installer downloads the Windows zip; cargo-dist 0.34's PowerShell
    // template verifies no checksum (only HTTPS from GitHub), so none is asserted.
    let ps1 = fs::read_to_string(release.published.join(format!("{APP}-installer.ps1"))).unwrap();
    let zip = archive_name("x86_64-pc-windows-msvc");
    assert!(
        ps1.contains(&format!("\"artifact_name\" = \"{zip}\"")),
        "installer.ps1 does not name {zip}"
    );
    assert!(
        ps1.contains(&format!("{RELEASE_URL}/v{VERSION}")),
        "installer.ps1 downloads elsewhere"
    );
    assert!(ps1.contains("CODEX_OSS_INSTALL_DIR"));
}

// ---------------------------------------------------------------- shell installer

/// Serves the files of `dir` over HTTP on a loopback port, each archive with one
/// byte flipped when `tamper` is set.
fn serve(dir: PathBuf, tamper: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = respond(stream, &dir, tamper);
        }
    });
    port
}

fn respond(mut stream: TcpStream, dir: &Path, tamper: bool) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let name = path.rsplit('/').next().unwrap_or_default();
    match fs::read(dir.join(name)) {
        Ok(mut body) if !name.is_empty() => {
            if tamper && name.ends_with(".tar.xz") {
                let middle = body.len() / 2;
                body[middle] ^= 0xff;
            }
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(&body)
        }
        _ => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}

/// Runs the published shell installer as a user would pipe it to sh, in a clean
/// environment with `home` as HOME and the loopback server as download URL.
fn run_installer(port: u16, home: &Path, vars: &[(&str, &str)]) -> Output {
    let installer = release().published.join(format!("{APP}-installer.sh"));
    Command::new(need("sh"))
        .arg(installer)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CODEX_OSS_DOWNLOAD_URL", format!("http://127.0.0.1:{port}"))
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

fn assert_version_runs(binary: &Path, home: &Path) {
    let out = run(Command::new(binary).arg("--version").env("HOME", home));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("{APP} {VERSION}")),
        "{} --version printed:\n{text}",
        binary.display()
    );
}

#[test]
fn shell_installer_installs_into_the_chosen_dir_and_the_launcher_runs() {
    need_downloader();
    let port = serve(release().published.clone(), false);
    let home = scratch("installer-home");
    let bin = home.path().join("tools/bin");
    let out = run_installer(
        port,
        home.path(),
        &[
            ("CODEX_OSS_INSTALL_DIR", bin.to_str().unwrap()),
            ("CODEX_OSS_NO_MODIFY_PATH", "1"),
        ],
    );
    let log = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "installer failed:\n{log}");
    assert!(
        log.contains(&format!("installing to {}", bin.display())),
        "{log}"
    );

    assert_version_runs(&bin.join(APP), home.path());
    // The receipt `codex-oss update` reads, naming where it installed.
    let receipt = home
        .path()
        .join(format!(".config/{APP}/{APP}-receipt.json"));
    let receipt: Value = serde_json::from_str(&fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(receipt["install_prefix"], json!(bin.to_str().unwrap()));
    assert_eq!(receipt["version"], json!(VERSION));
    // CODEX_OSS_NO_MODIFY_PATH=1: no shell start-up file touched.
    assert!(!home.path().join(".profile").exists());
}

#[test]
fn shell_installer_defaults_to_local_bin_and_puts_it_on_path() {
    need_downloader();
    let port = serve(release().published.clone(), false);
    let home = scratch("installer-default");
    let out = run_installer(port, home.path(), &[]);
    let log = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "installer failed:\n{log}");

    let installed = home.path().join(".local/bin").join(APP);
    assert_version_runs(&installed, home.path());
    // A new login shell finds it on PATH.
    let out = run(Command::new(need("sh"))
        .args(["-c", ". \"$HOME/.profile\"; command -v codex-oss"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path()));
    assert_eq!(stdout(&out).trim(), installed.to_str().unwrap());
}

#[test]
fn shell_installer_refuses_a_tampered_archive() {
    need_downloader();
    let port = serve(release().published.clone(), true);
    let home = scratch("installer-tampered");
    let bin = home.path().join("bin");
    let out = run_installer(
        port,
        home.path(),
        &[
            ("CODEX_OSS_INSTALL_DIR", bin.to_str().unwrap()),
            ("CODEX_OSS_NO_MODIFY_PATH", "1"),
        ],
    );
    let log = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        !out.status.success(),
        "installer accepted a tampered archive:\n{log}"
    );
    assert!(log.contains("checksum mismatch"), "{log}");
    assert!(!bin.join(APP).exists(), "a tampered launcher was installed");
}

// ---------------------------------------------------------------- Homebrew

#[test]
fn formula_parses_and_names_every_macos_and_linux_archive_with_its_sha256() {
    let release = release();
    let formula = release.published.join(format!("{APP}.rb"));
    let out = run(Command::new(need("ruby")).arg("-c").arg(&formula));
    assert!(stdout(&out).contains("Syntax OK"));

    let text = fs::read_to_string(&formula).unwrap();
    assert!(text.starts_with("class CodexOss < Formula"), "{text}");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for target in [
        "aarch64-apple-darwin",
        "x86_64-apple-darwin",
        "aarch64-unknown-linux-gnu",
        HOST_TARGET,
    ] {
        let archive = archive_name(target);
        let url = format!("url \"{RELEASE_URL}/v{VERSION}/{archive}\"");
        let at = lines
            .iter()
            .position(|l| *l == url)
            .unwrap_or_else(|| panic!("formula has no `{url}`:\n{text}"));
        assert_eq!(
            lines[at + 1],
            format!("sha256 \"{}\"", release.sha256[&archive]),
            "sha256 of {archive}"
        );
    }
    // Each Mac gets its own architecture's archive, not the universal one.
    assert!(!text.contains("universal"), "{text}");
    assert!(text.contains("if Hardware::CPU.arm?"));
    assert!(text.contains("bin.install \"codex-oss\""));
}

// ---------------------------------------------------------------- MSI

/// Facts about wix/main.wxs read by a real XML parser (Python's expat), as JSON.
fn wxs_facts() -> Value {
    let script = r#"
import json, sys, xml.etree.ElementTree as ET
W = "{http://schemas.microsoft.com/wix/2006/wi}"
root = ET.parse(sys.argv[1]).getroot()
parents = {child: parent for parent in root.iter() for child in parent}
def dirs(e):
    out = []
    while e in parents:
        e = parents[e]
        if e.tag == W + "Directory":
            out.insert(0, e.get("Id"))
    return out
files = [dict(f.attrib, dirs=dirs(f)) for f in root.iter(W + "File")]
envs = [dict(e.attrib, dirs=dirs(e), component=parents[e].get("Id")) for e in root.iter(W + "Environment")]
refs = [r.get("Id") for r in root.iter(W + "ComponentRef")]
print(json.dumps({"root": root.tag, "files": files, "environment": envs, "component_refs": refs}))
"#;
    let out = run(Command::new(need("python3"))
        .args(["-c", script])
        .arg(repo().join("wix/main.wxs")));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn main_wxs_is_well_formed_and_installs_the_binary_and_a_path_entry() {
    let facts = wxs_facts();
    assert_eq!(
        facts["root"],
        "{http://schemas.microsoft.com/wix/2006/wi}Wix"
    );
    let exe = facts["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["Name"] == "codex-oss.exe")
        .unwrap_or_else(|| panic!("no codex-oss.exe in main.wxs: {facts}"));
    assert_eq!(exe["Source"], "$(var.CargoTargetBinDir)\\codex-oss.exe");
    assert_eq!(
        exe["dirs"],
        json!([
            "TARGETDIR",
            "$(var.PlatformProgramFilesFolder)",
            "APPLICATIONFOLDER",
            "Bin"
        ])
    );
    let path = facts["environment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Name"] == "PATH")
        .unwrap_or_else(|| panic!("no PATH entry in main.wxs: {facts}"));
    // The folder holding codex-oss.exe goes at the end of the system PATH, and goes
    // away on uninstall.
    assert_eq!(path["Value"], "[Bin]");
    assert_eq!(path["Part"], "last");
    assert_eq!(path["System"], "yes");
    assert_eq!(path["Permanent"], "no");
    let refs = facts["component_refs"].as_array().unwrap();
    assert!(
        refs.contains(&path["component"]),
        "PATH component not in a feature"
    );
}

/// main.wxs, preprocessed for wixl 0.101 (Debian's), which lacks a few `WiX` features:
/// - `sys.BUILDARCH` is what cargo-wix passes as `-arch`: x64 for x86_64-pc-windows-msvc;
/// - `Source` paths use `/`: the Windows separator is a filename character here;
/// - `<Environment>` is taken out, and returned as the Environment table row `WiX`'s
///   binder makes of it (Name = action + uninstall + system + name, Value with `[~]`
///   on the kept side), added to the MSI with msibuild;
/// - the `<UI>` dialogs and the `SetProperty` of ARPINSTALLLOCATION (what the
///   installer window shows, and the folder Add/Remove Programs shows) are left out:
///   they do not change what is installed.
fn preprocess_wxs(dir: &Path) -> (PathBuf, String) {
    let script = r#"
import re, sys, xml.etree.ElementTree as ET
src, out = sys.argv[1], sys.argv[2]
text = open(src, encoding="windows-1252").read()
W = "{http://schemas.microsoft.com/wix/2006/wi}"
rows = []
root = ET.fromstring(text.encode("windows-1252"))
for comp in root.iter(W + "Component"):
    for e in comp.findall(W + "Environment"):
        a = e.attrib
        action = {"create": "+", "set": "=", "remove": "!"}[a.get("Action", "set")]
        uninstall = "" if a.get("Permanent") == "yes" else "-"
        system = "*" if a.get("System") == "yes" else ""
        sep = a.get("Separator", ";")
        value = {"last": "[~]" + sep + a["Value"], "first": a["Value"] + sep + "[~]"}.get(a.get("Part", "all"), a["Value"])
        rows.append("\t".join([a["Id"], action + uninstall + system + a["Name"], value, comp.get("Id")]))
text = text.replace("$(sys.BUILDARCH)", "x64")
text = re.sub(r"Source='([^']*)'", lambda m: "Source='" + m.group(1).replace("\\", "/") + "'", text)
text = re.sub(r"<Environment\b[^>]*/>", "", text, flags=re.S)
text = re.sub(r"<UI>.*?</UI>", "", text, flags=re.S)
text = re.sub(r"<SetProperty\b[^>]*/>", "", text, flags=re.S)
open(out, "w", encoding="windows-1252").write(text)
print("\n".join(rows))
"#;
    let wxs = dir.join("main.wxs");
    let out = run(Command::new(need("python3"))
        .args(["-c", script])
        .arg(repo().join("wix/main.wxs"))
        .arg(&wxs));
    (wxs, stdout(&out))
}

/// A table of the MSI as msiinfo exports it: rows of tab-separated columns, the three
/// header lines dropped.
fn msi_table(msi: &Path, table: &str) -> Vec<Vec<String>> {
    let out = run(Command::new(need("msiinfo"))
        .args(["export"])
        .arg(msi)
        .arg(table));
    stdout(&out)
        .lines()
        .skip(3)
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one MSI build, checked step by step: the steps read best in order"
)]
fn msi_built_from_main_wxs_puts_the_binary_under_program_files_and_sets_path() {
    let wixl = need("wixl");
    let msibuild = need("msibuild");
    let dir = scratch("msi");
    let (wxs, environment_rows) = preprocess_wxs(dir.path());
    let bin_dir = dir.path().join("bin");
    fs::create_dir_all(&bin_dir).unwrap();
    let exe = b"MZ stand-in codex-oss.exe";
    fs::write(bin_dir.join("codex-oss.exe"), exe).unwrap();
    // main.wxs names these relative to the package root (cargo-wix's bind path); wixl
    // looks them up from where it runs.
    for name in ["LICENSE", NOTICES] {
        fs::copy(repo().join(name), dir.path().join(name)).unwrap();
    }

    // The variables cargo-wix gives candle (cargo-dist builds the MSI through it).
    let msi = dir.path().join("codex-oss.msi");
    run(Command::new(wixl)
        .args(["-a", "x64"])
        .args(["-D", &format!("Version={VERSION}")])
        .args([
            "-D",
            "Platform=x64",
            "-D",
            "Profile=dist",
            "-D",
            "CargoProfile=dist",
        ])
        .args(["-D", "TargetTriple=x86_64-pc-windows-msvc"])
        // wixl takes no absolute Source paths: build from inside the scratch dir.
        .args(["-D", "CargoTargetBinDir=bin"])
        .arg("-o")
        .arg(&msi)
        .arg(&wxs)
        .current_dir(dir.path()));

    // What WiX's binder adds for <Environment>: the table and the two standard actions.
    let idt = dir.path().join("Environment.idt");
    fs::write(
        &idt,
        format!("Environment\tName\tValue\tComponent_\ns72\tl255\tL255\ts72\nEnvironment\tEnvironment\n{environment_rows}\n"),
    )
    .unwrap();
    run(Command::new(&msibuild).arg(&msi).arg("-i").arg(&idt));
    let sequence = dir.path().join("InstallExecuteSequence.idt");
    let mut rows = stdout(&run(Command::new(need("msiinfo"))
        .arg("export")
        .arg(&msi)
        .arg("InstallExecuteSequence")));
    rows.push_str("RemoveEnvironmentStrings\t\t3300\nWriteEnvironmentStrings\t\t5200\n");
    fs::write(&sequence, rows).unwrap();
    run(Command::new(&msibuild).arg(&msi).arg("-i").arg(&sequence));

    // The binary: in its component, in the bin folder of the app folder under the
    // 64-bit Program Files folder.
    let files = msi_table(&msi, "File");
    let file = files
        .iter()
        .find(|row| row[2] == "codex-oss.exe")
        .unwrap_or_else(|| panic!("no codex-oss.exe in the File table: {files:?}"));
    let components = msi_table(&msi, "Component");
    let component_dir = |id: &str| -> String {
        components
            .iter()
            .find(|row| row[0] == id)
            .unwrap_or_else(|| panic!("no component {id}: {components:?}"))[2]
            .clone()
    };
    let directories = msi_table(&msi, "Directory");
    let mut chain = vec![component_dir(&file[1])];
    while let Some(parent) = directories
        .iter()
        .find(|row| row[0] == *chain.last().unwrap())
        .map(|row| row[1].clone())
        .filter(|parent| !parent.is_empty())
    {
        chain.push(parent);
    }
    assert_eq!(
        chain,
        [
            "Bin",
            "APPLICATIONFOLDER",
            "ProgramFiles64Folder",
            "TARGETDIR"
        ]
    );
    let extracted = dir.path().join("extracted");
    let out = run(Command::new(need("msiextract"))
        .arg("-C")
        .arg(&extracted)
        .arg(&msi));
    let listing = stdout(&out);
    let mut listed: Vec<&str> = listing.lines().collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "PFiles/codex-oss/bin/LICENSE",
            "PFiles/codex-oss/bin/THIRD-PARTY-NOTICES.txt",
            "PFiles/codex-oss/bin/codex-oss.exe"
        ]
    );
    assert_eq!(
        fs::read(extracted.join("PFiles/codex-oss/bin/codex-oss.exe")).unwrap(),
        exe
    );
    // The licence and the notices go beside codex-oss.exe, with it (feature Binaries).
    for name in ["LICENSE", NOTICES] {
        assert!(
            fs::read(extracted.join("PFiles/codex-oss/bin").join(name)).unwrap()
                == fs::read(repo().join(name)).unwrap(),
            "{name} in the MSI differs from the repository's"
        );
    }

    // PATH: the system variable gets [Bin] (that same folder) appended on install and
    // loses it on uninstall, through a component of the Environment feature.
    let environment = msi_table(&msi, "Environment");
    assert_eq!(environment.len(), 1, "{environment:?}");
    let path = &environment[0];
    assert_eq!(path[1], "=-*PATH");
    assert_eq!(path[2], "[~];[Bin]");
    assert_eq!(component_dir(&path[3]), "Bin");
    let features = msi_table(&msi, "FeatureComponents");
    assert!(features.contains(&vec!["Environment".to_string(), path[3].clone()]));
    assert!(features.contains(&vec!["Binaries".to_string(), file[1].clone()]));
    for name in ["LICENSE", NOTICES] {
        let row = files
            .iter()
            .find(|row| row[2] == name || row[2].ends_with(&format!("|{name}")))
            .unwrap_or_else(|| panic!("no {name} in the File table: {files:?}"));
        assert_eq!(
            component_dir(&row[1]),
            "Bin",
            "{name} is not beside the exe"
        );
        assert!(features.contains(&vec!["Binaries".to_string(), row[1].clone()]));
    }
    let properties = msi_table(&msi, "Property");
    for (name, value) in [
        ("ProductName", "codex-oss"),
        ("ProductVersion", VERSION),
        ("UpgradeCode", "{7C9EA258-F945-4C5D-B4F1-1827862E581F}"),
        ("ALLUSERS", "1"),
    ] {
        assert!(
            properties
                .iter()
                .any(|row| row[0] == name && row[1] == value),
            "{name} is not {value}: {properties:?}"
        );
    }
}

#[test]
fn wix_guids_in_cargo_toml_match_main_wxs() {
    let cargo: toml::Value =
        toml::from_str(&fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let wix = &cargo["package"]["metadata"]["wix"];
    let wxs = fs::read_to_string(repo().join("wix/main.wxs")).unwrap();
    for key in ["upgrade-guid", "path-guid"] {
        let guid = wix[key].as_str().unwrap();
        assert!(
            wxs.contains(&format!("'{guid}'")),
            "{key} {guid} not in main.wxs"
        );
    }
}

// ---------------------------------------------------------------- workflows

#[test]
fn workflows_pass_action_validator() {
    let validator = action_validator();
    let workflows = repo().join(".github/workflows");
    let mut checked = 0;
    for entry in fs::read_dir(&workflows).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            run(Command::new(&validator).arg(&path));
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "only {checked} workflows in {}",
        workflows.display()
    );

    // The validator does reject a broken workflow.
    let dir = scratch("bad-workflow");
    let bad = dir.path().join("bad.yml");
    fs::write(
        &bad,
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-22.04\n    stepz: []\n",
    )
    .unwrap();
    let out = Command::new(&validator).arg(&bad).output().unwrap();
    assert!(!out.status.success(), "action-validator accepted {bad:?}");
}

#[test]
fn release_workflow_builds_payloads_and_publishes_the_universal_archive() {
    let release = fs::read_to_string(repo().join(".github/workflows/release.yml")).unwrap();
    // The disk-space step from .github/build-setup.yml runs before `dist build`.
    let setup = release
        .find("Free disk space for the payloads")
        .expect("build-setup step missing");
    assert!(
        setup
            < release
                .find("dist build ${{ needs.plan.outputs.tag-flag }} --print=linkage")
                .unwrap()
    );
    // The universal job runs after the per-target builds and gates the release.
    assert!(release.contains("uses: $/.github/workflows/build-universal.yml"));
    assert!(release.contains("needs.custom-build-universal.result == 'success'"));
    let universal =
        fs::read_to_string(repo().join(".github/workflows/build-universal.yml")).unwrap();
    assert!(universal.contains("bash scripts/build-universal.sh target/distrib"));
    // Uploaded as artifacts-*, the pattern the release job attaches to the release.
    assert!(universal.contains("name: artifacts-build-universal-apple-darwin"));
    assert!(release.contains("pattern: artifacts-*"));
}

#[test]
fn release_workflow_publishes_the_pinned_bubblewrap_source() {
    // bubblewrap (in Codex's Linux packages) is LGPL-2.0-or-later: its source goes with
    // every release, from a job that gates the release like the other custom jobs.
    let release = fs::read_to_string(repo().join(".github/workflows/release.yml")).unwrap();
    assert!(release.contains("uses: $/.github/workflows/bubblewrap-source.yml"));
    assert!(release.contains("needs.custom-bubblewrap-source.result == 'success'"));
    let host = &release[release.find("\n  host:\n").expect("no host job")..];
    let needs = &host[..host.find("    if:").unwrap()];
    assert!(needs.contains("- custom-bubblewrap-source"), "{needs}");

    let job = fs::read_to_string(repo().join(".github/workflows/bubblewrap-source.yml")).unwrap();
    assert!(job.contains("bash scripts/bubblewrap-source.sh target/bubblewrap-source"));
    // Uploaded as artifacts-*, the pattern the release job attaches to the release.
    assert!(job.contains("name: artifacts-bubblewrap-source"));
    assert!(release.contains("pattern: artifacts-*"));

    // The notices name the very archive, its pin and its hash.
    let pin: toml::Value = toml::from_str(
        &fs::read_to_string(repo().join("licenses/bubblewrap-source.toml")).unwrap(),
    )
    .unwrap();
    let url = pin["url"].as_str().unwrap();
    let archive = url.rsplit('/').next().unwrap();
    let notices = fs::read_to_string(repo().join(NOTICES)).unwrap();
    assert!(
        notices.contains(&format!("release asset\n     {archive} ")),
        "{NOTICES} does not say the release carries {archive}: run scripts/notices.sh"
    );
    assert!(notices.contains(pin["sha256"].as_str().unwrap()));
}

// ---------------------------------------------------------------- upstream pins

#[test]
fn upstream_workflow_bumps_weekly_tests_and_opens_a_pull_request_only_on_change() {
    // (tests `workflows_pass_action_validator` validates it with the others.)
    let workflow = fs::read_to_string(repo().join(".github/workflows/upstream.yml")).unwrap();
    let on = &workflow[workflow.find("\non:\n").expect("no triggers")..];
    let on = &on[..on.find("\npermissions:").unwrap()];
    assert!(
        on.contains("  schedule:\n    - cron: \"17 5 * * 1\""),
        "{on}"
    );
    assert!(on.contains("  workflow_dispatch:"), "{on}");
    // The bump runs the newest Ollama release through the script, which bumps both.
    assert!(workflow.contains("gh api repos/ollama/ollama/releases/latest --jq .tag_name"));
    assert!(workflow.contains("bash scripts/upstream-bump.sh \"$OLLAMA_VERSION\" target/upstream"));
    let script = fs::read_to_string(repo().join("scripts/upstream-bump.sh")).unwrap();
    for step in [
        "bash scripts/bump-codex.sh latest",
        "bash scripts/bump-ollama.sh \"$ollama\"",
        "bash scripts/notices.sh --check",
        "bash scripts/bubblewrap-source.sh",
        "bash .ci/run",
    ] {
        assert!(
            script.contains(step),
            "scripts/upstream-bump.sh lacks {step}"
        );
    }
    // A pull request only when the patch is not empty, from a job that runs no upstream
    // code, and the job that runs it holds no token that can write.
    let (bump, pr) = workflow.split_at(workflow.find("\n  pull-request:\n").unwrap());
    assert!(pr.contains("if: ${{ always() && needs.bump.outputs.changed == 'true' }}"));
    assert!(pr.contains("gh pr create"));
    assert!(!pr.contains("upstream-bump.sh") && !pr.contains(".ci/run"));
    assert!(bump.contains("if [ -s target/upstream/bump.patch ]; then changed=true"));
    assert!(workflow.contains("permissions:\n  contents: read\n"));
    assert!(!bump.contains("contents: write"));
}

// ---------------------------------------------------------------- in sync

#[test]
fn generated_files_are_in_sync_with_dist_config() {
    let dist = dist().unwrap_or_else(|e| panic!("{e}"));
    run(Command::new(&dist)
        .args(["generate", "--check"])
        .current_dir(repo()));

    let plan = run(Command::new(&dist)
        .args(["plan", "--output-format=json"])
        .current_dir(repo()));
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let artifacts = plan["artifacts"].as_object().unwrap();
    for target in OTHER_TARGETS.iter().chain([&HOST_TARGET]) {
        let archive = archive_name(target);
        assert!(artifacts.contains_key(&archive), "plan lacks {archive}");
    }
    for name in [
        "codex-oss-installer.sh",
        "codex-oss-installer.ps1",
        "codex-oss.rb",
        "codex-oss-x86_64-pc-windows-msvc.msi",
    ] {
        assert!(artifacts.contains_key(name), "plan lacks {name}");
    }
}

#[test]
fn dist_generate_check_fails_when_the_workflow_drifts() {
    let dist = dist().unwrap_or_else(|e| panic!("{e}"));
    let copy = scratch("drift");
    let root = copy.path();
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "dist-workspace.toml",
        "wix/main.wxs",
        ".github/build-setup.yml",
        ".github/workflows/release.yml",
        ".github/workflows/build-universal.yml",
        ".github/workflows/sign-release.yml",
        ".github/workflows/bubblewrap-source.yml",
    ] {
        fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
        fs::copy(repo().join(file), root.join(file)).unwrap();
    }
    fs::create_dir_all(root.join("src")).unwrap();
    fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    fs::write(root.join("build.rs"), "fn main() {}\n").unwrap();
    let check = |root: &Path| {
        Command::new(&dist)
            .args(["generate", "--check"])
            .current_dir(root)
            .env("CARGO_NET_OFFLINE", "true")
            .output()
            .unwrap()
    };
    let out = check(root);
    assert!(
        out.status.success(),
        "the untouched copy is out of sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let workflow = root.join(".github/workflows/release.yml");
    let edited = fs::read_to_string(&workflow)
        .unwrap()
        .replace("runs-on: \"ubuntu-22.04\"", "runs-on: \"ubuntu-24.04\"");
    fs::write(&workflow, edited).unwrap();
    let out = check(root);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "hand edit of release.yml not caught");
    assert!(stderr.contains("release.yml"), "{stderr}");
}

// ---------------------------------------------------------------- universal macOS

/// A stand-in for Apple's lipo: `-create -output OUT IN...` writes a "fat" file
/// holding its inputs in order; `FILE -verify_arch ARCH...` accepts such a file.
const FAKE_LIPO: &str = r#"#!/bin/sh
if [ "$1" = "-create" ] && [ "$2" = "-output" ]; then
  out="$3"; shift 3
  { echo "fat binary"; cat "$@"; } > "$out"
  exit 0
fi
if [ "$2" = "-verify_arch" ]; then
  [ "$(head -n1 "$1")" = "fat binary" ]
  exit $?
fi
echo "fake lipo: unexpected arguments: $*" >&2
exit 2
"#;

/// Two release-shaped macOS archives (as dist makes them) with their .sha256 files.
fn macos_archives(dist_dir: &Path) {
    for arch in ["aarch64", "x86_64"] {
        let name = format!("{APP}-{arch}-apple-darwin");
        let stage = dist_dir.join("stage").join(&name);
        fs::create_dir_all(&stage).unwrap();
        fs::write(stage.join(APP), format!("{arch} launcher\n")).unwrap();
        fs::write(stage.join("README.md"), "# codex-oss\n").unwrap();
        let archive = format!("{name}.tar.xz");
        run(Command::new(need("tar"))
            .arg("-C")
            .arg(dist_dir.join("stage"))
            .arg("-cJf")
            .arg(dist_dir.join(&archive))
            .arg(&name));
        let hash = sha256_file(&dist_dir.join(&archive));
        fs::write(
            dist_dir.join(format!("{archive}.sha256")),
            format!("{hash} *{archive}\n\n"),
        )
        .unwrap();
    }
    fs::remove_dir_all(dist_dir.join("stage")).unwrap();
}

fn build_universal(dist_dir: &Path, fake_bin: &Path) -> Output {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![fake_bin.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    Command::new(need("bash"))
        .arg(repo().join("scripts/build-universal.sh"))
        .arg(dist_dir)
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .output()
        .unwrap()
}

fn fake_lipo(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("fake-bin");
    fs::create_dir_all(&bin).unwrap();
    fs::write(bin.join("lipo"), FAKE_LIPO).unwrap();
    fs::set_permissions(bin.join("lipo"), fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn universal_archive_joins_both_macos_binaries_with_its_checksum() {
    let dir = scratch("universal");
    let dist_dir = dir.path().join("distrib");
    fs::create_dir_all(&dist_dir).unwrap();
    macos_archives(&dist_dir);
    let out = build_universal(&dist_dir, &fake_lipo(dir.path()));
    assert!(
        out.status.success(),
        "build-universal.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let archive = "codex-oss-universal-apple-darwin.tar.xz";
    let line = fs::read_to_string(dist_dir.join(format!("{archive}.sha256"))).unwrap();
    assert_eq!(
        line,
        format!("{} *{archive}\n", sha256_file(&dist_dir.join(archive)))
    );
    run(Command::new(need("sha256sum"))
        .args(["-c", &format!("{archive}.sha256")])
        .current_dir(&dist_dir));

    let unpacked = dir.path().join("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    run(Command::new(need("tar"))
        .arg("-C")
        .arg(&unpacked)
        .arg("-xJf")
        .arg(dist_dir.join(archive)));
    let top = unpacked.join("codex-oss-universal-apple-darwin");
    assert_eq!(
        fs::read_to_string(top.join(APP)).unwrap(),
        "fat binary\naarch64 launcher\nx86_64 launcher\n"
    );
    assert_eq!(
        fs::read_to_string(top.join("README.md")).unwrap(),
        "# codex-oss\n"
    );
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(top.join(APP)).unwrap().permissions()
        ) & 0o777,
        0o755
    );
}

#[test]
fn universal_archive_refuses_an_input_that_fails_its_checksum() {
    let dir = scratch("universal-bad");
    let dist_dir = dir.path().join("distrib");
    fs::create_dir_all(&dist_dir).unwrap();
    macos_archives(&dist_dir);
    let x86 = dist_dir.join("codex-oss-x86_64-apple-darwin.tar.xz");
    let mut bytes = fs::read(&x86).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&x86, bytes).unwrap();

    let out = build_universal(&dist_dir, &fake_lipo(dir.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("codex-oss-x86_64-apple-darwin.tar.xz does not match its .sha256"),
        "{stderr}"
    );
    assert!(!dist_dir
        .join("codex-oss-universal-apple-darwin.tar.xz")
        .exists());
}
