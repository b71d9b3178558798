//! Putting a verified release archive in place of the running codex-oss.
//!
//! The archive (already verified, `releases::Source::download_verified`) is unpacked in
//! the temporary directory, its executable must answer `--version`, and only then does it
//! replace the running one: on Unix by self-replace (a copy beside the old executable,
//! renamed over it in one step); on Windows, which does not let a running program be
//! deleted, by the rename dance (new copy beside it, old one renamed aside, new one renamed
//! into place, the old one renamed back if that fails, and deleted when this process ends).
//! Until that last rename, the installed executable is untouched.
//!
//! The installers (cargo-dist's shell and PowerShell scripts) leave a receipt naming the
//! folder they installed into and the version; after an update the receipt's version is
//! brought up to date, so the receipt stays a true record of what is installed there.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use self_update::Extract;

use super::location::{cannot_write, cause};

/// How long the new executable may take to print its version.
const SMOKE_TEST_PATIENCE: Duration = Duration::from_secs(30);

/// Unpacks `archive` (verified) in `scratch`, checks that its codex-oss runs, and puts
/// it in place of the running executable `exe`.
pub fn install(
    archive: &Path,
    scratch: &Path,
    exe: &Path,
    version: &semver::Version,
) -> Result<()> {
    say!("unpacking codex-oss {version}");
    let unpacked = scratch.join("unpacked");
    // The kind of archive (`.tar.xz` or `.zip`) is told by its name.
    Extract::from_source(archive)
        .extract_into(&unpacked)
        .map_err(|e| {
            anyhow!(
                "could not unpack the codex-oss {version} archive in {} ({e}): nothing was installed: free some space there or point TMPDIR elsewhere, and run `codex-oss update` again",
                scratch.display()
            )
        })?;
    let new_exe = find_executable(&unpacked).ok_or_else(|| {
        anyhow!(
            "the codex-oss {version} archive holds no codex-oss executable: nothing was installed: report it at {}",
            super::issues_page()
        )
    })?;
    smoke_test(&new_exe, version)?;
    replace(exe, &new_exe).map_err(|e| replace_error(exe, &e))
}

/// The executable in an unpacked cargo-dist archive: `codex-oss-<target>/codex-oss`
/// (tarballs have a top folder), or `codex-oss` at the top (zips do not).
fn find_executable(unpacked: &Path) -> Option<PathBuf> {
    let exe = format!("codex-oss{}", std::env::consts::EXE_SUFFIX);
    let top = format!("codex-oss-{}", self_update::get_target());
    [unpacked.join(&top).join(&exe), unpacked.join(&exe)]
        .into_iter()
        .find(|path| path.is_file())
}

/// The new executable must start and say it is codex-oss.
fn smoke_test(new_exe: &Path, version: &semver::Version) -> Result<()> {
    let fail = |why: String| {
        anyhow!(
            "the new codex-oss {version} does not run on this machine ({why}): nothing was installed: report it at {}",
            super::issues_page()
        )
    };
    let _ = crate::platform::set_mode(new_exe, 0o755);
    let mut child = Command::new(new_exe)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + SMOKE_TEST_PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| fail(e.to_string()))? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "`--version` did not finish within {} seconds",
                SMOKE_TEST_PATIENCE.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(fail(format!("`--version` ended with {status}")));
    }
    if !text.starts_with("codex-oss ") {
        return Err(fail(format!(
            "`--version` printed {:?}",
            text.lines().next().unwrap_or_default()
        )));
    }
    Ok(())
}

fn replace_error(exe: &Path, e: &io::Error) -> anyhow::Error {
    let dir = exe.parent().unwrap_or(Path::new("."));
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            cannot_write(exe, e)
        }
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => anyhow!(
            "not enough space in {} for the new codex-oss ({}); nothing was changed: free some space and run `codex-oss update` again",
            dir.display(),
            cause(e)
        ),
        _ => anyhow!(
            "could not replace {} ({}); nothing was changed: run `codex-oss update` again",
            exe.display(),
            cause(e)
        ),
    }
}

/// Unix: self-replace copies the new executable beside the running one (with its
/// permissions) and renames it over it, one atomic step; a failure before the rename
/// removes the copy.
#[cfg(unix)]
fn replace(_exe: &Path, new_exe: &Path) -> io::Result<()> {
    self_replace::self_replace(new_exe)
}

/// Windows: the rename dance, undone if its last step fails.
#[cfg(windows)]
fn replace(exe: &Path, new_exe: &Path) -> io::Result<()> {
    let dir = exe
        .parent()
        .ok_or_else(|| io::Error::other("the executable has no folder"))?;
    // The new executable beside the old one; if this fails, nothing has changed.
    let mut staged = tempfile::Builder::new()
        .prefix(".codex-oss.new.")
        .suffix(".exe")
        .tempfile_in(dir)?;
    io::copy(&mut std::fs::File::open(new_exe)?, staged.as_file_mut())?;
    staged.as_file().sync_all()?;
    // The running executable aside: Windows renames a running program, but does not delete it.
    let aside = dir.join(format!(".codex-oss.old.{}.exe", std::process::id()));
    let _ = std::fs::remove_file(&aside);
    std::fs::rename(exe, &aside)?;
    if let Err(e) = staged.persist(exe) {
        std::fs::rename(&aside, exe)?;
        return Err(e.error);
    }
    // The old image goes when this process ends (self-replace's helper deletes it).
    if let Err(e) = self_replace::self_delete_at(&aside) {
        tracing::debug!("{} stays behind: {e}", aside.display());
    }
    Ok(())
}

