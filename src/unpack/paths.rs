//! Which entries of an archive are taken and where they go, and the rules every path
//! and link must keep: plain relative paths, nothing written through a link, links that
//! stay inside and never pass through another link.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::home::make_private_dir;
use crate::platform;

/// Which entries of an archive to unpack.
#[derive(Clone, Copy, Debug)]
pub enum Take {
    /// Every entry, at its own path: a payload build/pack.rs made (plain paths only).
    All,
    /// The folders named `<prefix>*` in the folder `under` and what they hold, at the
    /// same path (`lib/ollama/cuda_*` of an Ollama release); the rest is skipped unread.
    /// A release archive may wrap everything in one folder, start with `./`, or
    /// separate with `\`.
    Folders {
        under: &'static [&'static str],
        prefix: &'static str,
    },
}

impl Take {
    /// The parts of the path `raw` is unpacked at, `None` for an entry not taken, or why
    /// the path is unsafe.
    pub fn parts(&self, raw: &str) -> Result<Option<Vec<String>>, String> {
        match *self {
            Take::All => plain_relative(raw).map(Some),
            Take::Folders { under, prefix } => {
                let parts: Vec<&str> = raw
                    .split(['/', '\\'])
                    .filter(|p| !p.is_empty() && *p != ".")
                    .collect();
                let n = under.len();
                let start = (0..=1).find(|&skip| {
                    parts.len() > skip + n
                        && parts[skip..skip + n] == *under
                        && parts[skip + n].starts_with(prefix)
                });
                let Some(start) = start else {
                    return Ok(None);
                };
                let rest = &parts[start..];
                if raw.starts_with('/') || rest.iter().any(|p| *p == ".." || p.contains(':')) {
                    return Err(format!("unsafe path in the archive: {raw}"));
                }
                Ok(Some(rest.iter().map(|p| (*p).to_owned()).collect()))
            }
        }
    }

    /// How many leading parts of a path no link may climb above: a link stays inside
    /// the root (`All`), or inside its own taken folder.
    fn floor(&self) -> usize {
        match self {
            Take::All => 0,
            Take::Folders { under, .. } => under.len() + 1,
        }
    }

    /// The taken folder a recorded path belongs to (`lib/ollama/cuda_v13`), or its first
    /// part for `All`.
    pub fn folder_of(&self, path: &str) -> String {
        let depth = self.floor().max(1);
        path.split('/').take(depth).collect::<Vec<_>>().join("/")
    }

    /// The taken folders that are in `root` now, recorded or not.
    pub fn folders_in(&self, root: &Path) -> Vec<String> {
        let Take::Folders { under, prefix } = *self else {
            return Vec::new();
        };
        let dir = under
            .iter()
            .fold(root.to_path_buf(), |dir, part| dir.join(part));
        let mut found: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(prefix))
            .map(|name| format!("{}/{name}", under.join("/")))
            .collect();
        found.sort();
        found
    }

    /// What an archive without anything to take lacks.
    pub fn nothing(&self) -> String {
        match self {
            Take::All => "no files".to_owned(),
            Take::Folders { under, prefix } => {
                format!("it holds no {}/{prefix}* folder", under.join("/"))
            }
        }
    }

    /// A link at `parts` pointing at `target` must be relative and stay inside.
    pub fn check_link(&self, parts: &[String], target: &str) -> Result<(), String> {
        let outside = || format!("link {} points outside: {target}", parts.join("/"));
        // Relative, no drive or backslash, never climbing above the floor.
        if target.is_empty() || target.starts_with('/') || target.contains(['\\', ':']) {
            return Err(outside());
        }
        let mut depth = parts.len().saturating_sub(1 + self.floor());
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => depth = depth.checked_sub(1).ok_or_else(outside)?,
                _ => depth += 1,
            }
        }
        Ok(())
    }
}

/// The parts of a plain relative path, or why it is not one.
fn plain_relative(rel: &str) -> Result<Vec<String>, String> {
    let parts: Vec<&str> = rel.trim_end_matches('/').split('/').collect();
    let unsafe_part = |part: &&str| {
        part.is_empty() || *part == "." || *part == ".." || part.contains(['\\', ':'])
    };
    if rel.is_empty() || parts.iter().any(unsafe_part) {
        return Err(format!("unsafe path {rel}"));
    }
    Ok(parts.into_iter().map(str::to_owned).collect())
}

/// The links an archive has made so far and the folders their targets pass through, so
/// that no link's target goes through another link. A lexical check alone is not
/// enough: after `a -> .`, the target `a/a/a/../../..` reads as inside but climbs
/// three folders above it, since `..` leaves a link's target, not the link.
#[derive(Debug, Default)]
pub struct Links {
    made: HashSet<Vec<String>>,
    passed: HashSet<Vec<String>>,
}

impl Links {
    /// Admits the link at `parts` (relative to the root) pointing at `target`, or says
    /// why not: its target passes through a link, or an earlier target passes where
    /// it stands. Its target's last step may be a link (`libx.so -> libx.so.0`).
    pub fn admit(&mut self, parts: &[String], target: &str) -> Result<(), String> {
        let rel = parts.join("/");
        if self.passed.contains(parts) {
            return Err(format!(
                "link {rel}: the target of another link passes through it"
            ));
        }
        let steps: Vec<&str> = target
            .split('/')
            .filter(|step| !step.is_empty() && *step != ".")
            .collect();
        let mut at: Vec<String> = parts[..parts.len().saturating_sub(1)].to_vec();
        let mut passed = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            if *step == ".." {
                at.pop();
            } else {
                at.push((*step).to_owned());
            }
            if i + 1 < steps.len() {
                if self.made.contains(&at) {
                    return Err(format!(
                        "link {rel} points through another link ({}): {target}",
                        at.join("/")
                    ));
                }
                passed.push(at.clone());
            }
        }
        self.passed.extend(passed);
        self.made.insert(parts.to_vec());
        Ok(())
    }
}

/// Creates the folders `parts` below `root`, one at a time, refusing to go through
/// anything that is not a folder (a link the archive made, say). `made` remembers the
/// folders already there, so each is looked at once. Returns the deepest.
pub fn create_dirs_within(
    root: &Path,
    parts: &[String],
    made: &mut HashSet<PathBuf>,
) -> io::Result<PathBuf> {
    let mut dir = root.to_path_buf();
    for part in parts {
        dir.push(part);
        if made.contains(&dir) {
            continue;
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a directory", dir.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => make_private_dir(&dir)?,
            Err(e) => return Err(e),
        }
        made.insert(dir.clone());
    }
    Ok(dir)
}

/// Opens the file an earlier entry made at `parts` for reading, refusing to follow a
/// link anywhere on the way: a hard link names a file of the archive's, not what a
/// link points at.
pub fn open_earlier(root: &Path, parts: &[String]) -> Result<std::fs::File, String> {
    let rel = parts.join("/");
    let mut path = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{rel}: {e}"))?;
        let fits = if i + 1 < parts.len() {
            meta.is_dir()
        } else {
            meta.is_file()
        };
        if !fits {
            return Err(format!(
                "a hard link to {rel}, which is not a file of the archive"
            ));
        }
    }
    platform::open_no_follow(&path).map_err(|e| format!("{rel}: {e}"))
}
