//! `codex-oss update` against a loopback server shaped like GitHub's releases API.
//!
//! The test makes two minisign key pairs (the `minisign` command, as the release workflow
//! uses it): "trusted", which the codex-oss under test trusts, and "other". The codex-oss
//! under test is a copy of the built one whose compiled-in public key (the repository's,
//! or `CODEX_OSS_UPDATE_PUBLIC_KEY`'s) is replaced, same length, by the trusted test key:
//! the key cannot be changed at run time, and a second build would cost minutes. Each
//! test puts that copy (a hard link) into a folder of its own, as an installer would.
//!
//! A "release" is what the release workflow publishes: the cargo-dist archive
//! `codex-oss-<target>.tar.xz` with its `.sha256`, and the `.minisig` files and
//! `codex-oss-manifest.json` that `scripts/sign-release.sh` (the workflow's signing step)
//! writes. The codex-oss inside the archive is a small script that answers `--version`
//! like codex-oss does, so that "update installs it and it runs" is seen directly.
//!
//! The server answers `/repos/codex-oss/codex-oss/releases/latest` and `/releases/tags/v*`,
//! sends asset content for `Accept: application/octet-stream` by a redirect to a second
//! port (as GitHub redirects to its download host), and can misbehave on request: a
//! truncated download, a 404, a 403 rate limit.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

const CURRENT: &str = env!("CARGO_PKG_VERSION");
const MISSING: &str = "run scripts/install-test-deps.sh";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The target the release archives are named after: this machine's.
fn target() -> &'static str {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        "x86_64-unknown-linux-gnu"
    } else if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
        "aarch64-unknown-linux-gnu"
    } else if cfg!(all(target_os = "macos", target_arch = "aarch64")) {
        "aarch64-apple-darwin"
    } else if cfg!(all(target_os = "macos", target_arch = "x86_64")) {
        "x86_64-apple-darwin"
    } else {
        panic!("tests/update.rs knows no release archive for this system")
    }
}

fn archive_name() -> String {
    format!("codex-oss-{}.tar.xz", target())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

fn need(tool: &str) {
    let found = Command::new(tool)
        .arg(if tool == "minisign" {
            "-v"
        } else {
            "--version"
        })
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(found, "`{tool}` not found: {MISSING}");
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---------------------------------------------------------------- keys and the binary

/// A minisign key pair made for the tests.
struct Key {
    secret: String,
    public: PathBuf,
    base64: String,
}

impl Key {
    fn generate(dir: &Path, name: &str) -> Key {
        let public = dir.join(format!("{name}.pub"));
        let secret = dir.join(format!("{name}.key"));
        run_ok(
            Command::new("minisign")
                .args(["-G", "-W", "-f", "-p"])
                .arg(&public)
                .arg("-s")
                .arg(&secret)
                .stdin(Stdio::null()),
        );
        Key {
            secret: fs::read_to_string(&secret).unwrap(),
            base64: key_line(&public),
            public,
        }
    }
}

/// The base64 line of a minisign public key file.
fn key_line(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .unwrap()
        .to_owned()
}

/// What every test shares: the key pairs and the codex-oss that trusts the first.
struct Shared {
    dir: PathBuf,
    trusted: Key,
    other: Key,
    binary: PathBuf,
    binary_sha256: String,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        need("minisign");
        need("tar");
        let dir = scratch_root();
        fs::create_dir_all(&dir).unwrap();
        let trusted = Key::generate(&dir, "trusted");
        let other = Key::generate(&dir, "other");

        // The key the binary was built with: what build.rs read.
        let built_with = match std::env::var_os("CODEX_OSS_UPDATE_PUBLIC_KEY") {
            Some(file) if !file.is_empty() => repo().join(file),
            _ => repo().join("keys/update.pub"),
        };
        let compiled = key_line(&built_with);
        let mut bytes = fs::read(env!("CARGO_BIN_EXE_codex-oss")).unwrap();
        let at = find_all(&bytes, compiled.as_bytes());
        assert_eq!(
            at.len(),
            1,
            "the key of {} should be in the binary once",
            built_with.display()
        );
        assert_eq!(compiled.len(), trusted.base64.len());
        bytes[at[0]..at[0] + compiled.len()].copy_from_slice(trusted.base64.as_bytes());
        let binary = dir.join("codex-oss");
        fs::write(&binary, &bytes).unwrap();
        make_executable(&binary);
        Shared {
            binary_sha256: sha256_hex(&bytes),
            dir,
            trusted,
            other,
            binary,
        }
    })
}