/// Sets the version in the installers' receipt for `exe`'s folder, if there is one.
pub fn refresh_receipt(exe: &Path, version: &semver::Version) {
    const APP: &str = "codex-oss";
    let Some(dir) = exe.parent() else {
        return;
    };
    // Where cargo-dist's installers write the receipt (the places axoupdater read it from).
    let mut dirs = Vec::new();
    if let Some(config) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(config).join(APP));
    }
    if cfg!(windows) {
        if let Some(local) = std::env::var_os("LOCALAPPDATA").filter(|v| !v.is_empty()) {
            dirs.push(PathBuf::from(local).join(APP));
        }
    } else if let Some(home) = dirs::home_dir() {
        dirs.push(home.join(".config").join(APP));
    }
    dirs.dedup();
    let file = format!("{APP}-receipt.json");
    for path in dirs.iter().map(|config| config.join(&file)) {
        match refresh_one(&path, dir, version) {
            Ok(true) => tracing::info!("{} now says {version}", path.display()),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                "could not update the install receipt {}: {e}",
                path.display()
            ),
        }
    }
}

/// Updates the receipt at `path` when it is for `dir`; true when it did.
fn refresh_one(path: &Path, dir: &Path, version: &semver::Version) -> io::Result<bool> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut receipt: serde_json::Value = serde_json::from_str(&text).map_err(io::Error::other)?;
    let same = receipt
        .get("install_prefix")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|prefix| crate::files::same_dir(Path::new(prefix), dir));
    if !same {
        return Ok(false);
    }
    receipt["version"] = serde_json::Value::String(version.to_string());
    let text = serde_json::to_vec(&receipt).map_err(io::Error::other)?;
    crate::files::write_atomically(path, &text)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receipt_for_this_folder_gets_the_new_version() {
        let scratch = tempfile::tempdir().unwrap();
        let bin = scratch.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let receipt = scratch.path().join("codex-oss-receipt.json");
        let write = |prefix: &Path| {
            std::fs::write(
                &receipt,
                serde_json::json!({"install_prefix": prefix, "version": "0.1.0", "binaries": ["codex-oss"]})
                    .to_string(),
            )
            .unwrap();
        };
        let version = semver::Version::new(0, 2, 0);
        let read = || -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap()
        };

        write(&scratch.path().join("elsewhere"));
        assert!(!refresh_one(&receipt, &bin, &version).unwrap());
        assert_eq!(read()["version"], "0.1.0");

        write(&bin);
        assert!(refresh_one(&receipt, &bin, &version).unwrap());
        assert_eq!(read()["version"], "0.2.0");
        assert_eq!(read()["binaries"][0], "codex-oss");

        assert!(!refresh_one(&scratch.path().join("none.json"), &bin, &version).unwrap());
    }

    #[test]
    fn the_executable_is_found_in_either_archive_layout() {
        let scratch = tempfile::tempdir().unwrap();
        let exe = format!("codex-oss{}", std::env::consts::EXE_SUFFIX);
        assert_eq!(find_executable(scratch.path()), None);
        std::fs::write(scratch.path().join(&exe), b"x").unwrap();
        assert_eq!(
            find_executable(scratch.path()),
            Some(scratch.path().join(&exe))
        );
        let top = scratch
            .path()
            .join(format!("codex-oss-{}", self_update::get_target()));
        std::fs::create_dir(&top).unwrap();
        std::fs::write(top.join(&exe), b"x").unwrap();
        assert_eq!(find_executable(scratch.path()), Some(top.join(&exe)));
    }

    /// Windows does not let a running program's file be replaced or deleted, only
    /// renamed: the running copy is moved aside and the new one takes its name.
    #[cfg(windows)]
    #[test]
    fn a_running_executable_is_replaced_and_goes_on_running() {
        let scratch = tempfile::tempdir().unwrap();
        let exe = scratch.path().join("codex-oss.exe");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        // This test binary, sleeping as a helper of the platform tests.
        let mut running = std::process::Command::new(&exe)
            .args(["--exact", "platform::windows::tests::helper", "--ignored"])
            .env("CODEX_OSS_TEST_ROLE", "sleep")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(
            running.try_wait().unwrap().is_none(),
            "the copy does not run"
        );
        let new_exe = scratch.path().join("downloaded.exe");
        std::fs::write(&new_exe, b"the new codex-oss").unwrap();

        replace(&exe, &new_exe).expect("replace a running executable");

        assert_eq!(std::fs::read(&exe).unwrap(), b"the new codex-oss");
        assert!(
            running.try_wait().unwrap().is_none(),
            "the old copy stopped"
        );
        let staged: Vec<String> = std::fs::read_dir(scratch.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".codex-oss.new."))
            .collect();
        assert!(staged.is_empty(), "a staged copy is left: {staged:?}");
        running.kill().unwrap();
        let _ = running.wait();
    }
}
