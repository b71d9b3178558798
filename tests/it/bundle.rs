//! The bundle as a user sees it: the embedded payloads (the real pinned Codex CLI from
//! npm and the stand-in Ollama), unpacked by `codex-oss doctor` into `CODEX_OSS_HOME`.
//!
//! Covers `--version`, a first unpack and what it leaves on disk, 8 simultaneous first
//! runs, repair of damaged files, removal of unused versions (and keeping a leased
//! one), and the errors on a full or read-only home. The last two need a small or
//! read-only filesystem: they mount a tmpfs inside `unshare` (a user + mount
//! namespace, so they also run unprivileged).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::support::{
    assert_user_sees, fs_read, run, version_dirs, Finished, Running, Scratch, STEP,
};

const OLLAMA_VERSION: &str = "0.32.15";
const MANIFEST: &str = ".codex-oss-manifest.json";

pub(crate) fn doctor(scratch: &Scratch) -> Finished {
    let mut cmd = scratch.codex_oss();
    cmd.arg("doctor");
    run(cmd)
}

fn assert_success(out: &Finished, what: &str) {
    assert!(out.status.success(), "{what} failed:\n{}", out.text());
}

/// Every regular file and symlink under `dir` (dot entries included), relative, with
/// mode, content hash and mtime: what "byte-for-byte untouched" compares.
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, String, i64, i64)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, String, i64, i64)>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if meta.is_dir() {
                out.insert(
                    format!("{rel}/"),
                    (meta.mode() & 0o7777, String::new(), 0, 0),
                );
                walk(root, &path, out);
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap().to_string_lossy().into_owned();
                out.insert(rel, (0, target, 0, 0));
            } else {
                out.insert(
                    rel,
                    (
                        meta.mode() & 0o7777,
                        sha256(&path),
                        meta.mtime(),
                        meta.mtime_nsec(),
                    ),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn sha256(path: &Path) -> String {
    let mut file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// Names in a payload's parent directory left by an interrupted or failed unpack.
fn leftovers(home: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for name in ["ollama", "codex"] {
        let Ok(entries) = fs::read_dir(home.join(name)) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with(".tmp-") || file.starts_with(".trash-") {
                found.push(format!("{name}/{file}"));
            }
        }
    }
    found
}

/// The npm package the build embedded (scripts/fixtures.sh exports its path).
fn codex_vendor() -> Option<PathBuf> {
    std::env::var_os("CODEX_OSS_TEST_CODEX_VENDOR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
}

fn run_version(executable: &Path) -> Finished {
    let mut cmd = Command::new(executable);
    cmd.arg("--version")
        // The stand-in Ollama asks a server for its version; make sure none answers.
        .env("OLLAMA_HOST", "127.0.0.1:1");
    run(cmd)
}

fn assert_codex_runs(codex_dir: &Path) {
    let out = run_version(&codex_dir.join("bin/codex"));
    assert_success(&out, "unpacked bin/codex --version");
    assert!(
        out.stdout
            .contains(&format!("codex-cli {}", crate::support::pinned_codex())),
        "{}",
        out.text()
    );
}

#[test]
fn version_names_the_launcher_and_both_embedded_versions() {
    let scratch = Scratch::new();
    let mut cmd = scratch.codex_oss();
    cmd.arg("--version");
    let out = run(cmd);
    assert_success(&out, "codex-oss --version");
    assert!(
        out.stdout
            .contains(&format!("codex-oss {}\n", env!("CARGO_PKG_VERSION"))),
        "{}",
        out.text()
    );
    assert_user_sees!(&scratch, "version", out.stdout);
    // Printing versions must not cost a 300 MB unpack.
    assert!(
        !scratch.oss_home().join("codex").exists(),
        "--version unpacked Codex"
    );
}

#[test]
fn doctor_unpacks_runnable_codex_and_trimmed_ollama_into_a_private_home() {
    let scratch = Scratch::new();
    let out = doctor(&scratch);
    assert_success(&out, "codex-oss doctor");
    assert_user_sees!(&scratch, "doctor_on_an_empty_home", out.stdout);
    let stdout = out.stdout;

    let home = scratch.oss_home();
    let mode = fs::metadata(&home).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700, "CODEX_OSS_HOME is mode {mode:o}, not 0700");

    // Codex: its whole package layout, and the binary runs from there.
    let codex = scratch.unpacked("codex");
    assert!(
        codex
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{}-", crate::support::pinned_codex())),
        "codex dir {} is not named after the version",
        codex.display()
    );
    let codex_exe = codex.join("bin/codex");
    assert!(
        stdout.contains(&codex_exe.display().to_string()),
        "doctor does not name {}:\n{stdout}",
        codex_exe.display()
    );
    assert_codex_runs(&codex);
    for (file, executable) in [
        ("codex-package.json", false),
        ("codex-path/rg", true),
        ("codex-resources/bwrap", true),
        ("bin/codex-code-mode-host", true),
    ] {
        let meta = fs::metadata(codex.join(file))
            .unwrap_or_else(|e| panic!("unpacked codex lacks {file}: {e}"));
        assert_eq!(
            meta.mode() & 0o111 != 0,
            executable,
            "{file} has mode {:o}",
            meta.mode()
        );
    }
    if let Some(vendor) = codex_vendor() {
        let ours = snapshot(&codex);
        // All of the npm package but the voice host, which codex-oss leaves out.
        assert!(
            vendor.join("codex-resources/voice").is_dir(),
            "the npm package has no voice host any more: drop its exclusion in build/archive.rs"
        );
        assert!(!codex.join("codex-resources/voice").exists());
        for (rel, (mode, hash, ..)) in snapshot(&vendor) {
            if rel.ends_with('/') || rel.starts_with("codex-resources/voice") {
                continue;
            }
            let (our_mode, our_hash, ..) = ours
                .get(&rel)
                .unwrap_or_else(|| panic!("{rel} of the npm package is missing"));
            assert_eq!(
                (our_mode, our_hash),
                (&mode, &hash),
                "{rel} differs from the npm package"
            );
        }
    }

    // Ollama: the executable, CPU backends and runner; no GPU libraries.
    let ollama = scratch.unpacked("ollama");
    let ollama_exe = ollama.join("bin/ollama");
    assert!(
        stdout.contains(&ollama_exe.display().to_string()),
        "doctor does not name {}:\n{stdout}",
        ollama_exe.display()
    );
    let out = run_version(&ollama_exe);
    assert_success(&out, "unpacked bin/ollama --version");
    assert!(
        out.stderr.contains(OLLAMA_VERSION) || out.stdout.contains(OLLAMA_VERSION),
        "{}",
        out.text()
    );
    // The release's library links, kept as links.
    let link = |name: &str| fs::read_link(ollama.join("lib/ollama").join(name)).ok();
    assert_eq!(
        link("libggml-base.so"),
        Some(PathBuf::from("libggml-base.so.0"))
    );
    assert_eq!(
        link("libggml-base.so.0"),
        Some(PathBuf::from("libggml-base.so.0.0.0"))
    );
    assert!(ollama.join("lib/ollama/libggml-base.so").is_file());
    assert!(ollama.join("lib/ollama/libggml-cpu-x64.so").is_file());
    let runner =
        fs::metadata(ollama.join("lib/ollama/llama-server")).expect("llama-server runner unpacked");
    assert!(runner.mode() & 0o111 != 0, "llama-server is not executable");
    assert!(
        !ollama.join("lib/ollama/cuda_v12").exists(),
        "GPU libraries were embedded"
    );
    assert_eq!(leftovers(&home), Vec::<String>::new());
}

#[test]
fn eight_simultaneous_first_runs_leave_one_intact_copy() {
    let scratch = Scratch::new();
    let doctors: Vec<Running> = (0..8)
        .map(|_| {
            let mut cmd = scratch.codex_oss();
            cmd.arg("doctor");
            Running::start(cmd)
        })
        .collect();
    for doctor in doctors {
        assert_success(&doctor.finish(STEP), "one of 8 simultaneous doctors");
    }
    let home = scratch.oss_home();
    for name in ["ollama", "codex"] {
        let dirs = version_dirs(&home.join(name));
        assert_eq!(dirs.len(), 1, "{name}: {dirs:?}");
    }
    assert_eq!(leftovers(&home), Vec::<String>::new());
    let codex = scratch.unpacked("codex");
    assert_codex_runs(&codex);
    if let Some(vendor) = codex_vendor() {
        assert_eq!(
            sha256(&codex.join("bin/codex")),
            sha256(&vendor.join("bin/codex"))
        );
    }

    // The stamp matches: the next run unpacks nothing.
    let manifest = codex.join(MANIFEST);
    let before = fs::metadata(&manifest).unwrap();
    let exe_before = fs::metadata(codex.join("bin/codex")).unwrap();
    assert_success(&doctor(&scratch), "doctor on a warm home");
    let after = fs::metadata(&manifest).unwrap();
    let exe_after = fs::metadata(codex.join("bin/codex")).unwrap();
    assert_eq!(
        (before.ino(), before.mtime(), before.mtime_nsec()),
        (after.ino(), after.mtime(), after.mtime_nsec()),
        "manifest rewritten"
    );
    assert_eq!(
        exe_before.ino(),
        exe_after.ino(),
        "bin/codex unpacked again"
    );
}

#[test]
fn damaged_or_missing_files_are_repaired_by_the_next_run() {
    type Damage = fn(&Path);
    let scratch = Scratch::new();
    assert_success(&doctor(&scratch), "first doctor");
    let codex = scratch.unpacked("codex");
    let good = snapshot(&codex);
    let files = |snap: &BTreeMap<String, (u32, String, i64, i64)>| {
        snap.iter()
            .filter(|(rel, _)| !rel.ends_with('/') && rel.as_str() != MANIFEST)
            .map(|(rel, (mode, hash, ..))| (rel.clone(), (*mode, hash.clone())))
            .collect::<BTreeMap<_, _>>()
    };

    let damages: [(&str, Damage); 3] = [
        ("truncated bin/codex", |dir| {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(dir.join("bin/codex"))
                .unwrap();
            file.set_len(1000).unwrap();
        }),
        ("deleted codex-path/rg", |dir| {
            fs::remove_file(dir.join("codex-path/rg")).unwrap();
        }),
        ("same-size different codex-package.json", |dir| {
            let path = dir.join("codex-package.json");
            let len = fs::metadata(&path).unwrap().len() as usize;
            // Give the mtime a chance to move even on coarse-clock filesystems.
            std::thread::sleep(Duration::from_millis(20));
            fs::write(&path, vec![b'x'; len]).unwrap();
        }),
    ];
    for (what, damage) in damages {
        damage(&codex);
        assert_ne!(
            files(&snapshot(&codex)),
            files(&good),
            "{what}: the damage did not change anything"
        );
        assert_success(&doctor(&scratch), &format!("doctor after {what}"));
        assert_eq!(
            scratch.unpacked("codex"),
            codex,
            "{what}: repaired into another directory"
        );
        assert_eq!(
            files(&snapshot(&codex)),
            files(&good),
            "{what}: not repaired"
        );
        assert_eq!(
            leftovers(&scratch.oss_home()),
            Vec::<String>::new(),
            "{what}"
        );
        assert_codex_runs(&codex);
    }

    // Ollama finds its CPU backend through the release's library links.
    let ollama = scratch.unpacked("ollama");
    let link = ollama.join("lib/ollama/libggml-base.so.0");
    let target = fs::read_link(&link).expect("libggml-base.so.0 is a link");
    fs::remove_file(&link).unwrap();
    assert_success(&doctor(&scratch), "doctor after a deleted library link");
    assert_eq!(
        fs::read_link(&link).ok(),
        Some(target),
        "deleted library link not repaired"
    );
    assert!(ollama.join("lib/ollama/libggml-base.so").is_file());
}

/// Copies a directory tree with hard links (cheap even for the 300 MB Codex).
fn link_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            link_tree(&entry.path(), &dest);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), dest).unwrap();
        } else {
            fs::hard_link(entry.path(), dest).unwrap();
        }
    }
}

