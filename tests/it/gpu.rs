//! GPU acceleration without a GPU: an NVIDIA GPU is made up (`CODEX_OSS_GPU=cuda`, or a
//! fake `nvidia-smi` on PATH), the release archive the CUDA libraries come from is the
//! very file the test build embedded Ollama from (`CODEX_OSS_OLLAMA_ARCHIVE`: the stand-in's,
//! with `lib/ollama/cuda_v12/` and `cuda_v13/`), served from 127.0.0.1 through
//! `CODEX_OSS_PAYLOAD_MIRROR`, and the stand-in Ollama logs `inference compute` with CUDA
//! when it finds `cuda_v13/` beside it, as real Ollama does.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{
    assert_no_processes_within, assert_user_sees, exec_with, fs_read, redactions, run, script,
    Finished, Running, Scratch, GONE, STEP,
};

// ------------------------------------------------------------ a loopback mirror

/// One request the mirror answered: the file asked for, the first byte asked for
/// (`Range: bytes=N-`), the status, and the bytes of the file sent.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    path: String,
    from: Option<u64>,
    status: u16,
    sent: usize,
}

/// What the mirror serves: one file, its `ETag`, and how it misbehaves.
struct Served {
    body: Vec<u8>,
    etag: String,
    /// The first whole-file answer stops after this many bytes.
    cut: Option<usize>,
    /// Answers every range with a 206 from the first byte (another offset).
    misplaces_ranges: bool,
}

/// A release mirror on 127.0.0.1 serving one file, with HTTP Range requests, an `ETag`
/// and `If-Range`.
struct Mirror {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    served: Arc<Mutex<Served>>,
    stop: Arc<AtomicBool>,
}

impl Mirror {
    /// Serves `body` as `/<name>`; the first whole-file answer stops after `cut` bytes
    /// (the connection drops mid-download) when given.
    fn start(name: &str, body: Vec<u8>, cut: Option<usize>) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(Mutex::new(Served {
            body,
            etag: "\"first\"".to_owned(),
            cut,
            misplaces_ranges: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, served2, stop2, path) = (
            seen.clone(),
            served.clone(),
            stop.clone(),
            format!("/{name}"),
        );
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        if let Some(s) = answer(stream, &path, &mut served2.lock().unwrap()) {
                            seen2.lock().unwrap().push(s);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Mirror {
            port,
            seen,
            served,
            stop,
        }
    }

    /// The base URL, for `CODEX_OSS_PAYLOAD_MIRROR`.
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Serves another file (a new `ETag`) from now on.
    fn replace(&self, body: Vec<u8>) {
        let mut served = self.served.lock().unwrap();
        served.body = body;
        "\"second\"".clone_into(&mut served.etag);
    }

    fn misplace_ranges(&self) {
        self.served.lock().unwrap().misplaces_ranges = true;
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(mut stream: TcpStream, path: &str, served: &mut Served) -> Option<Seen> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let asked = request_line.split_whitespace().nth(1)?.to_owned();
    let mut from = None;
    let mut if_range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(range) = lower.strip_prefix("range: bytes=") {
            from = range.trim().trim_end_matches('-').parse::<u64>().ok();
        }
        if lower.starts_with("if-range:") {
            if_range = Some(line["if-range:".len()..].trim().to_owned());
        }
    }
    let seen = |status, sent| Seen {
        path: asked.clone(),
        from,
        status,
        sent,
    };
    if asked != path {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return Some(seen(404, 0));
    }
    let body = &served.body;
    let etag = &served.etag;
    // RFC 9110 If-Range: a validator of another version gets the whole file.
    let ranged = from.filter(|_| if_range.as_ref().is_none_or(|v| v == etag));
    if ranged.is_some_and(|f| f as usize >= body.len()) {
        let head = format!(
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        return Some(seen(416, 0));
    }
    let start = match ranged {
        Some(_) if served.misplaces_ranges => 0,
        Some(f) => f as usize,
        None => 0,
    };
    let (status, head) = match ranged {
        Some(_) => (
            206,
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
                body.len() - start,
                body.len() - 1,
                body.len()
            ),
        ),
        None => (
            200,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
                body.len()
            ),
        ),
    };
    stream.write_all(head.as_bytes()).ok()?;
    let end = match (ranged, served.cut.take()) {
        (None, Some(cut)) => cut,
        (_, kept) => {
            served.cut = kept;
            body.len()
        }
    };
    stream.write_all(&body[start..end]).ok()?;
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Some(seen(status, end - start))
}

// ------------------------------------------------------------ helpers

/// The release-shaped archive the test build embedded Ollama from: the source of the
/// CUDA libraries.
fn archive() -> (String, Vec<u8>) {
    let path = PathBuf::from(
        std::env::var_os("CODEX_OSS_OLLAMA_ARCHIVE")
            .expect("CODEX_OSS_OLLAMA_ARCHIVE: run the tests through scripts/test.sh"),
    );
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    (name, std::fs::read(&path).unwrap())
}

fn mirror() -> Mirror {
    let (name, body) = archive();
    Mirror::start(&name, body, None)
}

/// `codex-oss exec` with a Codex that exits at once, the GPU `mode`, and `mirror`.
fn exec(scratch: &Scratch, mode: &str, mirror: &str) -> Command {
    let codex = script(scratch, "codex-exits", "exit 0\n");
    let mut cmd = exec_with(scratch, &codex);
    cmd.env("CODEX_OSS_GPU", mode)
        .env("CODEX_OSS_PAYLOAD_MIRROR", mirror);
    cmd
}

/// Runs `cmd`, which must succeed, and waits until its Ollama is gone.
fn run_ok(scratch: &Scratch, cmd: Command) -> Finished {
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    assert_no_processes_within(scratch.home(), GONE);
    out
}

fn lib(scratch: &Scratch) -> PathBuf {
    scratch.unpacked("ollama").join("lib/ollama")
}

fn cuda_folders(scratch: &Scratch) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(lib(scratch))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cuda_"))
        .collect();
    found.sort();
    found
}