/// This run's folder for everything the tests write (about the size of the binary), in
/// cargo's temporary folder. Folders of earlier runs whose process is gone are removed; a
/// run going on beside this one keeps its own.
fn scratch_root() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for entry in fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("update-tests-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    tmp.join(format!("update-tests-{}", std::process::id()))
}

/// Every offset of `needle` in `haystack`.
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let first = needle[0];
    let mut found = Vec::new();
    let mut start = 0;
    while let Some(offset) = haystack[start..].iter().position(|&b| b == first) {
        let at = start + offset;
        if haystack[at..].starts_with(needle) {
            found.push(at);
        }
        start = at + 1;
    }
    found
}

fn make_executable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

// ---------------------------------------------------------------- releases

/// The codex-oss a release archive holds: answers `--version` as codex-oss does.
fn stand_in(version: &str) -> Vec<u8> {
    format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then\n  echo \"codex-oss {version}\"\n  echo \"ollama 0.33.0 (embedded)\"\n  echo \"codex 0.150.0 (embedded)\"\n  exit 0\nfi\necho \"codex-oss {version} ran: $*\"\n"
    )
    .into_bytes()
}

/// One published release: its tag and its files.
#[derive(Clone)]
struct Published {
    tag: String,
    files: BTreeMap<String, Vec<u8>>,
}

impl Published {
    /// A release of `version` as the workflow publishes it, signed with `key`.
    fn signed(version: &str, key: &Key) -> Published {
        let work = tempfile::tempdir_in(&shared().dir).unwrap();
        let stage = work.path().join("stage");
        let top = stage.join(format!("codex-oss-{}", target()));
        fs::create_dir_all(&top).unwrap();
        fs::write(top.join("codex-oss"), stand_in(version)).unwrap();
        make_executable(&top.join("codex-oss"));
        fs::write(top.join("README.md"), "codex-oss\n").unwrap();
        let dist = work.path().join("dist");
        fs::create_dir(&dist).unwrap();
        let archive = archive_name();
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&stage)
                .arg("-cJf")
                .arg(dist.join(&archive))
                .arg(format!("codex-oss-{}", target())),
        );
        let bytes = fs::read(dist.join(&archive)).unwrap();
        fs::write(
            dist.join(format!("{archive}.sha256")),
            format!("{} *{archive}\n", sha256_hex(&bytes)),
        )
        .unwrap();
        // What the release embeds, as the manifest says: not this build's versions.
        let bundle = work.path().join("bundle.toml");
        fs::write(
            &bundle,
            "[ollama]\nversion = \"0.33.0\"\n\n[codex]\nversion = \"0.150.0\"\n",
        )
        .unwrap();
        run_ok(
            Command::new("bash")
                .arg(repo().join("scripts/sign-release.sh"))
                .arg("--manifest")
                .arg("--bundle")
                .arg(&bundle)
                .arg(&dist)
                .arg(version)
                .env("MINISIGN_SECRET_KEY", &key.secret)
                .env_remove("MINISIGN_PASSWORD")
                .env("CODEX_OSS_UPDATE_PUBLIC_KEY", &key.public),
        );
        let files = fs::read_dir(&dist)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, fs::read(&path).unwrap())
            })
            .collect();
        Published {
            tag: format!("v{version}"),
            files,
        }
    }

    fn archive(&self) -> &[u8] {
        &self.files[&archive_name()]
    }

    fn set(&mut self, name: &str, bytes: Vec<u8>) {
        self.files.insert(name.to_owned(), bytes);
    }
}

