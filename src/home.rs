//! The codex-oss home (`CODEX_OSS_HOME`, default `~/.codex-oss`) and every path in it.
//!
//! One place resolves the home and derives the sub-paths, so that no other module
//! guesses at the layout. The home is created owner-only (0700): it holds the model
//! store, logs and the keys Ollama writes.
//!
//! A home is codex-oss's alone: it carries a mark (`.codex-oss-home`) written when
//! codex-oss makes it, a folder that already holds other files is refused (`claim`), and
//! whatever codex-oss removes there, it removes by the names it writes, never a folder
//! wholesale, so a user's files that end up inside are never deleted.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::platform::{self, Exposure};

/// The file that marks a folder as a home codex-oss made or took on (see `Home::claim`).
const MARK: &str = ".codex-oss-home";

/// Every name codex-oss writes at the top of its home.
const OWN_NAMES: [&str; 10] = [
    MARK,
    "config.toml",
    "ollama",
    "codex",
    "run",
    "logs",
    "models",
    "catalogs",
    "ollama-home",
    "gpu",
];

/// Where payloads being discarded go for a moment (`Home::discard_payload`).
const DISCARDED: &str = ".discarded-";

/// How many of a folder's other files an error names.
const FOREIGN_SHOWN: usize = 3;

/// Paths under the codex-oss home.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
    /// `OLLAMA_MODELS` as the user set it; `<home>/models` otherwise.
    models: Option<PathBuf>,
}

impl Home {
    /// The home at `root` (absolute), with the model store the user chose, if any.
    pub fn new(root: PathBuf, models: Option<PathBuf>) -> Home {
        Home { root, models }
    }

    /// `<root>/config.toml`: where the user's defaults are, before a `Home` exists.
    pub fn config_path(root: &Path) -> PathBuf {
        root.join("config.toml")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the versions of one unpacked payload live: `<home>/ollama/<version>-<hash>/`.
    pub fn payload_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The model store: `OLLAMA_MODELS` if the user set it, else `<home>/models`.
    pub fn models(&self) -> PathBuf {
        self.models.clone().unwrap_or_else(|| self.own_models())
    }

    /// codex-oss's own model store, `<home>/models`: the only one it ever deletes.
    pub fn own_models(&self) -> PathBuf {
        self.root.join("models")
    }

    /// Model catalogs written for Codex (see `catalog`).
    pub fn catalogs(&self) -> PathBuf {
        self.root.join("catalogs")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Locks and leases of running servers and unpacks.
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }

    /// HOME given to Ollama, so its key pair lands here and not in the user's ~/.ollama.
    pub fn ollama_home(&self) -> PathBuf {
        self.root.join("ollama-home")
    }

    /// Creates the home (0700) and the sub-directories every run needs, once it is
    /// sure that it is codex-oss's (see `claim`) and that nobody else controls it (see
    /// `secure`).
    pub fn ensure(&self) -> Result<()> {
        self.claim()?;
        self.secure()?;
        create_private_dir(&self.run(), "run")?;
        create_private_dir(&self.logs(), "logs")
    }

    /// Makes sure the home is codex-oss's before anything is written or removed in it. A
    /// folder that is missing or empty is made and marked; a marked one is used; an
    /// unmarked one (the home of an earlier codex-oss) is taken on and marked only when
    /// everything in it is something codex-oss writes. A folder holding anything else
    /// is refused: codex-oss would otherwise clean the user's files away with its own.
    pub fn claim(&self) -> Result<()> {
        let mark = self.root.join(MARK);
        if std::fs::symlink_metadata(&mark).is_ok_and(|meta| meta.is_file()) {
            return Ok(());
        }
        let foreign = self.foreign_entries();
        if !foreign.is_empty() {
            let mut shown: Vec<String> = foreign
                .iter()
                .take(FOREIGN_SHOWN)
                .map(|path| path.display().to_string())
                .collect();
            if foreign.len() > FOREIGN_SHOWN {
                shown.push(format!("and {} more", foreign.len() - FOREIGN_SHOWN));
            }
            bail!(
                "CODEX_OSS_HOME={} already holds files codex-oss did not make ({}): codex-oss keeps a home of its own, where it deletes what it wrote; set CODEX_OSS_HOME to a new or empty folder, or move those files out",
                self.root.display(),
                shown.join(", "),
            );
        }
        create_private_dir(&self.root, "codex-oss home")?;
        // A home that cannot be written to is reported by what needs to write there.
        let _ = std::fs::write(
            &mark,
            "This folder is a codex-oss home: codex-oss made it and may delete what it wrote here.\n",
        );
        Ok(())
    }

    /// What in the home codex-oss did not write (nothing when the home does not exist):
    /// names at its top that are not codex-oss's, and anything but codex-oss's own names
    /// in the folders it removes things from.
    fn foreign_entries(&self) -> Vec<PathBuf> {
        let mut foreign = Vec::new();
        for (path, name) in entries(&self.root) {
            if name.starts_with(DISCARDED) {
                continue;
            }
            let own_inside: fn(&str) -> bool = match name.as_str() {
                "ollama" | "codex" => is_own_entry,
                "logs" => is_own_log,
                "models" => |inside| matches!(inside, "blobs" | "manifests"),
                _ if OWN_NAMES.contains(&name.as_str()) => continue,
                _ => {
                    foreign.push(path);
                    continue;
                }
            };
            if !std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) {
                foreign.push(path);
                continue;
            }
            foreign.extend(
                entries(&path)
                    .into_iter()
                    .filter(|(_, inside)| !own_inside(inside))
                    .map(|(path, _)| path),
            );
        }
        foreign.sort();
        foreign
    }