/// The `inference compute` line of the newest Ollama log.
fn compute_line(scratch: &Scratch) -> String {
    let logs = scratch.oss_home().join("logs");
    let newest = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).unwrap())
        .expect("an Ollama log");
    fs_read(&newest)
        .lines()
        .find(|l| l.contains(r#"msg="inference compute""#))
        .unwrap_or_else(|| panic!("no inference compute line in {}", newest.display()))
        .to_owned()
}

fn on_cuda(scratch: &Scratch) -> bool {
    compute_line(scratch).contains(" library=CUDA ")
}

fn doctor(scratch: &Scratch, args: &[&str]) -> Finished {
    let mut cmd = scratch.codex_oss();
    cmd.arg("doctor").args(args);
    run(cmd)
}

fn gpu(scratch: &Scratch, what: &str, mirror: &str) -> Finished {
    let mut cmd = scratch.codex_oss();
    cmd.args(["gpu", what])
        .env("CODEX_OSS_PAYLOAD_MIRROR", mirror);
    run(cmd)
}

/// The lines of `text` that start with `codex-oss: warning:`.
fn warnings(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("codex-oss: warning:"))
        .collect()
}

/// The GPU lines a user reads: the model pull's lines left out, and the download's
/// progress (where it falls depends on how the bytes arrive) to its first and last.
fn gpu_lines(text: &str) -> String {
    let pull = |l: &&str| {
        l.contains("pull") || l.contains("sha256 digest") || l.contains("writing manifest")
    };
    let progress = |l: &&str| l.starts_with("codex-oss: fetching ") && l.contains("% of ");
    let ends = |l: &&str| l.contains(": 0% of ") || l.contains(": 100% of ");
    let steps: Vec<&str> = text.lines().filter(progress).collect();
    assert!(
        steps.first().is_some_and(|l| l.contains(": 0% of "))
            && steps.last().is_some_and(|l| l.contains(": 100% of ")),
        "progress from 0% to 100%:\n{text}"
    );
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !pull(l) && (!progress(l) || ends(l)))
        .collect();
    lines.push("");
    lines.join("\n")
}

/// Snapshot settings: the archive's name and size change with the stand-in.
fn gpu_redactions(scratch: &Scratch) -> insta::Settings {
    let mut settings = redactions(scratch);
    settings.add_filter(
        r"stand-in-ollama-linux-amd64-[0-9a-f]{12}\.tar\.zst",
        "[ARCHIVE]",
    );
    settings.add_filter(r"\b\d+\.\d (kB|MB)\b", "[SIZE]");
    settings.add_filter(r"\b[0-9a-f]{64}\b", "[SHA256]");
    settings
}

// ------------------------------------------------------------ tests