/// `flock -s <lease> ...` in its own process group: another instance using a version.
struct LeaseHolder {
    flock: std::process::Child,
    lease: PathBuf,
}

impl LeaseHolder {
    fn hold(lease: &Path, ready: &Path) -> LeaseHolder {
        let child = Command::new("flock")
            .arg("-s")
            .arg(lease)
            .args(["sh", "-c", "touch \"$0\" && exec sleep 30"])
            .arg(ready)
            .process_group(0)
            .spawn()
            .expect("run flock (util-linux)");
        let holder = LeaseHolder {
            flock: child,
            lease: lease.to_owned(),
        };
        let start = Instant::now();
        while !ready.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "flock never took the lease"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        holder
    }
}

impl Drop for LeaseHolder {
    fn drop(&mut self) {
        // The whole group: flock and the sleep that inherited the locked descriptor.
        let pgid = nix::unistd::Pid::from_raw(self.flock.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.flock.wait();
        // The sleep (not our child) closes the descriptor when it is gone, a moment later.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && !fs::File::open(&self.lease).is_ok_and(|file| file.try_lock().is_ok())
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn an_unused_old_version_is_removed_but_not_while_leased() {
    let scratch = Scratch::new();
    assert_success(&doctor(&scratch), "first doctor");
    let parent = scratch.oss_home().join("codex");
    let current = scratch.unpacked("codex");
    let old = parent.join("0.148.0-aaaaaaaaaaaa");
    link_tree(&current, &old);
    let old_snapshot = snapshot(&old);

    // Another instance still runs the old version: it stays.
    let lease = parent.join(".0.148.0-aaaaaaaaaaaa.lease");
    let holder = LeaseHolder::hold(&lease, &scratch.home().join("lease-held"));
    assert_success(&doctor(&scratch), "doctor while the old version is leased");
    assert!(old.is_dir(), "a leased version was removed");
    assert_eq!(snapshot(&old), old_snapshot, "a leased version was changed");
    drop(holder);

    // Nobody uses it any more: the next run removes it, and its lease file.
    assert_success(
        &doctor(&scratch),
        "doctor after the old version's user ended",
    );
    assert!(!old.exists(), "an unused old version was kept");
    assert!(!lease.exists(), "the old version's lease file was kept");
    assert_eq!(version_dirs(&parent), vec![current.clone()]);
    assert_codex_runs(&current);
}

// ---------------------------------------------------------------- full and read-only home

/// `unshare` flags that give a private mount namespace where tmpfs can be mounted:
/// a user namespace too when possible (unprivileged), else a plain one (root).
fn unshare_flags() -> &'static [&'static str] {
    for flags in [&["-r", "-m"][..], &["-m"][..]] {
        let works = Command::new("unshare")
            .args(flags)
            .args(["sh", "-c", "d=$(mktemp -d) && mount -t tmpfs none \"$d\" && umount \"$d\"; s=$?; rmdir \"$d\"; exit $s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            return flags;
        }
    }
    panic!(
        "these tests mount a tmpfs in a private mount namespace: `unshare -rm` (user namespaces) \
         or `unshare -m` as root must work here"
    );
}

/// Runs `script` with sh in a private user + mount namespace, with the environment of
/// `codex-oss` for this scratch home plus BIN (codex-oss), H (`CODEX_OSS_HOME`) and
/// OUT (a directory outside the namespace's mounts for results), which it returns.
pub(crate) fn in_mount_namespace(
    scratch: &Scratch,
    script: &str,
    extra: &[(&str, &Path)],
) -> PathBuf {
    let template = scratch.codex_oss();
    let out = scratch.home().join("out");
    fs::create_dir_all(&out).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(unshare_flags()).args(["sh", "-c", script]);
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    cmd.env("BIN", template.get_program())
        .env("H", scratch.oss_home())
        .env("OUT", &out);
    for (key, value) in extra {
        cmd.env(key, value);
    }
    fs::create_dir_all(scratch.oss_home()).unwrap();
    // Unpacking the 300 MB Codex, once or twice, on a busy machine.
    assert_success(
        &Running::start(cmd).finish(5 * STEP),
        "the namespace script (unshare, from util-linux)",
    );
    out
}

/// A previous good copy of an older Codex, with files of known content.
fn old_codex_copy(dir: &Path) -> PathBuf {
    let old = dir.join("old-codex");
    fs::create_dir_all(old.join("bin")).unwrap();
    fs::create_dir_all(old.join("codex-path")).unwrap();
    fs::write(
        old.join("codex-package.json"),
        b"{\"version\": \"0.148.0\", \"entrypoint\": \"bin/codex\"}\n",
    )
    .unwrap();
    fs::write(
        old.join("bin/codex"),
        b"#!/bin/sh\necho codex-cli 0.148.0\n",
    )
    .unwrap();
    fs::set_permissions(old.join("bin/codex"), fs::Permissions::from_mode(0o755)).unwrap();
    let bytes: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(old.join("codex-path/rg"), bytes).unwrap();
    fs::set_permissions(old.join("codex-path/rg"), fs::Permissions::from_mode(0o755)).unwrap();
    old
}

const OLD: &str = "0.148.0-aaaaaaaaaaaa";

/// Shell for `in_mount_namespace`: a home on a 1 GiB tmpfs that an earlier doctor
/// filled (run/, logs/, the payloads).
const USED_HOME: &str = r#"
    set -eu
    mount -t tmpfs -o size=1g,mode=0700 codex-oss-test "$H"
    "$BIN" doctor >"$OUT/setup" 2>&1
"#;

/// Shell for `in_mount_namespace`: doctor, with its output and exit status left in OUT
/// for `Finished::read_from`.
const DOCTOR_INTO_OUT: &str = r#"
    set +e
    "$BIN" doctor >"$OUT/stdout" 2>"$OUT/stderr"
    echo $? >"$OUT/status"
    set -e
"#;

/// Runs doctor after `setup` (shell that mounts the home at $H and puts a previous good
/// copy of an older Codex, from $`OLD_SRC`, in it as codex/$`OLD_NAME`). Doctor must fail
/// with one line on Codex, the snapshot `name`, leave no temporary files behind and the
/// previous copy untouched.
fn doctor_fails_and_keeps_the_previous_copy(scratch: &Scratch, setup: &str, name: &str) {
    let old = old_codex_copy(scratch.home());
    let script = format!(
        r#"{setup}
        {DOCTOR_INTO_OUT}
        (cd "$H" && find . -name '.tmp-*' -o -name '.trash-*') >"$OUT/leftovers"
        cp -a "$H/codex/$OLD_NAME" "$OUT/old-after"
        df -k "$H" | tail -n 1 >"$OUT/df"
        "#
    );
    let out = in_mount_namespace(
        scratch,
        &script,
        &[("OLD_SRC", &old), ("OLD_NAME", Path::new(OLD))],
    );
    let doctor = Finished::read_from(&out);
    assert!(
        !doctor.status.success(),
        "doctor succeeded:\n{}",
        doctor.text()
    );
    assert_user_sees!(
        scratch,
        name,
        doctor.line(&format!("Codex {}: ", crate::support::pinned_codex()))
    );
    assert_eq!(
        fs_read(&out.join("leftovers")),
        "",
        "a failed unpack left files behind; df: {}",
        fs_read(&out.join("df"))
    );
    assert_eq!(
        snapshot(&out.join("old-after")),
        snapshot(&old),
        "the previous copy was touched"
    );
}

#[test]
fn a_full_home_fails_clearly_and_keeps_the_previous_copy() {
    // The raw Codex is over 300 MB: a 150 MB home runs out of space half way.
    let setup = r#"
        set -eu
        mount -t tmpfs -o size=150m,mode=0700 codex-oss-test "$H"
        mkdir -m 0700 "$H/codex"
        cp -a "$OLD_SRC" "$H/codex/$OLD_NAME"
    "#;
    doctor_fails_and_keeps_the_previous_copy(&Scratch::new(), setup, "doctor_on_a_full_home");
}

#[test]
fn a_read_only_home_without_the_current_copy_fails_clearly_and_keeps_the_previous_copy() {
    // A home used by an earlier codex-oss (run/, logs/, an older Codex), now read-only.
    let setup = format!(
        r#"{USED_HOME}
        rm -rf "$H"/codex/*
        cp -a "$OLD_SRC" "$H/codex/$OLD_NAME"
        mount -o remount,ro "$H"
        "#
    );
    doctor_fails_and_keeps_the_previous_copy(&Scratch::new(), &setup, "doctor_on_a_read_only_home");
}

#[test]
fn a_read_only_home_with_an_intact_copy_still_works() {
    let scratch = Scratch::new();
    let script = format!(
        r#"{USED_HOME}
        mount -o remount,ro "$H"
        {DOCTOR_INTO_OUT}
        set +e
        codex=$(ls -d "$H"/codex/*/)
        "${{codex}}bin/codex" --version >"$OUT/codex-version" 2>&1
        echo $? >"$OUT/codex-status"
        "#
    );
    let out = in_mount_namespace(&scratch, &script, &[]);
    let doctor = Finished::read_from(&out);
    assert!(
        doctor.status.success(),
        "doctor failed on a read-only home with an intact copy:\n{}",
        doctor.text()
    );
    assert_user_sees!(
        &scratch,
        "doctor_on_a_read_only_home_with_an_intact_copy",
        doctor.stdout
    );
    assert_eq!(
        fs_read(&out.join("codex-status")).trim(),
        "0",
        "{}",
        fs_read(&out.join("codex-version"))
    );
    assert!(fs_read(&out.join("codex-version"))
        .contains(&format!("codex-cli {}", crate::support::pinned_codex())));
}
