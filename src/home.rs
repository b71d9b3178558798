//! The codex-oss home (`CODEX_OSS_HOME`, default `~/.codex-oss`) and every path in it.
//!
//! One place resolves the home and derives the sub-paths, so that no other module
//! guesses at the layout. The home is created owner-only (0700): it holds the model
//! store, logs and the keys Ollama writes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::platform::{self, Exposure};

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
    /// sure that nobody else controls it (see `secure`).
    pub fn ensure(&self) -> Result<()> {
        create_private_dir(&self.root, "codex-oss home")?;
        self.secure()?;
        for (dir, label) in [(self.run(), "run"), (self.logs(), "logs")] {
            create_private_dir(&dir, label)?;
        }
        Ok(())
    }

    /// The directories codex-oss runs programs from or takes records from.
    fn trusted_dirs(&self) -> [PathBuf; 4] {
        [
            self.root.clone(),
            self.payload_dir("ollama"),
            self.payload_dir("codex"),
            self.run(),
        ]
    }

    /// Refuses a home that another user owns (codex-oss runs programs from it). Where
    /// group or others may write, takes that away and unpacks the payloads again, since
    /// what is there may have been changed by someone else. A filesystem that ignores
    /// permissions (vfat, some network shares) gets a warning and is used as it is.
    pub fn secure(&self) -> Result<()> {
        let mut tightened = false;
        for dir in self.trusted_dirs() {
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
                        crate::ui::warn(format!(
                            "{} is writable by other users and its filesystem ignores permissions: anyone who can write there can change the programs codex-oss runs",
                            dir.display()
                        ));
                        break;
                    }
                    tightened = true;
                }
            }
        }
        if tightened {
            crate::ui::warn(format!(
                "{} was writable by other users: it is private now, and the embedded programs are unpacked again",
                self.root.display()
            ));
            for name in ["ollama", "codex"] {
                self.discard_payload(name)?;
            }
        }
        Ok(())
    }

    /// Moves every unpacked version of a payload out of the way and deletes it.
    fn discard_payload(&self, name: &str) -> Result<()> {
        let dir = self.payload_dir(name);
        if !dir.exists() {
            return Ok(());
        }
        let aside = self
            .root
            .join(format!(".discarded-{name}-{}", std::process::id()));
        std::fs::rename(&dir, &aside)
            .and_then(|()| std::fs::remove_dir_all(&aside))
            .with_context(|| format!("could not remove {}: delete it by hand", dir.display()))
    }
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