#[test]
fn a_first_run_fetches_checks_and_installs_the_cuda_libraries_and_the_next_fetches_nothing() {
    let scratch = Scratch::new();
    let mirror = mirror();
    let first = run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert_eq!(
        warnings(&first.stderr),
        Vec::<&str>::new(),
        "{}",
        first.text()
    );
    gpu_redactions(&scratch).bind(|| {
        insta::assert_snapshot!("a_first_run_with_an_nvidia_gpu", gpu_lines(&first.stderr));
    });
    assert_eq!(cuda_folders(&scratch), ["cuda_v12", "cuda_v13"]);
    let lib = lib(&scratch);
    assert!(lib.join("cuda_v13/libggml-cuda.so").is_file());
    assert_eq!(
        std::fs::read_link(lib.join("cuda_v13/libcudart.so.13")).unwrap(),
        Path::new("libcudart.so.13.0.96")
    );
    assert!(
        lib.join("libggml-base.so.0.0.0").is_file(),
        "the CPU libraries stay"
    );
    assert!(!scratch.unpacked("ollama").join("bin/ollama.part").exists());
    // Only the CUDA folders: nothing else of the archive.
    assert!(!lib.join("llama-server.part").exists());
    let seen = mirror.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].from, None);
    assert!(on_cuda(&scratch), "{}", compute_line(&scratch));
    assert!(
        compute_line(&scratch)
            .contains(r#"description="NVIDIA GeForce RTX 4090" libdirs=ollama,cuda_v13"#),
        "{}",
        compute_line(&scratch)
    );
    // The download is gone once unpacked.
    let partials: Vec<_> = std::fs::read_dir(scratch.oss_home().join("gpu"))
        .unwrap()
        .flatten()
        .collect();
    assert!(partials.is_empty(), "{partials:?}");

    let report = doctor(&scratch, &[]);
    assert!(report.status.success(), "{}", report.text());
    assert!(
        report
            .line("compute: ")
            .starts_with("compute: CUDA on NVIDIA GeForce RTX 4090 (24.0 GiB, cuda_v13)"),
        "{}",
        report.text()
    );
    assert!(
        report
            .line("gpu libraries: ")
            .starts_with("gpu libraries: CUDA (cuda_v12, cuda_v13: "),
        "{}",
        report.text()
    );

    let second = run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert!(!second.stderr.contains("CUDA"), "{}", second.text());
    assert_eq!(mirror.seen().len(), 1, "the second run fetched again");
    assert!(on_cuda(&scratch), "{}", compute_line(&scratch));
}

