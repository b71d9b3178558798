//! Shared test helpers: a scratch home per test and a `codex-oss` command that runs in it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch HOME with `CODEX_OSS_HOME` inside it; removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("create scratch dir"),
        }
    }

    /// The user's HOME for the test.
    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// `CODEX_OSS_HOME`: everything codex-oss writes.
    pub fn oss_home(&self) -> PathBuf {
        self.dir.path().join(".codex-oss")
    }

    /// `codex-oss` with a clean environment pointing at this scratch home.
    pub fn codex_oss(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_codex-oss"));
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("CODEX_")
                || key.starts_with("OLLAMA_")
                || key.starts_with("STAND_IN_")
            {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", self.home())
            .env("CODEX_OSS_HOME", self.oss_home())
            .current_dir(self.home());
        cmd
    }

    /// The single unpacked version directory of a payload (`ollama` or `codex`).
    pub fn unpacked(&self, name: &str) -> PathBuf {
        let dirs = version_dirs(&self.oss_home().join(name));
        assert_eq!(
            dirs.len(),
            1,
            "expected one unpacked {name}, found {dirs:?}"
        );
        dirs.into_iter().next().unwrap()
    }
}

/// Visible (non-dot) directories in `dir`.
pub fn version_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Live processes whose command line mentions `needle` (a scratch home: the unpacked
/// Ollama and its runner live under it), as "pid cmdline" lines. Zombies are skipped.
pub fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next());
        if state == Some("Z") {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{name} {cmdline}"));
        }
    }
    found
}

/// Waits up to `timeout` for every process mentioning `needle` to be gone.
pub fn assert_no_processes_within(needle: &Path, timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes left behind after {timeout:?}: {left:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
