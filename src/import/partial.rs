//! Blobs on their way in: each is written (or linked) as `<blob>.import-<pid>` beside
//! the blob it becomes, and renamed into place only once its content is checked.
//!
//! A copy can be many gigabytes, and Ollama never removes such a file itself, so none is
//! left behind: one that fails is removed at once; `Stop` (Ctrl-C) removes those of the
//! import it stops before the launcher exits; and one whose process is gone (killed, a
//! power cut) is removed by the next import and by `codex-oss clean`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Stops an import: its copy loop ends at the next megabyte, and its partial files are
/// removed at once. Clones share the same state.
#[derive(Clone, Default)]
pub struct Stop {
    stopped: Arc<AtomicBool>,
    /// The partial files in progress. Creating, renaming and removing them happens under
    /// this lock, so that none can appear after `stop` has removed them.
    partials: Arc<Mutex<Vec<PathBuf>>>,
}

impl Stop {
    /// Stops the import and removes its partial files (no-op the second time).
    pub fn stop(&self) {
        let mut partials = self.lock();
        self.stopped.store(true, Ordering::SeqCst);
        for path in partials.drain(..) {
            let _ = std::fs::remove_file(path);
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The error of an import that `stop` ended.
    pub fn check(&self) -> io::Result<()> {
        if self.is_stopped() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the import was stopped",
            ));
        }
        Ok(())
    }

    /// A guard that stops the import when it goes out of scope: a task cancelled by
    /// Ctrl-C drops it.
    pub fn on_drop(&self) -> StopOnDrop {
        StopOnDrop(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<PathBuf>> {
        self.partials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// See `Stop::on_drop`.
pub struct StopOnDrop(Stop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// One partial file: removed when dropped unless `persist` renamed it into place.
pub struct Partial<'a> {
    stop: &'a Stop,
    path: PathBuf,
}

impl<'a> Partial<'a> {
    /// Makes the partial file for `dest` with `make` (a link, a new file), unless the
    /// import was stopped.
    pub fn create<T>(
        stop: &'a Stop,
        dest: &Path,
        make: impl FnOnce(&Path) -> io::Result<T>,
    ) -> io::Result<(Partial<'a>, T)> {
        let path = partial_path(dest);
        let mut partials = stop.lock();
        stop.check()?;
        let _ = std::fs::remove_file(&path);
        let file = make(&path)?;
        partials.push(path.clone());
        Ok((Partial { stop, path }, file))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the partial file to `dest`, unless the import was stopped.
    pub fn persist(self, dest: &Path) -> io::Result<()> {
        let mut partials = self.stop.lock();
        self.stop.check()?;
        std::fs::rename(&self.path, dest)?;
        partials.retain(|p| p != &self.path);
        Ok(())
    }
}

impl Drop for Partial<'_> {
    fn drop(&mut self) {
        let mut partials = self.stop.lock();
        if let Some(i) = partials.iter().position(|p| p == &self.path) {
            partials.swap_remove(i);
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `blobs/sha256-<hex>` -> `blobs/sha256-<hex>.import-<pid>`.
fn partial_path(dest: &Path) -> PathBuf {
    dest.with_extension(format!("import-{}", std::process::id()))
}

/// The pid in a partial file's name, `sha256-<64 hex>.import-<pid>`.
fn partial_pid(name: &str) -> Option<u32> {
    let (blob, pid) = name.split_once(".import-")?;
    let hex = blob.strip_prefix("sha256-")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the partial files in `blobs` whose process no longer runs: imports that were
/// killed before they could clean up. Returns how many it removed.
pub fn remove_stale(blobs: &Path) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(blobs).into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(partial_pid) else {
            continue;
        };
        let alive =
            pid == std::process::id() || crate::platform::ProcessIdentity::of(pid).is_some();
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_carry_the_pid() {
        let hex = "a".repeat(64);
        let dest = PathBuf::from(format!("/s/blobs/sha256-{hex}"));
        let partial = partial_path(&dest);
        let name = partial.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, format!("sha256-{hex}.import-{}", std::process::id()));
        assert_eq!(partial_pid(name), Some(std::process::id()));
        assert_eq!(partial_pid(&format!("sha256-{hex}")), None);
        assert_eq!(partial_pid(&format!("sha256-{hex}-partial")), None);
        assert_eq!(partial_pid(&format!("sha256-{hex}.import-")), None);
        assert_eq!(partial_pid("sha256-abc.import-12"), None);
    }

    #[test]
    fn stopping_removes_the_partials_and_refuses_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join(format!("sha256-{}", "b".repeat(64)));
        let stop = Stop::default();
        let (partial, file) = Partial::create(&stop, &dest, |p| std::fs::File::create(p)).unwrap();
        drop(file);
        assert!(partial.path().exists());
        drop(stop.on_drop());
        assert!(!partial.path().exists(), "left after the stop");
        assert!(partial.persist(&dest).is_err());
        assert!(!dest.exists());
        let again = Partial::create(&stop, &dest, |p| std::fs::File::create(p));
        assert_eq!(again.err().unwrap().kind(), io::ErrorKind::Interrupted);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