#[test]
fn an_nvidia_gpu_found_by_nvidia_smi_gets_its_libraries_and_none_never_fetches_nor_uses_them() {
    let scratch = Scratch::new();
    let mirror = mirror();
    let bin = scratch.home().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::rename(
        script(
            &scratch,
            "nvidia-smi",
            "echo 'NVIDIA GeForce RTX 4090, 560.35.03, 24564 MiB'\n",
        ),
        bin.join("nvidia-smi"),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    let mut none = exec(&scratch, "none", &mirror.url());
    none.env("PATH", &path);
    let out = run_ok(&scratch, none);
    assert!(!out.stderr.contains("CUDA"), "{}", out.text());
    assert_eq!(mirror.seen(), Vec::new(), "CODEX_OSS_GPU=none fetched");
    assert!(cuda_folders(&scratch).is_empty());
    assert!(!on_cuda(&scratch));

    let mut auto = exec(&scratch, "auto", &mirror.url());
    auto.env("PATH", &path);
    let out = run_ok(&scratch, auto);
    assert!(
        out.stderr.contains(
            "codex-oss: NVIDIA GeForce RTX 4090 (driver 560.35.03, 24564 MiB) found: fetching Ollama's CUDA libraries so the model runs on the GPU, not the CPU ("
        ),
        "{}",
        out.text()
    );
    assert_eq!(mirror.seen().len(), 1);
    assert!(on_cuda(&scratch), "{}", compute_line(&scratch));

    let report = doctor(&scratch, &[]);
    let mut cmd = scratch.codex_oss();
    cmd.args(["gpu", "status"]).env("PATH", &path);
    let status = run(cmd);
    assert!(status.status.success(), "{}", status.text());
    assert_eq!(
        status.line("gpu: "),
        "gpu: NVIDIA GeForce RTX 4090 (driver 560.35.03, 24564 MiB) (found by nvidia-smi)"
    );
    assert_eq!(status.line("compute: "), report.line("compute: "));

    // With the libraries in place, `none` still keeps the model off the GPU.
    let mut none = exec(&scratch, "none", &mirror.url());
    none.env("PATH", &path);
    let out = run_ok(&scratch, none);
    assert_eq!(warnings(&out.stderr), Vec::<&str>::new(), "{}", out.text());
    assert!(!on_cuda(&scratch), "{}", compute_line(&scratch));
    assert_eq!(mirror.seen().len(), 1, "CODEX_OSS_GPU=none fetched");
}

#[test]
fn a_tampered_archive_installs_nothing_and_the_run_goes_on_on_the_cpu() {
    let scratch = Scratch::new();
    let (name, mut body) = archive();
    let middle = body.len() / 2;
    body[middle] ^= 0xff;
    let mirror = Mirror::start(&name, body, None);
    let out = run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    let warned = warnings(&out.stderr);
    assert_eq!(warned.len(), 1, "{}", out.text());
    gpu_redactions(&scratch).bind(|| {
        insta::assert_snapshot!("a_tampered_archive", warned[0]);
    });
    assert!(cuda_folders(&scratch).is_empty());
    assert!(!on_cuda(&scratch), "{}", compute_line(&scratch));
    let left: Vec<_> = std::fs::read_dir(scratch.oss_home().join("gpu"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "rejected-download")
        .collect();
    assert!(
        left.is_empty(),
        "a download that does not check out is kept: {left:?}"
    );

    // The mirror would send the same 1.4 GB again: runs wait for `gpu install`, and say so.
    let again = run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert_eq!(mirror.seen().len(), 1, "the next run downloaded it again");
    assert!(
        again.stderr.contains("codex-oss: the last download of the CUDA libraries was not the archive this codex-oss was built with: the model runs on the CPU until `codex-oss gpu install` fetches them again"),
        "{}",
        again.text()
    );
    assert!(doctor(&scratch, &[])
        .line("gpu libraries: ")
        .contains("until `codex-oss gpu install`"));
    mirror.replace(archive().1);
    let installed = gpu(&scratch, "install", &mirror.url());
    assert!(installed.status.success(), "{}", installed.text());
    run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert!(on_cuda(&scratch), "{}", compute_line(&scratch));
}

/// The partial download of the archive, as codex-oss names it.
fn partial_path(scratch: &Scratch) -> PathBuf {
    use sha2::{Digest, Sha256};
    let (name, body) = archive();
    let sha = hex::encode(Sha256::digest(&body));
    scratch
        .oss_home()
        .join("gpu")
        .join(format!("{}-{name}.part", &sha[..12]))
}

#[test]
fn a_resume_takes_the_rest_only_of_the_same_file() {
    let scratch = Scratch::new();
    let (name, body) = archive();
    // The first half comes from a file the mirror then replaces (same size, another ETag).
    let mut older = body.clone();
    older[..body.len() / 2].iter_mut().for_each(|b| *b ^= 0x5a);
    let cut = body.len() / 2;
    let mirror = Mirror::start(&name, older, Some(cut));
    let first = run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert_eq!(warnings(&first.stderr).len(), 1, "{}", first.text());
    mirror.replace(body.clone());
    let second = run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert_eq!(
        warnings(&second.stderr),
        Vec::<&str>::new(),
        "{}",
        second.text()
    );
    let seen = mirror.seen();
    assert_eq!(
        (seen[1].from, seen[1].status),
        (Some(cut as u64), 200),
        "{seen:?}"
    );
    assert!(on_cuda(&scratch), "{}", compute_line(&scratch));
}

#[test]
fn a_partial_download_the_mirror_does_not_continue_is_dropped() {
    // A 206 from another byte: the partial file is dropped and all of it fetched.
    let scratch = Scratch::new();
    let (name, body) = archive();
    let cut = body.len() / 2;
    let mirror = Mirror::start(&name, body.clone(), Some(cut));
    run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    mirror.misplace_ranges();
    let second = run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert_eq!(
        warnings(&second.stderr),
        Vec::<&str>::new(),
        "{}",
        second.text()
    );
    let statuses: Vec<(Option<u64>, u16)> =
        mirror.seen().iter().map(|s| (s.from, s.status)).collect();
    assert_eq!(
        statuses[1..],
        [(Some(cut as u64), 206), (None, 200)],
        "{statuses:?}"
    );
    assert!(on_cuda(&scratch), "{}", compute_line(&scratch));

    // A shorter (wrong) file on the mirror: 416 for the resume, then a file of another
    // size: dropped, and runs wait for `gpu install`.
    let scratch = Scratch::new();
    let part = partial_path(&scratch);
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, vec![0u8; body.len() * 3 / 4]).unwrap();
    let mirror = Mirror::start(&name, body[..body.len() / 2].to_vec(), None);
    let out = run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    let warned = warnings(&out.stderr);
    assert_eq!(warned.len(), 1, "{}", out.text());
    assert!(
        warned[0].contains(" bytes, expected ")
            && warned[0].ends_with("runs do not download them again until `codex-oss gpu install`"),
        "{}",
        out.text()
    );
    assert!(!part.exists(), "the partial download was kept");
    let statuses: Vec<(Option<u64>, u16)> =
        mirror.seen().iter().map(|s| (s.from, s.status)).collect();
    assert_eq!(
        statuses,
        [(Some(body.len() as u64 * 3 / 4), 416), (None, 200)]
    );
    run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert_eq!(mirror.seen().len(), 2, "the next run downloaded it again");
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let scratch = Scratch::new();
    let (name, body) = archive();
    let cut = body.len() / 2;
    let mirror = Mirror::start(&name, body.clone(), Some(cut));
    let first = run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    let warned = warnings(&first.stderr);
    assert_eq!(warned.len(), 1, "{}", first.text());
    assert!(
        warned[0].starts_with(
            "codex-oss: warning: could not fetch Ollama's CUDA libraries: the download stopped at "
        ) && warned[0]
            .ends_with("; the model runs on the CPU this time, and the next run tries again"),
        "{}",
        first.text()
    );
    gpu_redactions(&scratch).bind(|| {
        insta::assert_snapshot!("an_interrupted_download", warned[0]);
    });
    assert!(!on_cuda(&scratch));
    let partial: Vec<PathBuf> = std::fs::read_dir(scratch.oss_home().join("gpu"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "part"))
        .collect();
    assert_eq!(partial.len(), 1, "{partial:?}");
    assert_eq!(std::fs::metadata(&partial[0]).unwrap().len(), cut as u64);

    let second = run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert_eq!(
        warnings(&second.stderr),
        Vec::<&str>::new(),
        "{}",
        second.text()
    );
    let seen = mirror.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].from, Some(cut as u64), "{seen:?}");
    assert_eq!(
        seen.iter().map(|s| s.sent).sum::<usize>(),
        body.len(),
        "every byte was sent once"
    );
    assert_eq!(cuda_folders(&scratch), ["cuda_v12", "cuda_v13"]);
    assert!(on_cuda(&scratch), "{}", compute_line(&scratch));
}

