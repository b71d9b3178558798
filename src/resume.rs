//! The session a Codex run wrote, so codex-oss can say how to continue it locally.
//!
//! When its TUI ends, Codex prints "To continue this session, run: codex resume <id>";
//! `codex` there is the user's own Codex (or nothing), which resumes on the cloud. The
//! same session continues on the local model with `codex-oss resume <id>`. Codex writes
//! each session to `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl`; the
//! session of this run is the rollout written last since the run began.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::cli::{Session, CODEX_SUBCOMMANDS};

/// The id of the session Codex wrote to since `since`, if any.
pub fn session_since(codex_home: &Path, since: SystemTime) -> Option<String> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut pending = vec![codex_home.join("sessions")];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).into_iter().flatten().flatten();
        for (path, meta) in entries.filter_map(|e| Some((e.path(), e.metadata().ok()?))) {
            if meta.is_dir() {
                pending.push(path);
            } else if let Ok(modified) = meta.modified() {
                if modified >= since
                    && session_id(&path).is_some()
                    && newest.as_ref().is_none_or(|(time, _)| modified > *time)
                {
                    newest = Some((modified, path));
                }
            }
        }
    }
    newest.and_then(|(_, path)| session_id(&path))
}

/// `rollout-2026-12-04T16-21-26-01a241dc-4d11-7c32-a66a-68cad78c3f67.jsonl` -> the UUID.
fn session_id(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_prefix("rollout-")?.strip_suffix(".jsonl")?;
    let id = stem.get(stem.len().checked_sub(36)?..)?;
    let is_uuid = id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    is_uuid.then(|| id.to_owned())
}

/// True when the Codex arguments start an interactive session (the TUI, `resume`,
/// `fork`), the runs after which Codex names the session to continue.
pub fn is_interactive(codex_args: &[std::ffi::OsString]) -> bool {
    let first_word = codex_args
        .iter()
        .filter_map(|a| a.to_str())
        .find(|a| !a.starts_with('-'));
    let batch = |word: &str| CODEX_SUBCOMMANDS.contains(&(word, Session::Batch));
    !first_word.is_some_and(batch)
        && !codex_args
            .iter()
            .any(|a| a == "--help" || a == "-h" || a == "--version" || a == "-V")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn the_session_written_last_since_the_run_began() {
        let home = tempfile::tempdir().unwrap();
        let day = home.path().join("sessions/2026/12/04");
        std::fs::create_dir_all(&day).unwrap();
        let old =
            day.join("rollout-2026-12-04T10-00-00-11111111-1111-7111-8111-111111111111.jsonl");
        std::fs::write(&old, "{}").unwrap();
        let since = SystemTime::now() + std::time::Duration::from_secs(3600);
        assert_eq!(session_since(home.path(), since), None);

        let since = SystemTime::now() - std::time::Duration::from_secs(60);
        let new =
            day.join("rollout-2026-12-04T16-21-26-01a241dc-4d11-7c32-a66a-68cad78c3f67.jsonl");
        std::fs::write(&new, "{}").unwrap();
        std::fs::write(day.join("notes.jsonl"), "{}").unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&new)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(
            session_since(home.path(), since).as_deref(),
            Some("01a241dc-4d11-7c32-a66a-68cad78c3f67")
        );
        assert_eq!(session_since(&home.path().join("nowhere"), since), None);
    }

    #[test]
    fn only_interactive_runs_name_a_session() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(is_interactive(&args(&[])));
        assert!(is_interactive(&args(&[
            "-m",
            "gpt-oss:120b",
            "fix the test"
        ])));
        assert!(is_interactive(&args(&["resume", "--last"])));
        assert!(is_interactive(&args(&["fork"])));
        assert!(!is_interactive(&args(&["exec", "say hi"])));
        assert!(!is_interactive(&args(&["review"])));
        assert!(!is_interactive(&args(&["--help"])));
    }
}
