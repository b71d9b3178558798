//! What codex-oss takes from upstream, checked without GitHub: `scripts/bump-ollama.sh`
//! against a made-up release served on 127.0.0.1, the pin writing of
//! `scripts/bump-codex.sh`, the checks `scripts/notices.sh` makes on Codex's package, and
//! `scripts/bubblewrap-source.sh`, which gives every release bubblewrap's source.
//!
//! Each script runs on a scratch copy of the files it reads and writes (bundle.toml and
//! the scripts), so the repository is never touched.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::thread;

use sha2::{Digest, Sha256};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A web server on 127.0.0.1 serving `files` (URL path -> body) until the test ends;
/// anything else is a 404. Returns its base URL.
fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("listen on 127.0.0.1");
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let files = Arc::new(files);
    thread::spawn(move || {
        for request in server.incoming_requests() {
            let response = match files.get(request.url()) {
                Some(body) => tiny_http::Response::from_data(body.clone()),
                None => tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404),
            };
            let _ = request.respond(response);
        }
    });
    url
}

/// A scratch copy of the repository's `files` (relative paths).
fn scratch_repo(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("upstream")
        .tempdir()
        .unwrap();
    for file in files {
        let to = dir.path().join(file);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(repo().join(file), &to).unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    dir
}

fn bash(dir: &Path, script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("bash")
        .arg(dir.join(script))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The lines of `text` from `[section]` up to the next table outside it.
fn section<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text
        .find(&format!("\n[{name}]\n"))
        .unwrap_or_else(|| panic!("no [{name}]"))
        + 1;
    let rest = &text[start..];
    let end = rest
        .match_indices("\n[")
        .find(|(i, _)| !rest[i + 2..].starts_with(&format!("{name}.")))
        .map_or(rest.len(), |(i, _)| i + 1);
    &rest[..end]
}

// ---------------------------------------------------------------- bump-ollama

const OLLAMA_FILES: [&str; 4] = [
    "bundle.toml",
    "scripts/bump-ollama.sh",
    "scripts/lib/pinned.sh",
    "scripts/lib/write-ollama-pins.py",
];

/// The assets bundle.toml names today, each with a made-up hash, as Ollama's release
/// job writes sha256sum.txt (`find . -type f | xargs sha256sum`), plus an asset
/// codex-oss does not use.
fn made_up_sha256sum(assets: &[&str]) -> (String, HashMap<String, String>) {
    let mut text = String::new();
    let mut hashes = HashMap::new();
    for asset in assets.iter().chain(&["OllamaSetup.exe"]) {
        let hash = sha256_hex(format!("made-up {asset}").as_bytes());
        writeln!(text, "{hash}  ./{asset}").unwrap();
        hashes.insert(asset.to_string(), hash);
    }
    (text, hashes)
}

fn bundle_assets() -> Vec<(String, String)> {
    let bundle: toml::Value =
        toml::from_str(&fs::read_to_string(repo().join("bundle.toml")).unwrap()).unwrap();
    bundle["ollama"]["targets"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(target, pin)| (target.clone(), pin["asset"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn bump_ollama_pins_the_release_sha256sum_and_a_second_run_changes_nothing() {
    let assets = bundle_assets();
    let names: Vec<&str> = assets.iter().map(|(_, a)| a.as_str()).collect();
    let (sums, hashes) = made_up_sha256sum(&names);
    let url = serve(HashMap::from([(
        "/v0.99.1/sha256sum.txt".to_string(),
        sums.into_bytes(),
    )]));
    let dir = scratch_repo(&OLLAMA_FILES);
    let env = [
        ("BUMP_OLLAMA_BASE_URL", &*format!("{url}/v0.99.1/")),
        ("BUMP_SKIP_NOTICES", "1"),
    ];
    let before = fs::read_to_string(dir.path().join("bundle.toml")).unwrap();

    let out = bash(dir.path(), "scripts/bump-ollama.sh", &["0.99.1"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Ollama 0.32.15 -> 0.99.1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let after = fs::read_to_string(dir.path().join("bundle.toml")).unwrap();
    let bundle: toml::Value = toml::from_str(&after).unwrap();
    let ollama = &bundle["ollama"];
    assert_eq!(ollama["version"].as_str(), Some("0.99.1"));
    assert_eq!(
        ollama["base_url"].as_str(),
        Some("https://github.com/ollama/ollama/releases/download/v0.99.1/")
    );
    let targets = ollama["targets"].as_table().unwrap();
    assert_eq!(targets.len(), assets.len());
    for (target, asset) in &assets {
        assert_eq!(targets[target]["asset"].as_str(), Some(asset.as_str()));
        assert_eq!(
            targets[target]["sha256"].as_str(),
            Some(hashes[asset].as_str()),
            "{target}"
        );
    }
    // Outside [ollama], nothing moved.
    assert_eq!(
        after.replace(section(&after, "ollama"), ""),
        before.replace(section(&before, "ollama"), "")
    );

    let out = bash(dir.path(), "scripts/bump-ollama.sh", &["0.99.1"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(dir.path().join("bundle.toml")).unwrap(),
        after
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("bundle.toml unchanged"));
}

#[test]
fn bump_ollama_refuses_a_release_without_an_asset_and_changes_nothing() {
    let assets = bundle_assets();
    // The release renamed the Windows asset.
    let names: Vec<&str> = assets
        .iter()
        .map(|(_, a)| a.as_str())
        .filter(|a| !a.contains("windows"))
        .chain(["ollama-windows-amd64-v2.zip"])
        .collect();
    let (sums, _) = made_up_sha256sum(&names);
    let url = serve(HashMap::from([(
        "/sha256sum.txt".to_string(),
        sums.into_bytes(),
    )]));
    let dir = scratch_repo(&OLLAMA_FILES);
    let before = fs::read_to_string(dir.path().join("bundle.toml")).unwrap();
    let out = bash(
        dir.path(),
        "scripts/bump-ollama.sh",
        &["0.99.1"],
        &[("BUMP_OLLAMA_BASE_URL", &url), ("BUMP_SKIP_NOTICES", "1")],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "bump-ollama: Ollama 0.99.1's sha256sum.txt lists no ollama-windows-amd64.zip"
        ),
        "{err}"
    );
    assert!(err.contains("x86_64-pc-windows-msvc"), "{err}");
    assert_eq!(
        fs::read_to_string(dir.path().join("bundle.toml")).unwrap(),
        before
    );

    // A version with no release (404) says so in one line too.
    let out = bash(
        dir.path(),
        "scripts/bump-ollama.sh",
        &["0.99.2"],
        &[
            ("BUMP_OLLAMA_BASE_URL", &format!("{url}/nothing/")),
            ("BUMP_SKIP_NOTICES", "1"),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("could not read"), "{err}");
    assert!(err.contains("is 0.99.2 an Ollama release?"), "{err}");
}

// ---------------------------------------------------------------- bump-codex's pins

#[test]
fn codex_pin_writing_is_idempotent_and_touches_only_the_codex_section() {
    let dir = scratch_repo(&["bundle.toml", "scripts/lib/write-codex-pins.py"]);
    let bundle = dir.path().join("bundle.toml");
    let before = fs::read_to_string(&bundle).unwrap();
    let pins = [
        "x86_64-unknown-linux-gnu=linux-x64=sha512-bGludXgteDY0",
        "aarch64-unknown-linux-gnu=linux-arm64=sha512-bGludXgtYXJtNjQ=",
        "x86_64-apple-darwin=darwin-x64=sha512-ZGFyd2luLXg2NA==",
        "aarch64-apple-darwin=darwin-arm64=sha512-ZGFyd2luLWFybTY0",
        "x86_64-pc-windows-msvc=win32-x64=sha512-d2luMzIteDY0",
    ];
    let write = || {
        let out = Command::new("python3")
            .arg(dir.path().join("scripts/lib/write-codex-pins.py"))
            .arg(&bundle)
            .arg("0.999.0")
            .args(pins)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        fs::read_to_string(&bundle).unwrap()
    };
    let first = write();
    let second = write();
    assert_eq!(first, second, "a second run changed bundle.toml");

    let parsed: toml::Value = toml::from_str(&first).unwrap();
    let codex = &parsed["codex"];
    assert_eq!(codex["version"].as_str(), Some("0.999.0"));
    let linux = &codex["targets"]["x86_64-unknown-linux-gnu"];
    assert_eq!(
        linux["package"].as_str(),
        Some("@openai/codex@0.999.0-linux-x64")
    );
    assert_eq!(linux["asset"].as_str(), Some("codex-0.999.0-linux-x64.tgz"));
    assert_eq!(linux["integrity"].as_str(), Some("sha512-bGludXgteDY0"));
    let old: toml::Value = toml::from_str(&before).unwrap();
    assert_eq!(codex["min_ollama"], old["codex"]["min_ollama"]);
    // Everything outside [codex] is byte for byte what it was.
    assert_eq!(
        first.replace(section(&first, "codex"), ""),
        before.replace(section(&before, "codex"), "")
    );
    assert_eq!(parsed["ollama"], old["ollama"]);
}

// ---------------------------------------------------------------- notices

/// A stand-in for Codex's linux-x64 package at the pinned version: helpers that answer
/// `--version` as the real ones do, unless `rg_version` says otherwise.
fn fake_codex_package(dir: &Path, rg_first_line: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let codex_version = {
        let bundle: toml::Value =
            toml::from_str(&fs::read_to_string(repo().join("bundle.toml")).unwrap()).unwrap();
        bundle["codex"]["version"].as_str().unwrap().to_string()
    };
    let vendor = dir.join("vendor");
    let script = |path: &str, body: &str| {
        let file = vendor.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, format!("#!/bin/sh\n{body}")).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
    };
    script("bin/codex", "exit 0\n");
    script("bin/codex-code-mode-host", "exit 0\n");
    script(
        "codex-path/rg",
        &format!(
            "printf '%s\\n\\n%s\\n\\n%s\\n' '{rg_first_line}' 'features:+pcre2' \
             'PCRE2 10.45 is available (JIT is available)'\n"
        ),
    );
    script(
        "codex-resources/bwrap",
        "echo 'bubblewrap built for Codex'\n",
    );
    fs::create_dir_all(vendor.join("codex-resources/voice/bin")).unwrap();
    fs::write(
        vendor.join("codex-resources/voice/bin/codex-voice-host"),
        "",
    )
    .unwrap();
    fs::write(
        vendor.join("codex-package.json"),
        format!("{{\n  \"version\": \"{codex_version}\",\n  \"entrypoint\": \"bin/codex\"\n}}\n"),
    )
    .unwrap();
    vendor
}

fn notices_check(vendor: &Path) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/notices.sh"))
        .arg("--check")
        .env("CODEX_OSS_TEST_CODEX_VENDOR", vendor)
        // The helper checks come first: without cargo-about, a package that passes them
        // stops at cargo-about, one that fails them never gets there.
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

#[test]
fn notices_refuse_a_codex_package_whose_helpers_they_do_not_cover() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = fake_codex_package(dir.path(), "ripgrep 15.2.0 (rev e89fff89ac)");
    // As the package is, the helpers pass (and the script goes on to cargo-about).
    let out = notices_check(&vendor);
    let err = stderr(&out);
    assert!(!err.contains("package holds"), "{err}");
    assert!(!err.contains(" reports "), "{err}");

    // A helper that came back (zsh, gone since Codex 0.164.0).
    fs::create_dir_all(vendor.join("codex-resources/zsh/bin")).unwrap();
    fs::write(vendor.join("codex-resources/zsh/bin/zsh"), "").unwrap();
    let out = notices_check(&vendor);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("package holds codex-resources/zsh/bin/zsh, which the notices do not cover"),
        "{err}"
    );
    fs::remove_dir_all(vendor.join("codex-resources/zsh")).unwrap();

    // A helper at another version.
    let vendor = fake_codex_package(dir.path(), "ripgrep 15.3.0 (rev 0123456789)");
    let out = notices_check(&vendor);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("codex-path/rg reports 'ripgrep 15.3.0 (rev 0123456789)'"),
        "{err}"
    );
}

// ---------------------------------------------------------------- bubblewrap source

/// A made-up bubblewrap release archive holding `copying` as its COPYING.
fn made_up_bubblewrap_archive(dir: &Path, version: &str, copying: &[u8]) -> Vec<u8> {
    let top = format!("bubblewrap-{version}");
    fs::create_dir_all(dir.join(&top)).unwrap();
    fs::write(dir.join(&top).join("COPYING"), copying).unwrap();
    fs::write(
        dir.join(&top).join("bubblewrap.c"),
        "int main(void) { return 0; }\n",
    )
    .unwrap();
    let archive = dir.join(format!("{top}.tar.xz"));
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cJf")
        .arg(&archive)
        .arg(&top)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    fs::read(archive).unwrap()
}

struct SourceCase {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// A scratch repository whose bubblewrap pin names `archive` on a local server, with the
/// pinned SHA-256 `pinned_sha256`, beside an openai/codex whose vendored meson.build at
/// the pinned Codex's tag declares `vendored`.
fn source_case(archive: Vec<u8>, pinned_sha256: &str, vendored: &str) -> SourceCase {
    let dir = scratch_repo(&[
        "bundle.toml",
        "scripts/bubblewrap-source.sh",
        "scripts/lib/pinned.sh",
        "licenses/bubblewrap/COPYING",
    ]);
    let bundle: toml::Value =
        toml::from_str(&fs::read_to_string(repo().join("bundle.toml")).unwrap()).unwrap();
    let codex = bundle["codex"]["version"].as_str().unwrap();
    let meson = format!(
        "project(\n  'bubblewrap',\n  'c',\n  version : '{vendored}',\n  meson_version : '>=0.49.0',\n)\n"
    );
    let url = serve(HashMap::from([
        ("/containers/bubblewrap-0.11.2.tar.xz".to_string(), archive),
        (
            format!("/openai/codex/rust-v{codex}/codex-rs/vendor/bubblewrap/meson.build"),
            meson.into_bytes(),
        ),
    ]));
    let pin = dir.path().join("pin.toml");
    fs::write(
        &pin,
        format!(
            "version = \"0.11.2\"\nurl = \"{url}/containers/bubblewrap-0.11.2.tar.xz\"\nsha256 = \"{pinned_sha256}\"\n"
        ),
    )
    .unwrap();
    let env = vec![
        (
            "BUBBLEWRAP_SOURCE_PIN".to_string(),
            pin.display().to_string(),
        ),
        (
            "BUBBLEWRAP_CODEX_SOURCE_URL".to_string(),
            format!("{url}/openai/codex"),
        ),
    ];
    SourceCase { dir, env }
}

impl SourceCase {
    fn run(&self) -> Output {
        Command::new("bash")
            .arg(self.dir.path().join("scripts/bubblewrap-source.sh"))
            .arg(self.dir.path().join("out"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }
}

fn licence_copying() -> Vec<u8> {
    fs::read(repo().join("licenses/bubblewrap/COPYING")).unwrap()
}

#[test]
fn bubblewrap_source_is_the_pinned_archive_with_its_sha256() {
    let stage = tempfile::tempdir().unwrap();
    let archive = made_up_bubblewrap_archive(stage.path(), "0.11.2", &licence_copying());
    let hash = sha256_hex(&archive);
    let case = source_case(archive.clone(), &hash, "0.11.2");
    let out = case.run();
    assert!(out.status.success(), "{}", stderr(&out));
    let published = case.dir.path().join("out");
    assert_eq!(
        fs::read(published.join("bubblewrap-0.11.2.tar.xz")).unwrap(),
        archive
    );
    assert_eq!(
        fs::read_to_string(published.join("bubblewrap-0.11.2.tar.xz.sha256")).unwrap(),
        format!("{hash} *bubblewrap-0.11.2.tar.xz\n")
    );
    let checked = Command::new("sha256sum")
        .args(["-c", "bubblewrap-0.11.2.tar.xz.sha256"])
        .current_dir(&published)
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", stderr(&checked));
}

#[test]
fn bubblewrap_source_refuses_another_archive_another_licence_or_another_version() {
    let stage = tempfile::tempdir().unwrap();
    let archive = made_up_bubblewrap_archive(stage.path(), "0.11.2", &licence_copying());
    let hash = sha256_hex(&archive);
    let refused = |case: SourceCase, expected: &str| {
        let out = case.run();
        let err = stderr(&out);
        assert!(!out.status.success(), "accepted: {expected}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{err}");
        assert!(!case.dir.path().join("out").exists(), "published something");
    };

    // Not the pinned bytes.
    let wrong = sha256_hex(b"another archive");
    refused(
        source_case(archive.clone(), &wrong, "0.11.2"),
        &format!("has SHA-256 {hash}, "),
    );
    // The pinned bytes, but a COPYING other than the one the notices quote.
    let other = made_up_bubblewrap_archive(stage.path(), "0.11.2", b"another licence\n");
    let other_hash = sha256_hex(&other);
    refused(
        source_case(other, &other_hash, "0.11.2"),
        "differs from licenses/bubblewrap/COPYING",
    );
    // The pinned Codex vendors another bubblewrap.
    refused(
        source_case(archive, &hash, "0.11.3"),
        "vendors bubblewrap 0.11.3, ",
    );
}