#[test]
fn without_a_network_the_run_warns_once_and_goes_on_on_the_cpu() {
    let scratch = Scratch::new();
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = run_ok(
        &scratch,
        exec(&scratch, "cuda", &format!("http://127.0.0.1:{closed}")),
    );
    let warned = warnings(&out.stderr);
    assert_eq!(warned.len(), 1, "{}", out.text());
    gpu_redactions(&scratch).bind(|| {
        insta::assert_snapshot!("no_network", warned[0]);
    });
    assert!(cuda_folders(&scratch).is_empty());
    assert!(!on_cuda(&scratch));
}

#[test]
fn gpu_remove_takes_them_away_and_runs_stay_on_the_cpu_until_gpu_install() {
    let scratch = Scratch::new();
    let mirror = mirror();
    let installed = gpu(&scratch, "install", &mirror.url());
    assert!(installed.status.success(), "{}", installed.text());
    assert!(
        installed
            .line("installed ")
            .starts_with("installed Ollama's CUDA libraries (cuda_v12, cuda_v13: "),
        "{}",
        installed.text()
    );
    assert_eq!(cuda_folders(&scratch), ["cuda_v12", "cuda_v13"]);

    let removed = gpu(&scratch, "remove", &mirror.url());
    assert!(removed.status.success(), "{}", removed.text());
    assert!(removed
        .line("removed ")
        .ends_with(": runs use the CPU until `codex-oss gpu install`"));
    assert!(cuda_folders(&scratch).is_empty());
    assert!(lib(&scratch).join("libggml-base.so.0.0.0").is_file());

    let out = run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert!(!out.stderr.contains("CUDA"), "{}", out.text());
    assert!(!on_cuda(&scratch), "{}", compute_line(&scratch));
    assert_eq!(
        mirror.seen().len(),
        1,
        "a run fetched them after gpu remove"
    );
    let status = gpu(&scratch, "status", &mirror.url());
    assert_eq!(
        status.line("gpu libraries: "),
        "gpu libraries: CUDA removed by `codex-oss gpu remove`: `codex-oss gpu install` brings them back"
    );

    let again = gpu(&scratch, "install", &mirror.url());
    assert!(again.status.success(), "{}", again.text());
    run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert!(on_cuda(&scratch), "{}", compute_line(&scratch));
}