fn signed(version: &str) -> Published {
    Published::signed(version, &shared().trusted)
}

// ---------------------------------------------------------------- the server

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// `releases/latest` answers GitHub's 403 rate-limit response.
    RateLimited,
    /// The archive's download stops halfway (its Content-Length promised all of it).
    TruncatedArchive,
}

#[derive(Debug, Clone)]
struct Logged {
    /// "api" or "cdn".
    on: &'static str,
    path: String,
    authorization: Option<String>,
}

struct State {
    releases: Vec<Published>,
    latest: Option<String>,
    fault: Fault,
    log: Vec<Logged>,
}

/// The loopback release server: the API on one port, downloads on another.
struct Server {
    api: u16,
    state: Arc<Mutex<State>>,
}

impl Server {
    /// Serves `releases`; the last one is GitHub's "latest".
    fn start(releases: Vec<Published>) -> Server {
        Server::with_fault(releases, Fault::None)
    }

    fn with_fault(releases: Vec<Published>, fault: Fault) -> Server {
        let latest = releases.last().map(|r| r.tag.clone());
        let state = Arc::new(Mutex::new(State {
            releases,
            latest,
            fault,
            log: Vec::new(),
        }));
        let api = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let ports = (
            api.local_addr().unwrap().port(),
            cdn.local_addr().unwrap().port(),
        );
        for (listener, on) in [(api, "api"), (cdn, "cdn")] {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || {
                        let _ = respond(stream, on, ports, &state);
                    });
                }
            });
        }
        Server {
            api: ports.0,
            state,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api)
    }

    fn set_latest(&self, tag: Option<&str>) {
        self.state.lock().unwrap().latest = tag.map(str::to_owned);
    }

    fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// True when the archive's content was asked for.
    fn archive_fetched(&self) -> bool {
        self.log()
            .iter()
            .any(|r| r.on == "cdn" && r.path.ends_with(&archive_name()))
    }
}

const REPO_PATH: &str = "/repos/codex-oss/codex-oss";

/// A request: its path and (lower-cased) headers.
struct Request {
    path: String,
    headers: BTreeMap<String, String>,
}

fn read_request(stream: &TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    Ok(Request { path, headers })
}

const NOT_FOUND: &str =
    r#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}"#;

fn respond(
    mut stream: TcpStream,
    on: &'static str,
    ports: (u16, u16),
    state: &Mutex<State>,
) -> std::io::Result<()> {
    let request = read_request(&stream)?;
    let mut state = state.lock().unwrap();
    state.log.push(Logged {
        on,
        path: request.path.clone(),
        authorization: request.headers.get("authorization").cloned(),
    });
    if on == "cdn" {
        serve_download(&mut stream, &request.path, &state)
    } else {
        serve_api(&mut stream, &request, ports, &state)
    }
}

/// `/download/<tag>/<name>`: a file's content.
fn serve_download(stream: &mut TcpStream, path: &str, state: &State) -> std::io::Result<()> {
    let mut parts = path.trim_start_matches("/download/").splitn(2, '/');
    let (tag, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(bytes) = state
        .releases
        .iter()
        .find(|r| r.tag == tag)
        .and_then(|r| r.files.get(name))
    else {
        return send(stream, "404 Not Found", &[], NOT_FOUND.as_bytes());
    };
    if state.fault == Fault::TruncatedArchive && name == archive_name() {
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        )?;
        stream.write_all(&bytes[..bytes.len() / 2])?;
        return stream.shutdown(std::net::Shutdown::Both);
    }
    send(stream, "200 OK", &[], bytes)
}

