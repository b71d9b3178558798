//! The embedded Ollama server: start it on a loopback port, wait until it answers,
//! and stop it, with its runner processes, whatever happens to the launcher.
//!
//! Theory of operation. `ollama serve` runs in a process group of its own (a Job
//! Object on Windows), so that stopping it reaches the runners it starts and so that
//! the terminal's Ctrl-C goes to Codex, not to Ollama. Shutdown is SIGTERM to the
//! group, a grace period, then SIGKILL. If the launcher itself dies without a chance
//! to clean up (SIGKILL), three things stop the server: on Linux the kernel sends it
//! SIGTERM (parent-death signal); on Unix a watchdog process holding a pipe from the
//! launcher sees the pipe close and stops the group; on Windows the job object kills
//! it when its last handle closes. Should all of that fail, every server is recorded
//! under `<home>/run/servers/` with a lock its launcher holds: the next run stops any
//! server whose launcher is gone.
//!
//! The port: with no `CODEX_OSS_PORT`, Ollama binds port 0 and the launcher reads the
//! real address from its `Listening on ADDR (version X)` log line, so there is no
//! window between choosing a port and binding it.
//!
//! The device: Ollama logs the one it computes on before it serves HTTP (`msg="inference
//! compute" ... library=CUDA`); `inference_compute` reads it back from the log, for the
//! GPU check at start (see `gpu`) and for `doctor`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use process_wrap::tokio::ChildWrapper;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use crate::env_vars::EnvVars;
use crate::home::Home;
use crate::platform;
use crate::settings::{Bind, Settings};

/// How long Ollama gets to answer `/api/version` after starting.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);
/// Log files kept in `<home>/logs`.
const LOGS_KEPT: usize = 20;

/// A running `ollama serve`.
pub struct Server {
    child: Box<dyn ChildWrapper>,
    addr: SocketAddr,
    log: PathBuf,
    exited: Option<ExitStatus>,
    registration: Option<crate::lock::Claim>,
    watchdog: Option<platform::Watchdog>,
}

impl Server {
    /// Starts Ollama (`executable`, with `settings`) and waits until it answers
    /// `GET /api/version`.
    pub async fn start(settings: &Settings, executable: &Path) -> Result<Server> {
        let log = new_log_path(&settings.home)?;
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("could not create log file {}", log.display()))?;
        let mut child = spawn(settings, executable)
            .with_context(|| format!("could not start Ollama ({})", executable.display()))?;
        let pid = child.id().unwrap_or(0);
        let registration = crate::registry::register(&settings.home, pid, executable, &log);
        let watchdog = platform::Watchdog::spawn(pid);
        let listening = pump_output(&mut *child, log_file);
        let mut server = Server {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            log,
            exited: None,
            registration,
            watchdog,
        };
        if let Err(err) = server.wait_ready(&settings.bind, listening).await {
            server.stop().await;
            return Err(err);
        }
        tracing::info!("Ollama ready at {}", server.addr);
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    async fn wait_ready(
        &mut self,
        bind: &Bind,
        mut listening: watch::Receiver<Option<SocketAddr>>,
    ) -> Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        let client = crate::http::loopback_client_builder()
            .timeout(Duration::from_millis(800))
            .build()?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited = Some(status);
                return Err(
                    self.start_failure(bind, &format!("Ollama exited during start-up ({status})"))
                );
            }
            let addr = *listening.borrow_and_update();
            if let Some(addr) = addr {
                self.addr = addr;
                let url = format!("{}/api/version", self.base_url());
                if let Ok(resp) = client.get(&url).send().await {
                    if resp.status().is_success() {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(self.start_failure(
                    bind,
                    &format!(
                        "Ollama did not answer within {} s",
                        READY_DEADLINE.as_secs()
                    ),
                ));
            }
            if addr.is_some() {
                tokio::time::sleep(READY_RETRY).await;
            } else if let Ok(Err(_)) = tokio::time::timeout(READY_POLL, listening.changed()).await {
                // Its output closed (Ollama is exiting): the next look finds the exit.
                tokio::time::sleep(READY_POLL).await;
            }
        }
    }

    fn start_failure(&self, bind: &Bind, what: &str) -> anyhow::Error {
        let tail = log_tail(&self.log, 15);
        // Go writes "bind: address already in use"; other runtimes capitalise it.
        let lower = tail.to_lowercase();
        if lower.contains("address already in use")
            || lower.contains("only one usage of each socket address")
        {
            return anyhow::anyhow!(
                "{} is already in use: {} (log: {})",
                bind.describe(),
                bind.fix_when_taken(),
                self.log.display()
            );
        }
        anyhow::anyhow!(
            "{what}; last lines of its log {}:\n{tail}",
            self.log.display()
        )
    }

    /// Resolves when the server exits; `None` if waiting failed.
    pub async fn wait_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.wait().await.ok();
        }
        self.exited
    }

    /// A one-line account of an unexpected exit, with the log to read.
    pub fn died_message(&self, status: Option<ExitStatus>) -> String {
        died_message(&describe_exit(status), &self.log)
    }

    /// SIGTERM to the group, then SIGKILL after the grace period; always disarms the watchdog.
    pub async fn stop(mut self) {
        if self.exited.is_none() {
            platform::ask_to_stop(&mut *self.child);
            let waited = tokio::time::timeout(platform::STOP_GRACE, self.child.wait()).await;
            if waited.is_err() {
                tracing::warn!(
                    "Ollama did not stop within {} s; killing it",
                    platform::STOP_GRACE.as_secs()
                );
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
            }
        }
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        drop(self.registration.take());
    }
}