#[test]
fn clean_keeps_the_cuda_libraries_of_the_current_ollama() {
    let scratch = Scratch::new();
    let mirror = mirror();
    assert!(gpu(&scratch, "install", &mirror.url()).status.success());
    let mut cmd = scratch.codex_oss();
    cmd.arg("clean");
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(cuda_folders(&scratch), ["cuda_v12", "cuda_v13"]);
    let kept = out.line("kept ");
    gpu_redactions(&scratch)
        .bind(|| insta::assert_snapshot!("clean_keeps_the_cuda_libraries", kept));
    run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert_eq!(mirror.seen().len(), 1, "the run downloaded them again");
    assert!(on_cuda(&scratch), "{}", compute_line(&scratch));
}

#[test]
fn ollama_on_the_cpu_despite_the_libraries_says_why_at_start() {
    let scratch = Scratch::new();
    let mirror = mirror();
    assert!(gpu(&scratch, "install", &mirror.url()).status.success());
    let mut cmd = exec(&scratch, "cuda", &mirror.url());
    cmd.env("STAND_IN_OLLAMA_NVIDIA_DRIVER", "535");
    let out = run_ok(&scratch, cmd);
    let warned = warnings(&out.stderr);
    assert_eq!(warned.len(), 1, "{}", out.text());
    gpu_redactions(&scratch).bind(|| {
        insta::assert_snapshot!("ollama_on_the_cpu_with_an_old_driver", warned[0]);
    });
    let report = doctor(&scratch, &[]);
    assert!(
        report
            .line("compute: ")
            .contains("because the NVIDIA driver 535 is too old"),
        "{}",
        report.text()
    );
}

#[test]
fn the_libraries_survive_a_repair_of_the_payload_and_go_with_their_version() {
    let scratch = Scratch::new();
    let mirror = mirror();
    assert!(gpu(&scratch, "install", &mirror.url()).status.success());
    // A damaged CPU library: the payload is unpacked again, the CUDA folders kept.
    let cpu = lib(&scratch).join("libggml-cpu-x64.so");
    std::fs::write(&cpu, b"damaged").unwrap();
    let report = doctor(&scratch, &[]);
    assert!(report.status.success(), "{}", report.text());
    assert_ne!(std::fs::read(&cpu).unwrap(), b"damaged", "not repaired");
    assert_eq!(cuda_folders(&scratch), ["cuda_v12", "cuda_v13"]);
    assert!(
        report
            .line("gpu libraries: ")
            .starts_with("gpu libraries: CUDA (cuda_v12, cuda_v13"),
        "{}",
        report.text()
    );
    run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    assert_eq!(mirror.seen().len(), 1, "fetched again after the repair");
    assert!(on_cuda(&scratch));

    // Another (older) version with its own CUDA folders goes as a whole when unused.
    let ollama = scratch.oss_home().join("ollama");
    let old = ollama.join("0.0.1-000000000000");
    std::fs::create_dir_all(old.join("lib/ollama/cuda_v12")).unwrap();
    std::fs::write(old.join("lib/ollama/cuda_v12/libggml-cuda.so"), b"old").unwrap();
    assert!(doctor(&scratch, &[]).status.success());
    assert!(!old.exists(), "an unused version kept its CUDA libraries");
}