/// A release as GitHub's API describes it.
fn release_json(release: &Published, (api, cdn): (u16, u16)) -> String {
    let assets: Vec<serde_json::Value> = release
        .files
        .iter()
        .map(|(name, bytes)| {
            serde_json::json!({
                "name": name,
                "size": bytes.len(),
                "url": format!("http://127.0.0.1:{api}{REPO_PATH}/releases/assets/{}/{name}", release.tag),
                "browser_download_url": format!("http://127.0.0.1:{cdn}/download/{}/{name}", release.tag),
            })
        })
        .collect();
    serde_json::json!({
        "tag_name": release.tag,
        "name": release.tag,
        "created_at": "2026-01-01T00:00:00Z",
        "body": "",
        "html_url": format!("https://github.com/codex-oss/codex-oss/releases/tag/{}", release.tag),
        "assets": assets,
    })
    .to_string()
}

fn serve_api(
    stream: &mut TcpStream,
    request: &Request,
    ports: (u16, u16),
    state: &State,
) -> std::io::Result<()> {
    let path = request.path.as_str();
    let release = |tag: Option<&str>| {
        let found = state.releases.iter().find(|r| Some(r.tag.as_str()) == tag);
        found.map(|r| release_json(r, ports))
    };
    let answer = |stream: &mut TcpStream, json: Option<String>| match json {
        Some(body) => send(stream, "200 OK", &[], body.as_bytes()),
        None => send(stream, "404 Not Found", &[], NOT_FOUND.as_bytes()),
    };
    if path == format!("{REPO_PATH}/releases/latest") {
        if state.fault == Fault::RateLimited {
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 900;
            return send(
                stream,
                "403 Forbidden",
                &[
                    ("x-ratelimit-limit", "60"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset.to_string()),
                ],
                br#"{"message":"API rate limit exceeded for 127.0.0.1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}"#,
            );
        }
        return answer(stream, release(state.latest.as_deref()));
    }
    if let Some(tag) = path.strip_prefix(&format!("{REPO_PATH}/releases/tags/")) {
        return answer(stream, release(Some(tag)));
    }
    if let Some(rest) = path.strip_prefix(&format!("{REPO_PATH}/releases/assets/")) {
        // GitHub sends an asset's content only for this Accept header, from another host.
        if request.headers.get("accept").map(String::as_str) != Some("application/octet-stream") {
            return send(stream, "200 OK", &[], br#"{"note":"asset metadata"}"#);
        }
        let location = format!("http://127.0.0.1:{}/download/{rest}", ports.1);
        return send(stream, "302 Found", &[("location", &location)], b"");
    }
    send(stream, "404 Not Found", &[], NOT_FOUND.as_bytes())
}

fn send(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        use std::fmt::Write as _;
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

// ---------------------------------------------------------------- an installed copy

/// A folder with the test's codex-oss in `bin/`, as an installer leaves it, and the HOME
/// and temporary folder its commands run with.
struct Installed {
    dir: tempfile::TempDir,
    exe: PathBuf,
}

impl Installed {
    fn new() -> Installed {
        Installed::at("bin")
    }

    /// The copy at `relative` (a folder) inside the test's folder.
    fn at(relative: &str) -> Installed {
        let shared = shared();
        let dir = tempfile::tempdir_in(&shared.dir).unwrap();
        let bin = dir.path().join(relative);
        fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("codex-oss");
        if fs::hard_link(&shared.binary, &exe).is_err() {
            fs::copy(&shared.binary, &exe).unwrap();
        }
        fs::create_dir(dir.path().join("tmp")).unwrap();
        Installed { dir, exe }
    }

    fn bin(&self) -> &Path {
        self.exe.parent().unwrap()
    }

    fn command(&self, server: &Server) -> Command {
        let mut cmd = Command::new(&self.exe);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            let upper = key.to_ascii_uppercase();
            if upper.starts_with("CODEX_")
                || upper.starts_with("OLLAMA_")
                || upper.ends_with("_PROXY")
                || matches!(
                    upper.as_str(),
                    "GITHUB_TOKEN" | "GH_TOKEN" | "XDG_CONFIG_HOME"
                )
            {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", self.dir.path())
            .env("CODEX_OSS_HOME", self.dir.path().join(".codex-oss"))
            .env("TMPDIR", self.dir.path().join("tmp"))
            .env("CODEX_OSS_UPDATE_API_URL", server.url())
            .stdin(Stdio::null())
            .arg("update");
        cmd
    }

    fn update(&self, server: &Server, args: &[&str]) -> Output {
        self.command(server).args(args).output().unwrap()
    }

    /// The installed codex-oss is the one the test put there, byte for byte, alone in its
    /// folder, and the temporary folder holds nothing the update left.
    fn assert_untouched(&self) {
        let bytes = fs::read(&self.exe).unwrap();
        assert!(
            sha256_hex(&bytes) == shared().binary_sha256,
            "{} changed",
            self.exe.display()
        );
        self.assert_alone();
    }

    fn assert_alone(&self) {
        let names: Vec<String> = fs::read_dir(self.bin())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["codex-oss"], "left in {}", self.bin().display());
        let tmp: Vec<_> = fs::read_dir(self.dir.path().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(tmp.is_empty(), "left behind: {tmp:?}");
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The update failed with one error line containing `needle`, and changed nothing.
fn assert_refused(out: &Output, installed: &Installed, needle: &str) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "update succeeded:\n{}{err}",
        stdout(out)
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{err}");
    assert!(!err.contains("caused by"), "{err}");
    assert!(errors[0].contains(needle), "expected {needle:?} in:\n{err}");
    installed.assert_untouched();
    errors[0].to_owned()
}

// ---------------------------------------------------------------- installing

#[test]
fn update_installs_the_newest_release_and_it_runs() {
    let installed = Installed::new();
    // The receipt the shell installer wrote for this folder.
    let receipt = installed
        .dir
        .path()
        .join(".config/codex-oss/codex-oss-receipt.json");
    fs::create_dir_all(receipt.parent().unwrap()).unwrap();
    fs::write(
        &receipt,
        serde_json::json!({"install_prefix": installed.bin(), "version": CURRENT, "binaries": ["codex-oss"]})
            .to_string(),
    )
    .unwrap();
    let release = signed("0.2.0");
    let server = Server::start(vec![signed("0.1.5"), release]);

    let out = installed.update(&server, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "updated codex-oss {CURRENT} -> codex-oss 0.2.0 (Ollama 0.33.0, Codex 0.150.0) in {}",
            installed.exe.display()
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(fs::read(&installed.exe).unwrap(), stand_in("0.2.0"));
    installed.assert_alone();
    let version = run_ok(Command::new(&installed.exe).arg("--version"));
    assert!(
        stdout(&version).starts_with("codex-oss 0.2.0\n"),
        "{}",
        stdout(&version)
    );

    let receipt: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(receipt["version"], "0.2.0");
}

#[test]
fn update_version_installs_that_version() {
    let installed = Installed::new();
    let server = Server::start(vec![signed("0.2.0"), signed("0.3.0")]);
    let out = installed.update(&server, &["v0.2.0", "--yes"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(fs::read(&installed.exe).unwrap(), stand_in("0.2.0"));
    assert!(
        server
            .log()
            .iter()
            .any(|r| r.path == format!("{REPO_PATH}/releases/tags/v0.2.0")),
        "{:?}",
        server.log()
    );
}

#[test]
fn an_older_version_needs_allow_downgrade() {
    let installed = Installed::new();
    let server = Server::start(vec![signed("0.0.9")]);
    let out = installed.update(&server, &["0.0.9"]);
    let line = assert_refused(&out, &installed, "--allow-downgrade");
    assert!(
        line.contains(&format!(
            "codex-oss 0.0.9 is older than the installed {CURRENT}"
        )),
        "{line}"
    );
    assert!(
        server.log().is_empty(),
        "asked the server: {:?}",
        server.log()
    );

    let out = installed.update(&server, &["0.0.9", "--allow-downgrade"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(fs::read(&installed.exe).unwrap(), stand_in("0.0.9"));
}

#[test]
fn an_up_to_date_codex_oss_stays() {
    let installed = Installed::new();
    let server = Server::start(vec![signed(CURRENT)]);
    let out = installed.update(&server, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("is up to date"), "{}", stdout(&out));
    installed.assert_untouched();
    assert!(!server.archive_fetched());
}

// ---------------------------------------------------------------- --check

#[test]
fn check_reports_the_newer_release_and_what_each_embeds() {
    let installed = Installed::new();
    let server = Server::start(vec![signed("0.2.0")]);
    let out = installed.update(&server, &["--check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    // The fixture build embeds the stand-in Ollama (as 0.32.15) and the pinned Codex.
    assert!(
        text.contains(&format!("installed: codex-oss {CURRENT} (Ollama ")),
        "{text}"
    );
    let bundle: toml::Table = include_str!("../bundle.toml").parse().unwrap();
    let codex = bundle["codex"]["version"].as_str().unwrap();
    assert!(text.contains(&format!("Codex {codex})")), "{text}");
    assert!(
        text.contains("newest:    codex-oss 0.2.0 (Ollama 0.33.0, Codex 0.150.0)"),
        "{text}"
    );
    assert!(
        text.contains("codex-oss 0.2.0 is available: run `codex-oss update`"),
        "{text}"
    );
    assert!(!server.archive_fetched(), "--check downloaded the archive");
    installed.assert_untouched();
}

#[test]
fn check_exits_0_when_up_to_date_and_2_when_it_cannot_tell() {
    let installed = Installed::new();
    let server = Server::start(vec![signed(CURRENT)]);
    let out = installed.update(&server, &["--check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains(&format!("codex-oss {CURRENT} is up to date")));

    server.set_latest(None);
    let out = installed.update(&server, &["--check"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("answered 404"), "{}", stderr(&out));
}

#[test]
fn check_refuses_a_manifest_that_does_not_verify() {
    let installed = Installed::new();
    let mut release = signed("0.2.0");
    release.set(
        "codex-oss-manifest.json",
        br#"{"version":"0.2.0","ollama":"9.9.9","codex":"9.9.9"}"#.to_vec(),
    );
    let server = Server::start(vec![release]);
    let out = installed.update(&server, &["--check"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out)
            .contains("the signature of codex-oss-manifest.json (codex-oss 0.2.0) does not verify"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("9.9.9"));
}

// ---------------------------------------------------------------- what is refused

#[test]
fn a_wrong_checksum_is_refused() {
    let installed = Installed::new();
    let mut release = signed("0.2.0");
    let name = archive_name();
    release.set(
        &format!("{name}.sha256"),
        format!("{} *{name}\n", sha256_hex(b"something else")).into_bytes(),
    );
    let server = Server::start(vec![release]);
    let out = installed.update(&server, &[]);
    assert_refused(
        &out,
        &installed,
        &format!("{name} of codex-oss 0.2.0 does not match its published SHA-256"),
    );
}

/// An archive damaged on the way (its published checksum and signature as they were) is
/// refused by the download's own SHA-256 check, before its signature is looked at.
#[test]
fn a_damaged_archive_is_refused_by_the_download() {
    let installed = Installed::new();
    let mut release = signed("0.2.0");
    let name = archive_name();
    let mut damaged = release.archive().to_vec();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    release.set(&name, damaged.clone());
    let server = Server::start(vec![release]);
    let out = installed.update(&server, &[]);
    let line = assert_refused(
        &out,
        &installed,
        &format!("{name} of codex-oss 0.2.0 does not match its published SHA-256"),
    );
    assert!(
        line.contains(&format!("got {})", sha256_hex(&damaged))),
        "{line}"
    );
    assert!(server.archive_fetched());
}

#[test]
fn an_altered_archive_fails_its_signature() {
    let installed = Installed::new();
    let mut release = signed("0.2.0");
    let name = archive_name();
    // Another archive, with a matching checksum: only the signature can tell.
    let forged = signed("0.2.1").archive().to_vec();
    assert_ne!(forged, release.archive());
    release.set(
        &format!("{name}.sha256"),
        format!("{} *{name}\n", sha256_hex(&forged)).into_bytes(),
    );
    release.set(&name, forged);
    let server = Server::start(vec![release]);
    let out = installed.update(&server, &[]);
    assert_refused(
        &out,
        &installed,
        &format!("the signature of {name} (codex-oss 0.2.0) does not verify with the codex-oss release key"),
    );
}

#[test]
fn a_missing_signature_is_refused_before_the_download() {
    let installed = Installed::new();
    let mut release = signed("0.2.0");
    release.files.remove(&format!("{}.minisig", archive_name()));
    let server = Server::start(vec![release]);
    let out = installed.update(&server, &[]);
    assert_refused(
        &out,
        &installed,
        &format!(
            "codex-oss 0.2.0 publishes no signature {}.minisig",
            archive_name()
        ),
    );
    assert!(!server.archive_fetched());
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let installed = Installed::new();
    let release = Published::signed("0.2.0", &shared().other);
    let server = Server::start(vec![release]);
    let out = installed.update(&server, &[]);
    // The manifest is checked first, with the same key.
    assert_refused(
        &out,
        &installed,
        "codex-oss-manifest.json of codex-oss 0.2.0 is signed with another key",
    );

    // The archive too, when its manifest is in order.
    let mut release = Published::signed("0.2.0", &shared().other);
    let good = signed("0.2.0");
    for file in ["codex-oss-manifest.json", "codex-oss-manifest.json.minisig"] {
        release.set(file, good.files[file].clone());
    }
    let server = Server::start(vec![release]);
    let out = installed.update(&server, &[]);
    assert_refused(
        &out,
        &installed,
        &format!(
            "{} of codex-oss 0.2.0 is signed with another key",
            archive_name()
        ),
    );
}

#[test]
fn an_older_releases_archive_is_not_taken_for_the_newest() {
    let installed = Installed::new();
    let name = archive_name();
    let old = signed("0.0.9");
    let mut release = signed("0.2.0");
    for file in [
        name.clone(),
        format!("{name}.sha256"),
        format!("{name}.minisig"),
    ] {
        release.set(&file, old.files[&file].clone());
    }
    let server = Server::start(vec![release]);
    let out = installed.update(&server, &[]);
    assert_refused(
        &out,
        &installed,
        &format!("the signature of {name} was made for `codex-oss 0.0.9 {name}`, not for `codex-oss 0.2.0 {name}`"),
    );
}

#[test]
fn a_truncated_download_is_refused() {
    let installed = Installed::new();
    let server = Server::with_fault(vec![signed("0.2.0")], Fault::TruncatedArchive);
    let out = installed.update(&server, &[]);
    assert_refused(&out, &installed, &archive_name());
    assert!(server.archive_fetched());
}

#[test]
fn a_404_says_what_is_missing() {
    let installed = Installed::new();
    let server = Server::start(vec![signed("0.2.0")]);
    server.set_latest(None);
    let out = installed.update(&server, &[]);
    assert_refused(
        &out,
        &installed,
        "answered 404: codex-oss/codex-oss has no published release there",
    );

    let out = installed.update(&server, &["9.9.9"]);
    assert_refused(&out, &installed, "there is no codex-oss 9.9.9");
}

#[test]
fn a_rate_limit_says_so_and_how_to_pass_a_token() {
    let installed = Installed::new();
    let server = Server::with_fault(vec![signed("0.2.0")], Fault::RateLimited);
    let out = installed.update(&server, &[]);
    let line = assert_refused(&out, &installed, "rate limit");
    assert!(line.contains("GITHUB_TOKEN"), "{line}");
    assert!(line.contains("resets in about"), "{line}");
}

#[test]
fn the_token_goes_to_the_api_server_only() {
    // CODEX_OSS_GITHUB_TOKEN, if set, wins over GITHUB_TOKEN.
    for (env, sent) in [
        (vec![("GITHUB_TOKEN", "gh-token")], "token gh-token"),
        (
            vec![
                ("GITHUB_TOKEN", "gh-token"),
                ("CODEX_OSS_GITHUB_TOKEN", "own-token"),
            ],
            "token own-token",
        ),
    ] {
        let installed = Installed::new();
        let server = Server::start(vec![signed("0.2.0")]);
        let out = installed.command(&server).envs(env).output().unwrap();
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let log = server.log();
        assert!(log.iter().any(|r| r.on == "cdn"), "{log:?}");
        for request in &log {
            match request.on {
                "api" => assert_eq!(request.authorization.as_deref(), Some(sent), "{request:?}"),
                _ => assert_eq!(request.authorization, None, "{request:?}"),
            }
        }
    }
}

#[test]
fn a_read_only_install_folder_is_refused() {
    let installed = Installed::new();
    let server = Server::start(vec![signed("0.2.0")]);
    set_mode(installed.bin(), 0o555);
    let mut cmd = installed.command(&server);
    if is_root() {
        // root writes anywhere: run as nobody, who may read and run the test's files.
        set_mode(installed.dir.path(), 0o755);
        set_mode(&installed.dir.path().join("tmp"), 0o777);
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
        let envs: Vec<_> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
            .collect();
        cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        for (key, value) in envs {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
    }
    let out = cmd.output().unwrap();
    set_mode(installed.bin(), 0o755);
    let line = assert_refused(&out, &installed, "you cannot write to its folder");
    assert!(line.contains("nothing was changed"), "{line}");
    assert!(
        server.log().is_empty(),
        "asked the server: {:?}",
        server.log()
    );
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn is_root() -> bool {
    run_ok(Command::new("id").arg("-u"))
        .stdout
        .starts_with(b"0\n")
}

#[test]
fn a_homebrew_install_is_left_to_brew() {
    let installed = Installed::at("Cellar/codex-oss/0.1.0/bin");
    let server = Server::start(vec![signed("0.2.0")]);
    let out = installed.update(&server, &["--yes"]);
    assert_refused(&out, &installed, "installed with Homebrew");
    assert!(stderr(&out).contains("run `brew upgrade codex-oss`"));
    assert!(server.log().is_empty());

    // --check still reports, with the command that updates it.
    let out = installed.update(&server, &["--check"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("codex-oss 0.2.0 is available: run `brew upgrade codex-oss`"),
        "{}",
        stdout(&out)
    );
}

// ---------------------------------------------------------------- asking first

/// `update` in a terminal (script(1) gives it one) asks; "n" changes nothing.
#[test]
fn update_in_a_terminal_asks_first() {
    need("script");
    let installed = Installed::new();
    let server = Server::start(vec![signed("0.2.0")]);
    let line = format!("{} update", installed.exe.display());
    let run = |answer: &str| {
        let mut cmd = installed.command(&server);
        let envs: Vec<_> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
            .collect();
        cmd = Command::new("script");
        cmd.args(["-q", "-e", "-c", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let answer = answer.to_owned();
        // Answer once the question is there (script passes input straight through).
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buffer = [0u8; 4096];
            let mut answered = false;
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buffer[..n]);
                if !answered && String::from_utf8_lossy(&seen).contains("[Y/n]") {
                    let _ = stdin.write_all(answer.as_bytes());
                    let _ = stdin.flush();
                    answered = true;
                }
            }
            String::from_utf8_lossy(&seen).into_owned()
        });
        let status = child.wait().unwrap();
        (status, reader.join().unwrap())
    };

    let (status, screen) = run("n\r");
    assert!(status.success(), "{screen}");
    assert!(
        screen.contains(&format!("replace codex-oss {CURRENT}")),
        "{screen}"
    );
    assert!(
        screen.contains("with codex-oss 0.2.0 (Ollama 0.33.0, Codex 0.150.0)? [Y/n]"),
        "{screen}"
    );
    assert!(screen.contains("nothing was changed"), "{screen}");
    installed.assert_untouched();
    assert!(!server.archive_fetched());

    let (status, screen) = run("y\r");
    assert!(status.success(), "{screen}");
    assert!(screen.contains("updated codex-oss"), "{screen}");
    assert_eq!(fs::read(&installed.exe).unwrap(), stand_in("0.2.0"));
}