    /// Refuses a home that another user owns (codex-oss runs programs from it). Where
    /// group or others may write, takes that away and unpacks the payloads again, since
    /// what is there may have been changed by someone else. A filesystem that ignores
    /// permissions (vfat, some network shares) gets a warning and is used as it is.
    pub fn secure(&self) -> Result<()> {
        // The directories codex-oss runs programs from or takes records from.
        let trusted = [
            self.root.clone(),
            self.payload_dir("ollama"),
            self.payload_dir("codex"),
            self.run(),
        ];
        let mut tightened = false;
        for dir in trusted {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            match platform::exposure(&meta) {
                None => {}
                Some(Exposure::OtherOwner(uid)) => bail!(
                    "{} belongs to another user ({}), and codex-oss runs programs from it: set CODEX_OSS_HOME to a directory of your own, or make it yours (chown -R)",
                    dir.display(),
                    platform::user_name(uid)
                ),
                Some(Exposure::Writable(mode)) => {
                    platform::restrict_to_owner(&dir, &meta).with_context(|| {
                        format!(
                            "{} is writable by other users (mode {mode:o}) and could not be made private: chmod 700 it, or set CODEX_OSS_HOME elsewhere",
                            dir.display()
                        )
                    })?;
                    let still_open = std::fs::metadata(&dir)
                        .is_ok_and(|meta| platform::exposure(&meta).is_some());
                    if still_open {
                        caution!(
                            "{} is writable by other users and its filesystem ignores permissions: anyone who can write there can change the programs codex-oss runs",
                            dir.display()
                        );
                        break;
                    }
                    tightened = true;
                }
            }
        }
        if tightened {
            caution!(
                "{} was writable by other users: it is private now, and the embedded programs are unpacked again",
                self.root.display()
            );
            for name in ["ollama", "codex"] {
                self.discard_payload(name)?;
            }
        }
        Ok(())
    }

    /// Moves every unpacked version of a payload (and the leftovers of unpacking) out
    /// of the way and deletes it; anything else in the payload's folder stays.
    fn discard_payload(&self, name: &str) -> Result<()> {
        for (path, entry) in entries(&self.payload_dir(name)) {
            if !is_own_entry(&entry) {
                continue;
            }
            let aside = self
                .root
                .join(format!("{DISCARDED}{name}-{entry}-{}", std::process::id()));
            std::fs::rename(&path, &aside)
                .and_then(|()| match std::fs::symlink_metadata(&aside) {
                    Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&aside),
                    _ => std::fs::remove_file(&aside),
                })
                .with_context(|| {
                    format!("could not remove {}: delete it by hand", path.display())
                })?;
        }
        Ok(())
    }
}

/// True for a log codex-oss writes: `ollama-<unix time>-<pid>.log` (see `server`).
pub fn is_own_log(name: &str) -> bool {
    let number = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix("ollama-")
        .and_then(|rest| rest.strip_suffix(".log"))
        .and_then(|stem| stem.split_once('-'))
        .is_some_and(|(secs, pid)| number(secs) && number(pid))
}

/// True for a name codex-oss writes in a payload's folder (`<home>/ollama`, `<home>/codex`): an unpacked copy
/// (`<version>-<hash12>`), its lease, or the leftover of an interrupted unpack.
/// Nothing else there is codex-oss's to remove.
pub fn is_own_entry(name: &str) -> bool {
    name.starts_with(".tmp-")
        || name.starts_with(".trash-")
        || is_version_dir(name)
        || name
            .strip_prefix('.')
            .and_then(|rest| rest.strip_suffix(".lease"))
            .is_some_and(is_version_dir)
}

/// `<version>-<first 12 hex digits of the payload hash>`, as `payload::Payload::dir_name` makes it.
pub fn is_version_dir(name: &str) -> bool {
    name.rsplit_once('-').is_some_and(|(version, hash)| {
        !version.is_empty()
            && !version.starts_with('.')
            && hash.len() == 12
            && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The entries of `dir` with their names (none when it cannot be read).
fn entries(dir: &Path) -> Vec<(PathBuf, String)> {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries
        .map(|e| (e.path(), e.file_name().to_string_lossy().into_owned()))
        .collect()
}

/// Creates `dir` (and parents) with mode 0700 on Unix; the error names the path and what to do.
pub fn create_private_dir(dir: &Path, label: &str) -> Result<()> {
    make_private_dir(dir).with_context(|| {
        format!(
            "could not create the {label} directory {}: make it writable or set CODEX_OSS_HOME to a writable directory",
            dir.display()
        )
    })
}

/// Creates `dir` (and parents) with mode 0700 on Unix, leaving the message to the caller.
pub fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    platform::private_dir_builder().create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_codex_oss_names_are_its_own() {
        // (name, a log of codex-oss's, an entry of codex-oss's in a payload's folder)
        for (name, log, entry) in [
            ("ollama-1700000000-42.log", true, false),
            ("notes.txt", false, false),
            ("ollama.log", false, false),
            ("ollama-1-.log", false, false),
            ("ollama-a-1.log", false, false),
            ("x-1-2.log", false, false),
            ("0.32.15-e29129a33be1", false, true),
            (".0.32.15-e29129a33be1.lease", false, true),
            (".tmp-Ab12", false, true),
            (".trash-x", false, true),
            ("myproject", false, false),
            ("0.32.15", false, false),
            ("v-E29129A33BE1", false, false),
            (".myproject.lease", false, false),
            ("-e29129a33be1", false, false),
        ] {
            assert_eq!(
                (is_own_log(name), is_own_entry(name)),
                (log, entry),
                "{name}"
            );
        }
    }
}
