//! What makes a downloaded release file trustworthy: its minisign signature by the
//! codex-oss release key, over the exact bytes downloaded, for this very file and release.
//!
//! The key is compiled in (build.rs writes it from `keys/update.pub` or
//! `CODEX_OSS_UPDATE_PUBLIC_KEY`). Signatures must be prehashed (minisign's default
//! since 0.10), so a file of any size is checked in one streaming pass (its SHA-256 is the
//! download's to check, `download`). The trusted comment, which the signature covers, must read
//! `codex-oss <version> <file name>` (`scripts/sign-release.sh` writes it so).

use std::io::{self, Read};

use minisign_verify::{PublicKey, Signature};

/// The release key's base64 line, as build.rs checked it.
static PUBLIC_KEY: &str = include_str!(concat!(env!("OUT_DIR"), "/update-public-key.b64"));

fn release_key() -> PublicKey {
    PublicKey::from_base64(PUBLIC_KEY.trim()).expect("build.rs checked the update public key")
}

/// The file being checked: its name in the release, and the release's version.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub file: &'a str,
    pub version: &'a str,
}

/// Why a file was refused. Each message says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "{file} of codex-oss {version} does not match its published SHA-256 (expected {expected}, got {actual}): the download is damaged or was altered; nothing was installed: run `codex-oss update` again"
    )]
    Checksum {
        file: String,
        version: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{file}.sha256 of codex-oss {version} is not a SHA-256 checksum of {file}: nothing was installed: report it at {issues}",
        issues = super::issues_page()
    )]
    ChecksumFile { file: String, version: String },
    #[error(
        "{file}.minisig of codex-oss {version} is not a minisign signature codex-oss accepts ({detail}): nothing was installed: report it at {issues}",
        issues = super::issues_page()
    )]
    SignatureFile {
        file: String,
        version: String,
        detail: String,
    },
    #[error(
        "{file} of codex-oss {version} is signed with another key than the codex-oss release key this codex-oss trusts: nothing was installed: do not install it by hand, and report it at {issues}",
        issues = super::issues_page()
    )]
    OtherKey { file: String, version: String },
    #[error(
        "the signature of {file} (codex-oss {version}) does not verify with the codex-oss release key: the file was altered or does not come from codex-oss; nothing was installed: do not install it by hand, and report it at {issues}",
        issues = super::issues_page()
    )]
    BadSignature { file: String, version: String },
    #[error(
        "the signature of {file} was made for `{comment}`, not for `{expected}`: the server sent a file of another release or another system in its place; nothing was installed: report it at {issues}",
        issues = super::issues_page()
    )]
    OtherFile {
        file: String,
        comment: String,
        expected: String,
    },
    #[error("could not read the downloaded {file} ({source}): nothing was installed: run `codex-oss update` again")]
    Io { file: String, source: io::Error },
}

/// Checks `data` (read to its end) against its `.minisig` text, with the release key.
pub fn check(
    mut data: impl Read,
    subject: Subject<'_>,
    signature_text: &str,
) -> Result<(), Refused> {
    let signature_error = |detail: String| Refused::SignatureFile {
        file: subject.file.to_owned(),
        version: subject.version.to_owned(),
        detail,
    };
    let signature =
        Signature::decode(signature_text).map_err(|e| signature_error(e.to_string()))?;
    let key = release_key();
    let mut verifier = key.verify_stream(&signature).map_err(|e| match e {
        minisign_verify::Error::UnexpectedKeyId => Refused::OtherKey {
            file: subject.file.to_owned(),
            version: subject.version.to_owned(),
        },
        other => signature_error(other.to_string()),
    })?;

    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = match data.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(Refused::Io {
                    file: subject.file.to_owned(),
                    source,
                })
            }
        };
        verifier.update(&buffer[..n]);
    }

    verifier.finalize().map_err(|_| Refused::BadSignature {
        file: subject.file.to_owned(),
        version: subject.version.to_owned(),
    })?;
    // Only now is the trusted comment known to be the signer's.
    let expected = format!("codex-oss {} {}", subject.version, subject.file);
    if signature.trusted_comment() != expected {
        return Err(Refused::OtherFile {
            file: subject.file.to_owned(),
            comment: signature.trusted_comment().to_owned(),
            expected,
        });
    }
    Ok(())
}

/// The SHA-256 a release's `.sha256` text gives for `subject`'s file.
pub fn published_sha256(text: &str, subject: Subject<'_>) -> Result<String, Refused> {
    parse_sha256(text, subject.file).ok_or_else(|| Refused::ChecksumFile {
        file: subject.file.to_owned(),
        version: subject.version.to_owned(),
    })
}

/// The digest of a `.sha256` file (`<hex>`, `<hex>  <file>` or cargo-dist's
/// `<hex> *<file>`), provided the file it names, if any, is `file`.
fn parse_sha256(text: &str, file: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    let digest = words.next()?.to_ascii_lowercase();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match words.next() {
        None => Some(digest),
        Some(name) if name.trim_start_matches('*') == file => Some(digest),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_key_parses() {
        let _ = release_key();
    }

    #[test]
    fn sha256_files_in_every_usual_shape() {
        let hex = "a".repeat(64);
        assert_eq!(parse_sha256(&hex, "f.tar.xz"), Some(hex.clone()));
        assert_eq!(
            parse_sha256(&format!("{hex} *f.tar.xz\n"), "f.tar.xz"),
            Some(hex.clone())
        );
        assert_eq!(
            parse_sha256(&format!("{}  f.tar.xz", hex.to_uppercase()), "f.tar.xz"),
            Some(hex.clone())
        );
        assert_eq!(parse_sha256(&format!("{hex} *g.tar.xz"), "f.tar.xz"), None);
        assert_eq!(parse_sha256("abc *f.tar.xz", "f.tar.xz"), None);
        assert_eq!(parse_sha256("", "f.tar.xz"), None);
    }

    /// A genuine minisign signature (made with `minisign -S` and a throwaway key) that the
    /// release key did not make: refused as another key's.
    #[test]
    fn a_signature_by_another_key_is_refused() {
        let signature = "untrusted comment: signature from minisign secret key
RUS27ZNefB2zHFqokoBmVVUzfFyRAaRkNAqmWGEBlEswEP42SfLz6EBN5yq5ecYUevaGW26PJ1NvjX3bl1bLOicrFiEusuitpgk=
trusted comment: codex-oss 0.2.0 test
5uZn4nYBdtB+ca2MXaeTFXHSrqX/SOBHjE73BlOVAy35wyZM6IE7ljvx0yxO0SW5vUdUuPfiL69A/KATptpPDA==
";
        let subject = Subject {
            file: "test",
            version: "0.2.0",
        };
        let err = check(&b"test"[..], subject, signature).unwrap_err();
        assert!(matches!(err, Refused::OtherKey { .. }), "{err}");
    }

    #[test]
    fn garbage_is_no_signature() {
        let subject = Subject {
            file: "f",
            version: "0.2.0",
        };
        let err = check(&b"x"[..], subject, "not a signature").unwrap_err();
        assert!(matches!(err, Refused::SignatureFile { .. }), "{err}");
        assert!(
            err.to_string().contains("f.minisig of codex-oss 0.2.0"),
            "{err}"
        );
    }
}
