//! `codex-oss --version [--verbose]`: the launcher's version and what it embeds, and
//! where the licence texts of all of it are.

use std::path::{Path, PathBuf};

use crate::env_vars::EnvVars;
use crate::payload;

/// The notices of everything a release redistributes (Ollama, Codex and its helpers, the
/// Rust crates), as the archives, the MSI and Homebrew install it.
const NOTICES: &str = "THIRD-PARTY-NOTICES.txt";

pub fn print(verbose: bool) {
    out!("codex-oss {}", env!("CARGO_PKG_VERSION"));
    let embedded = [
        ("ollama", EnvVars::CODEX_OSS_OLLAMA, payload::ollama()),
        ("codex", EnvVars::CODEX_OSS_CODEX, payload::codex()),
    ];
    for (name, var, payload) in embedded {
        match payload {
            Some(p) => out!("{name} {} (embedded)", p.version),
            None => out!("{name} not embedded (uses {var} or `{name}` on PATH)"),
        }
    }
    if verbose {
        out!("license: Apache-2.0");
        match notices_beside(std::env::current_exe().ok().as_deref()) {
            Some(path) => out!("third-party notices: {}", path.display()),
            None => out!(
                "third-party notices: {}/blob/v{}/{NOTICES} (not installed beside this codex-oss)",
                env!("CARGO_PKG_REPOSITORY"),
                env!("CARGO_PKG_VERSION")
            ),
        }
    }
}

/// The notices file next to the executable (archives, MSI, shell installer copies), else
/// in `../share/codex-oss/` of its real location (Homebrew).
fn notices_beside(exe: Option<&Path>) -> Option<PathBuf> {
    let exe = exe?;
    let real = exe.canonicalize().unwrap_or_else(|_| exe.to_path_buf());
    [exe.to_path_buf(), real]
        .into_iter()
        .filter_map(|path| path.parent().map(Path::to_path_buf))
        .flat_map(|dir| {
            [
                dir.join(NOTICES),
                dir.join("../share/codex-oss").join(NOTICES),
            ]
        })
        .find(|candidate| candidate.is_file())
}