/// How soon an Ollama that is listening but did not answer yet is asked again.
const READY_RETRY: Duration = Duration::from_millis(10);
/// How often a start-up that has not logged its address yet looks whether Ollama exited
/// (it looks again as soon as Ollama logs the address).
const READY_POLL: Duration = Duration::from_millis(50);

/// An exit status as the user reads it ("exit status: 1", "signal: 9 (SIGKILL)").
pub fn describe_exit(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| UNKNOWN_EXIT.to_owned(), |s| s.to_string())
}

/// What is said when the exit status could not be learnt.
pub const UNKNOWN_EXIT: &str = "unknown status";

/// The one line a user reads when the server dies under Codex, shared or not.
pub fn died_message(status: &str, log: &Path) -> String {
    format!(
        "Ollama stopped unexpectedly ({status}); its log is {}",
        log.display()
    )
}

fn spawn(settings: &Settings, executable: &Path) -> std::io::Result<Box<dyn ChildWrapper>> {
    let ollama_home = settings.home.ollama_home();
    crate::home::make_private_dir(&ollama_home)?;
    let models = settings.home.models();
    std::fs::create_dir_all(&models)?;

    let mut command = tokio::process::Command::new(executable);
    command
        .arg("serve")
        .env(EnvVars::OLLAMA_HOST, settings.bind.ollama_host())
        .env(EnvVars::OLLAMA_MODELS, &models)
        .env(
            EnvVars::OLLAMA_CONTEXT_LENGTH,
            settings.context_length.to_string(),
        )
        // Ollama writes its key pair under $HOME/.ollama: keep it inside the codex-oss home.
        .env("HOME", &ollama_home)
        .env("USERPROFILE", &ollama_home)
        // Set for the user's own Ollama: origins allowed to call it from a browser.
        .env_remove(EnvVars::OLLAMA_ORIGINS)
        .envs(&settings.server_env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    platform::die_with_launcher(&mut command);
    platform::wrap_server(command).spawn()
}

/// Copies Ollama's stdout and stderr into its log file, and reports the address from
/// its `Listening on` line. Drained to the end so a full pipe can never block Ollama.
fn pump_output(
    child: &mut dyn ChildWrapper,
    log: std::fs::File,
) -> watch::Receiver<Option<SocketAddr>> {
    let (tx, rx) = watch::channel(None);
    let tx = Arc::new(tx);
    let log = Arc::new(Mutex::new(log));
    if let Some(out) = child.stdout().take() {
        tokio::spawn(copy_lines(out, log.clone(), tx.clone()));
    }
    if let Some(err) = child.stderr().take() {
        tokio::spawn(copy_lines(err, log, tx));
    }
    rx
}

async fn copy_lines(
    reader: impl AsyncRead + Unpin,
    log: Arc<Mutex<std::fs::File>>,
    listening: Arc<watch::Sender<Option<SocketAddr>>>,
) {
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(addr) = parse_listening(&line) {
            listening.send_replace(Some(addr));
        }
        if let Ok(mut file) = log.lock() {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// `... msg="Listening on 127.0.0.1:43121 (version 0.32.15)"` -> 127.0.0.1:43121.
/// An unspecified bind address (0.0.0.0, [::]) is reached through loopback.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("Listening on ")? + "Listening on ".len()..];
    let token = rest.split([' ', '"']).next()?;
    let mut addr: SocketAddr = token.parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Some(addr)
}

/// `<home>/logs/ollama-<unix time>-<pid>.log`, pruning all but the newest logs.
fn new_log_path(home: &Home) -> Result<PathBuf> {
    let dir = home.logs();
    crate::home::create_private_dir(&dir, "logs")?;
    let mut old: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| crate::home::is_own_log(&e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    if old.len() >= LOGS_KEPT {
        old.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        for path in &old[..=old.len() - LOGS_KEPT] {
            let _ = std::fs::remove_file(path);
        }
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(dir.join(format!("ollama-{secs}-{}.log", std::process::id())))
}

/// The last `n` lines of a log, indented for an error message.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The device Ollama computes on, as it logs it at start (`msg="inference compute"`,
/// one line a device, before it serves HTTP): `library=CUDA ... name=CUDA0
/// description="NVIDIA GeForce RTX 4090" libdirs=ollama,cuda_v13 ... total="24.0 GiB"`
/// (Ollama 0.32's discover.LogDetails; older ones wrote `name="NVIDIA ..." variant=v12`),
/// or `id=cpu library=cpu ... total="31.3 GiB"` without a GPU.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Compute {
    /// `CUDA`, `ROCm`, `Metal`, `Vulkan` or `cpu`.
    pub library: String,
    /// The device's name (`NVIDIA GeForce RTX 4090`; `cpu`).
    pub name: String,
    /// The library folder it runs on (`cuda_v13`), when it says.
    pub folder: Option<String>,
    /// The driver's CUDA version (`13.0`), when it says.
    pub driver: Option<String>,
    /// Its memory (`24.0 GiB`).
    pub total: String,
}

impl Compute {
    pub fn is_gpu(&self) -> bool {
        !self.library.eq_ignore_ascii_case("cpu")
    }

    /// `CUDA on NVIDIA GeForce RTX 4090 (24.0 GiB, cuda_v13)`, `the CPU (31.3 GiB)`.
    pub fn describe(&self) -> String {
        if !self.is_gpu() {
            return format!("the CPU ({})", self.total);
        }
        let details: Vec<&str> = [Some(self.total.as_str()), self.folder.as_deref()]
            .into_iter()
            .flatten()
            .filter(|d| !d.is_empty())
            .collect();
        format!("{} on {} ({})", self.library, self.name, details.join(", "))
    }
}

/// The `key=value` pairs of one line of Ollama's log (Go's slog text: a value is bare,
/// or quoted as Go quotes strings).
pub fn slog_fields(line: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if chars.peek().is_none() {
            return fields;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue; // a word without a value
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some(other) => value.push(other),
                        None => {}
                    },
                    other => value.push(other),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        fields.push((key, value));
    }
}

/// The device of one `msg="inference compute"` line.
pub fn parse_inference_compute(line: &str) -> Option<Compute> {
    if !line.contains("inference compute") {
        return None;
    }
    let fields = slog_fields(line);
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    if get("msg").as_deref() != Some("inference compute") {
        return None;
    }
    let library = get("library")?;
    let name = get("description")
        .or_else(|| get("name"))
        .unwrap_or_else(|| library.clone());
    let folder = get("libdirs")
        .and_then(|dirs| dirs.rsplit(',').next().map(str::to_owned))
        .filter(|dir| dir != "ollama")
        .or_else(|| get("variant"));
    Some(Compute {
        driver: get("driver").filter(|d| d != "0.0"),
        total: get("total").unwrap_or_default(),
        library,
        name,
        folder,
    })
}

/// The devices a log says Ollama computes on (read from its start: Ollama logs them
/// before it serves HTTP).
pub fn inference_compute(log: &Path) -> Vec<Compute> {
    use std::io::Read;
    let mut head = Vec::new();
    if let Ok(file) = std::fs::File::open(log) {
        let _ = file.take(1 << 20).read_to_end(&mut head);
    }
    String::from_utf8_lossy(&head)
        .lines()
        .filter_map(parse_inference_compute)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_gives_the_address() {
        let ollama = r#"time=2026 level=INFO source=routes.go:1 msg="Listening on 127.0.0.1:43121 (version 0.32.15)""#;
        for (line, addr) in [
            (ollama, Some("127.0.0.1:43121")),
            ("Listening on 0.0.0.0:80 (version 1)", Some("127.0.0.1:80")),
            ("Listening on [::]:80 (version 1)", Some("[::1]:80")),
            ("starting runner", None),
        ] {
            let expected = addr.map(|a| a.parse().unwrap());
            assert_eq!(parse_listening(line), expected, "{line}");
        }
    }

    #[test]
    fn the_device_ollama_computes_on() {
        // Ollama 0.32.15 (discover/types.go), with a GPU and without.
        let cuda = r#"time=2026-01-01T10:00:00.000Z level=INFO source=types.go:32 msg="inference compute" id=GPU-452cac9f filter_id="" library=CUDA compute=8.9 name=CUDA0 description="NVIDIA GeForce RTX 4090" libdirs=ollama,cuda_v13 driver=13.0 pci_id=0000:01:00.0 type=discrete total="24.0 GiB" available="23.5 GiB""#;
        let compute = parse_inference_compute(cuda).unwrap();
        assert!(compute.is_gpu());
        assert_eq!(
            compute.describe(),
            "CUDA on NVIDIA GeForce RTX 4090 (24.0 GiB, cuda_v13)"
        );
        assert_eq!(compute.driver.as_deref(), Some("13.0"));
        let cpu = r#"time=2026-01-01T10:00:00.000Z level=INFO source=types.go:50 msg="inference compute" id=cpu library=cpu compute="" name=cpu description=cpu libdirs=ollama driver="" pci_id="" type="" total="31.3 GiB" available="30.4 GiB""#;
        let compute = parse_inference_compute(cpu).unwrap();
        assert!(!compute.is_gpu());
        assert_eq!(compute.describe(), "the CPU (31.3 GiB)");
        // Older Ollama (its app/server tests), and Metal.
        let old = r#"time=2025-07-01T19:33:43.162Z level=INFO source=types.go:130 msg="inference compute" id=GPU-452c library=cuda variant=v12 compute=6.1 driver=12.7 name="NVIDIA GeForce GT 1030" total="3.9 GiB" available="3.9 GiB""#;
        assert_eq!(
            parse_inference_compute(old).unwrap().describe(),
            "cuda on NVIDIA GeForce GT 1030 (3.9 GiB, v12)"
        );
        let metal = r#"time=2025-06-30T09:23:07.416-07:00 level=INFO source=types.go:130 msg="inference compute" id=0 library=metal variant="" compute="" driver=0.0 name="" total="96.0 GiB" available="96.0 GiB""#;
        let compute = parse_inference_compute(metal).unwrap();
        assert_eq!((compute.library.as_str(), compute.driver), ("metal", None));
        assert_eq!(
            parse_inference_compute(r#"msg="discovering available GPUs...""#),
            None
        );
        assert_eq!(
            parse_inference_compute(r#"msg="Matched" "inference compute"=x"#),
            None
        );
    }

    #[test]
    fn slog_values_bare_and_quoted() {
        let fields = slog_fields(
            r#"level=WARN msg="NVIDIA driver too old" device="A \"B\" C" driver=535 empty="""#,
        );
        assert_eq!(
            fields,
            [
                ("level".into(), "WARN".into()),
                ("msg".into(), "NVIDIA driver too old".into()),
                ("device".into(), "A \"B\" C".into()),
                ("driver".into(), "535".into()),
                ("empty".into(), String::new()),
            ]
        );
    }
}
