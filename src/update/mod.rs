//! The engine of `codex-oss update` (the command itself is `commands::update`).
//!
//! Theory of operation. Releases are GitHub releases of the repository Cargo.toml names,
//! read through GitHub's releases API (`CODEX_OSS_UPDATE_API_URL` points at another server
//! with the same API; `self_update`'s GitHub backend speaks it). A release publishes, for each
//! target, the cargo-dist archive `codex-oss-<target>.tar.xz` (`.zip` on Windows) with its
//! `.sha256`, and beside every archive a detached minisign signature `<archive>.minisig`,
//! plus `codex-oss-manifest.json` (the release's version and the Ollama and Codex it
//! embeds), signed the same way (`scripts/sign-release.sh`, run by the release workflow).
//!
//! Nothing from a release is trusted until its signature verifies with the public key
//! compiled into this binary (build.rs: `keys/update.pub` or `CODEX_OSS_UPDATE_PUBLIC_KEY`;
//! there is no run-time override). A signature's trusted comment, which the signature
//! covers, names the release version and the file (`codex-oss 0.2.0
//! codex-oss-x86_64-unknown-linux-gnu.tar.xz`), so an archive of another release or another
//! target served in its place is refused too. The `.sha256` comes from the same place as the
//! archive, so it only tells a damaged download from a forged one.
//!
//! The archive is downloaded into a temporary directory and verified, byte for byte as
//! downloaded, before anything is extracted; the executable it holds must run
//! (`--version`) before it replaces the running one (`install`). Any failure up to the final
//! rename leaves the installed codex-oss as it was.
//!
//! Which copies may be replaced at all (`location`): not Homebrew's (`brew upgrade`), not
//! the MSI's (a newer MSI), and only where this user can write.

pub mod location;

#[cfg(feature = "self-update")]
mod install;
#[cfg(feature = "self-update")]
mod releases;
#[cfg(feature = "self-update")]
mod verify;

#[cfg(feature = "self-update")]
pub use install::{install, refresh_receipt};
#[cfg(feature = "self-update")]
pub use releases::{Manifest, Source};

pub const CURRENT_VERSION: &str = env!("CARGO_PKG_VERSION");

const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

/// The release page users are sent to.
pub fn releases_page() -> String {
    format!("{}/releases", REPOSITORY.trim_end_matches('/'))
}

/// Where to report a release that fails verification.
pub fn issues_page() -> String {
    format!("{}/issues", REPOSITORY.trim_end_matches('/'))
}

/// The version a user typed (`0.2.0` or `v0.2.0`).
pub fn parse_version(text: &str) -> anyhow::Result<semver::Version> {
    let trimmed = text.trim();
    semver::Version::parse(trimmed.strip_prefix('v').unwrap_or(trimmed)).map_err(|_| {
        anyhow::anyhow!(
            "`{text}` is not a codex-oss version: give one such as 0.2.0 (the versions are listed at {})",
            releases_page()
        )
    })
}

pub fn current_version() -> semver::Version {
    semver::Version::parse(CURRENT_VERSION).expect("Cargo.toml's version is semver")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_taken_with_or_without_a_v() {
        assert_eq!(parse_version("0.2.0").unwrap().to_string(), "0.2.0");
        assert_eq!(parse_version(" v1.2.3 ").unwrap().to_string(), "1.2.3");
        let err = parse_version("latest").unwrap_err().to_string();
        assert!(err.contains("`latest` is not a codex-oss version"), "{err}");
        assert!(err.contains("/releases"), "{err}");
    }

    #[test]
    fn the_current_version_parses() {
        assert_eq!(current_version().to_string(), CURRENT_VERSION);
    }
}
