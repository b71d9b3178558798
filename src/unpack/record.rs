//! The record of one unpacked file or link: what was written, so that a later run can
//! tell whether it is still there as it was (and repair what is not).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::files::{mtime_of, sha256_file};
use crate::platform;

/// One file or link, at its path relative to the folder it was unpacked into.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    pub path: String,
    pub size: u64,
    /// The mode the filesystem kept (records of the GPU libraries made before the one
    /// unpacker have none: their executable bit is not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default)]
    pub sha256: String,
    #[serde(default)]
    pub mtime_ns: u128,
    /// For a symbolic link (Ollama's `libggml-base.so -> libggml-base.so.0`...): its target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl FileRecord {
    /// True when the file below `root` is as it was unpacked: same size and executable
    /// bit, and either the same mtime or, touched since, the same content.
    pub fn is_intact(&self, root: &Path) -> bool {
        let path = root.join(&self.path);
        if let Some(target) = &self.link {
            // Windows has no links in its archives: a copy stands there, and it is
            // enough that it exists.
            return if cfg!(unix) {
                std::fs::read_link(&path).is_ok_and(|t| t == Path::new(target))
            } else {
                path.exists()
            };
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            return false;
        };
        if meta.len() != self.size {
            return false;
        }
        // The executable bit only: it is what every filesystem keeps (some ignore chmod).
        if self
            .mode
            .is_some_and(|mode| platform::has_exec_bit(&meta) != (mode & 0o100 != 0))
        {
            return false;
        }
        if mtime_of(&meta) == self.mtime_ns {
            return true;
        }
        sha256_file(&path).is_ok_and(|hash| hash == self.sha256)
    }
}
