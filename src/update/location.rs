//! Which installed copy `codex-oss update` may replace.
//!
//! A copy that a package manager installed is that manager's to update: replacing it
//! behind the manager's back leaves the manager's records wrong (Homebrew would keep
//! "upgrading" a formula whose files changed; Windows would keep listing the old MSI
//! version and its repair would put the old binary back). Everything else is replaced
//! in place, provided this user can write the folder the executable is in.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

/// Who installed this copy, when it is not codex-oss's to replace.
#[derive(Debug, PartialEq, Eq)]
pub enum Manager {
    /// A Homebrew keg (`.../Cellar/codex-oss/<version>/bin/codex-oss`).
    Homebrew,
    /// The MSI, which installs under Program Files.
    Msi,
}

impl Manager {
    /// Finds who manages `exe` (the running executable, symbolic links resolved).
    pub fn of(exe: &Path) -> Option<Manager> {
        Manager::of_with(exe, &program_files())
    }

    fn of_with(exe: &Path, program_files: &[String]) -> Option<Manager> {
        if exe.components().any(|c| c.as_os_str() == "Cellar") {
            return Some(Manager::Homebrew);
        }
        let exe = comparable(&exe.to_string_lossy());
        program_files
            .iter()
            .map(|dir| comparable(dir))
            .filter(|dir| !dir.is_empty())
            .any(|dir| exe.starts_with(&format!("{}/", dir.trim_end_matches('/'))))
            .then_some(Manager::Msi)
    }

    /// What to do instead of `codex-oss update`.
    pub fn how_to_update(&self) -> String {
        match self {
            Manager::Homebrew => "run `brew upgrade codex-oss`".to_owned(),
            Manager::Msi => format!(
                "download the newer codex-oss-x86_64-pc-windows-msvc.msi from {}/latest and run it",
                super::releases_page()
            ),
        }
    }

    /// The refusal to replace `exe`.
    pub fn refusal(&self, exe: &Path) -> anyhow::Error {
        let by = match self {
            Manager::Homebrew => "with Homebrew",
            Manager::Msi => "by its MSI",
        };
        anyhow!(
            "codex-oss was installed {by} ({}): {}",
            exe.display(),
            self.how_to_update()
        )
    }
}

/// A path as the comparisons above see it: `\\?\` and case dropped on Windows, where
/// neither matters, and one kind of separator.
fn comparable(path: &str) -> String {
    if cfg!(windows) {
        path.trim_start_matches(r"\\?\")
            .replace('\\', "/")
            .to_lowercase()
    } else {
        path.to_owned()
    }
}

/// The Program Files folders (64- and 32-bit) where the MSI may have installed codex-oss.
fn program_files() -> Vec<String> {
    if cfg!(windows) {
        ["ProgramFiles", "ProgramW6432", "ProgramFiles(x86)"]
            .iter()
            .filter_map(|var| std::env::var(var).ok())
            .collect()
    } else {
        Vec::new()
    }
}

/// The running executable, with symbolic links resolved (Homebrew links `bin/codex-oss`
/// into its Cellar).
pub fn current_exe() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| {
        anyhow!(
            "cannot tell where this codex-oss is installed ({e}): reinstall it with the installer"
        )
    })?;
    Ok(exe.canonicalize().unwrap_or(exe))
}

/// Fails, changing nothing, when this user cannot create files beside `exe`, which
/// replacing it needs (a new file, renamed over the old one).
#[cfg(feature = "self-update")]
pub fn check_writable(exe: &Path) -> Result<()> {
    tempfile::Builder::new()
        .prefix(".codex-oss-update-check")
        .tempfile_in(exe.parent().unwrap_or(Path::new(".")))
        .map(drop)
        .map_err(|e| cannot_write(exe, &e))
}

/// The refusal to replace `exe`, whose folder this user cannot write.
#[cfg(feature = "self-update")]
pub(super) fn cannot_write(exe: &Path, e: &std::io::Error) -> anyhow::Error {
    anyhow!(
        "cannot replace {}: you cannot write to its folder {} ({}); nothing was changed: run `codex-oss update` as a user who can write there, or update codex-oss the way it was installed",
        exe.display(),
        exe.parent().unwrap_or(Path::new(".")).display(),
        cause(e)
    )
}

/// An I/O error without tempfile's "at path <temporary name>" tail.
#[cfg(feature = "self-update")]
pub(super) fn cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split_once(" at path ")
        .map_or_else(|| text.clone(), |(cause, _)| cause.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_homebrew_keg_is_homebrews() {
        let keg = Path::new("/opt/homebrew/Cellar/codex-oss/0.1.0/bin/codex-oss");
        assert_eq!(Manager::of_with(keg, &[]), Some(Manager::Homebrew));
        let refusal = Manager::Homebrew.refusal(keg).to_string();
        assert!(refusal.contains("brew upgrade codex-oss"), "{refusal}");
        assert_eq!(
            Manager::of_with(Path::new("/home/me/.local/bin/codex-oss"), &[]),
            None
        );
    }

    #[test]
    fn program_files_is_the_msis() {
        let dirs = ["/pf".to_owned(), String::new()];
        assert_eq!(
            Manager::of_with(Path::new("/pf/codex-oss/bin/codex-oss"), &dirs),
            Some(Manager::Msi)
        );
        // A sibling folder that merely starts the same is not under it.
        assert_eq!(
            Manager::of_with(Path::new("/pf2/codex-oss/bin/codex-oss"), &dirs),
            None
        );
        let how = Manager::Msi.how_to_update();
        assert!(
            how.contains("codex-oss-x86_64-pc-windows-msvc.msi")
                && how.contains("/releases/latest"),
            "{how}"
        );
    }

    #[cfg(windows)]
    #[test]
    fn windows_paths_compare_without_case_or_verbatim_prefix() {
        let dirs = [r"C:\Program Files".to_owned()];
        assert_eq!(
            Manager::of_with(
                Path::new(r"\\?\c:\PROGRAM FILES\codex-oss\bin\codex-oss.exe"),
                &dirs
            ),
            Some(Manager::Msi)
        );
    }
}