#[test]
fn doctor_json_has_stable_fields() {
    let scratch = Scratch::new();
    let fresh = doctor(&scratch, &["--json"]);
    assert!(fresh.status.success(), "{}", fresh.text());
    let json: serde_json::Value =
        serde_json::from_str(&fresh.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", fresh.stdout));
    assert_eq!(json["log"], serde_json::Value::Null);
    assert_eq!(json["gpu"]["ollama_used"], serde_json::Value::Null);

    let mirror = mirror();
    run_ok(&scratch, exec(&scratch, "cuda", &mirror.url()));
    let mut cmd = scratch.codex_oss();
    cmd.args(["doctor", "--json"])
        .env("CODEX_OSS_GPU", "cuda")
        .env("CODEX_OSS_PAYLOAD_MIRROR", mirror.url());
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    let json: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", out.stdout));
    let at = |pointer: &str| {
        json.pointer(pointer)
            .unwrap_or_else(|| panic!("no {pointer} in {json:#}"))
            .clone()
    };
    assert_eq!(at("/healthy"), true);
    assert_eq!(at("/home"), scratch.oss_home().display().to_string());
    assert_eq!(at("/versions/ollama"), "0.32.15");
    assert_eq!(
        at("/versions/codex"),
        crate::support::pinned_codex().as_str()
    );
    assert_eq!(at("/versions/codex_oss"), env!("CARGO_PKG_VERSION"));
    assert_eq!(at("/payloads/0/name"), "ollama");
    assert_eq!(at("/payloads/0/ok"), true);
    assert!(at("/payloads/1/path")
        .as_str()
        .unwrap()
        .ends_with("bin/codex"));
    assert_eq!(at("/model/name"), "gpt-oss:20b");
    assert_eq!(at("/model/downloaded"), true);
    assert_eq!(at("/model/needs_disk_bytes"), 14_000_000_000_u64);
    assert_eq!(at("/model/needs_memory_bytes"), 16_000_000_000_u64);
    assert!(at("/disk/free_bytes").as_u64().unwrap() > 0);
    assert!(at("/disk/path").is_string());
    assert!(at("/memory/total_bytes").as_u64().unwrap() > 0);
    assert!(at("/memory/available_bytes").is_u64());
    assert_eq!(at("/gpu/mode"), "cuda");
    assert_eq!(at("/gpu/found/0/vendor"), "nvidia");
    assert_eq!(at("/gpu/libraries/state"), "installed");
    assert_eq!(
        at("/gpu/libraries/folders"),
        serde_json::json!(["cuda_v12", "cuda_v13"])
    );
    assert!(at("/gpu/libraries/bytes").as_u64().unwrap() > 0);
    assert_eq!(at("/gpu/libraries/source/asset"), archive().0);
    assert_eq!(
        at("/gpu/libraries/source/url"),
        format!("{}/{}", mirror.url(), archive().0)
    );
    assert_eq!(at("/gpu/ollama_used/library"), "CUDA");
    assert_eq!(at("/gpu/ollama_used/name"), "NVIDIA GeForce RTX 4090");
    assert_eq!(at("/gpu/ollama_used/total"), "24.0 GiB");
    assert_eq!(at("/gpu/ollama_used/folder"), "cuda_v13");
    assert_eq!(at("/gpu/cpu_because"), serde_json::Value::Null);
    assert_eq!(at("/servers"), serde_json::json!([]));
    assert!(Path::new(at("/log/path").as_str().unwrap())
        .extension()
        .is_some_and(|x| x == "log"));
    let lines = at("/log/last_lines");
    assert!(!lines.as_array().unwrap().is_empty());

    // A running shared server, with its port.
    let started = scratch.home().join("codex-started");
    let waits = script(
        &scratch,
        "codex-waits",
        &format!("touch '{}'\nexec sleep 30\n", started.display()),
    );
    let mut cmd = exec_with(&scratch, &waits);
    cmd.env("CODEX_OSS_GPU", "cuda")
        .env("CODEX_OSS_PAYLOAD_MIRROR", mirror.url());
    let mut running = Running::start(cmd);
    running.wait_until("Codex", STEP, |_| started.exists());
    let out = doctor(&scratch, &["--json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let server = &json["servers"][0];
    let port = server["port"].as_u64().expect("a port");
    assert_eq!(server["url"], format!("http://127.0.0.1:{port}"));
    assert_eq!(server["runs"], 1);
    running.signal(Signal::SIGTERM);
    running.finish(STEP);
    assert_no_processes_within(scratch.home(), GONE);
}

#[test]
fn the_gpu_help() {
    let scratch = Scratch::new();
    let mut cmd = scratch.codex_oss();
    cmd.args(["gpu", "--help"]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    assert_user_sees!(&scratch, "help_gpu", out.stdout);
}
