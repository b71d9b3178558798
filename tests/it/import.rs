//! A model the user already has in their own Ollama's store is taken from there: linked
//! in on the same disk (no download, no extra space), checked blob by blob, and pulled
//! as usual when what is there is damaged.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::{assert_no_processes_within, exec_with, fs_read, run, script, Scratch, GONE};

/// The user's own store, `~/.ollama/models`, filled by a pull through the stand-in.
fn users_store(scratch: &Scratch) -> PathBuf {
    let store = scratch.home().join(".ollama/models");
    let mut pull = scratch.codex_oss();
    pull.args(["models", "pull"]).env("OLLAMA_MODELS", &store);
    let out = run(pull);
    assert!(out.status.success(), "{}", out.text());
    store
}

fn blobs(store: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(store.join("blobs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

fn first_run(scratch: &Scratch, requests: &Path) -> crate::support::Finished {
    let codex = script(scratch, "codex-exits", "exit 0\n");
    let mut cmd = exec_with(scratch, &codex);
    cmd.env("STAND_IN_OLLAMA_REQUEST_LOG", requests);
    run(cmd)
}

/// A first run that takes the model from the user's store: it succeeds without a
/// download and says once where it found the model (the line it returns).
fn first_run_imports(scratch: &Scratch) -> String {
    let requests = scratch.home().join("requests.log");
    let out = first_run(scratch, &requests);
    assert!(out.status.success(), "{}", out.text());
    let said: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("found gpt-oss:20b"))
        .collect();
    assert_eq!(said.len(), 1, "{}", out.text());
    assert!(
        !fs_read(&requests).contains("POST /api/pull"),
        "it downloaded"
    );
    said[0].to_owned()
}

#[test]
fn a_model_in_the_users_ollama_store_is_linked_in_not_downloaded() {
    let scratch = Scratch::new();
    let theirs = users_store(&scratch);
    let before: Vec<(PathBuf, u64)> = blobs(&theirs)
        .into_iter()
        .map(|p| {
            let ino = std::fs::metadata(&p).unwrap().ino();
            (p, ino)
        })
        .collect();

    let said = first_run_imports(&scratch);
    assert!(said.contains("linked it in"), "{said}");

    let ours = scratch.oss_home().join("models");
    for (theirs_blob, ino) in &before {
        let ours_blob = ours.join("blobs").join(theirs_blob.file_name().unwrap());
        assert_eq!(
            std::fs::metadata(&ours_blob).unwrap().ino(),
            *ino,
            "not a hard link"
        );
    }
    assert!(ours
        .join("manifests/registry.ollama.ai/library/gpt-oss/20b")
        .is_file());
    // Their store is as it was: the same files, nothing added.
    assert_eq!(
        blobs(&theirs),
        before.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()
    );
    assert_no_processes_within(scratch.home(), GONE);
}

#[test]
fn a_damaged_blob_in_the_users_store_is_detected_and_the_model_pulled() {
    let scratch = Scratch::new();
    let theirs = users_store(&scratch);
    let largest = blobs(&theirs)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&largest, &bytes).unwrap();

    let requests = scratch.home().join("requests.log");
    let out = first_run(&scratch, &requests);
    assert!(out.status.success(), "{}", out.text());
    assert!(
        out.stderr.lines().any(
            |l| l.starts_with("codex-oss: warning: not using gpt-oss:20b from")
                && l.contains("does not match")
        ),
        "{}",
        out.text()
    );
    assert!(
        fs_read(&requests).contains("POST /api/pull gpt-oss:20b"),
        "no pull"
    );
    let ours = scratch
        .oss_home()
        .join("models/blobs")
        .join(largest.file_name().unwrap());
    assert_ne!(
        std::fs::metadata(&ours).unwrap().ino(),
        std::fs::metadata(&largest).unwrap().ino(),
        "the damaged blob was linked in"
    );
    assert_eq!(
        std::fs::read(&largest).unwrap(),
        bytes,
        "their store was changed"
    );
    assert_no_processes_within(scratch.home(), GONE);
}

#[test]
fn import_can_be_turned_off_and_done_by_hand() {
    let scratch = Scratch::new();
    let theirs = users_store(&scratch);

    // CODEX_OSS_IMPORT=0: downloaded although the user's store has it.
    let requests = scratch.home().join("requests.log");
    let codex = script(&scratch, "codex-exits", "exit 0\n");
    let mut cmd = exec_with(&scratch, &codex);
    cmd.env("STAND_IN_OLLAMA_REQUEST_LOG", &requests)
        .env("CODEX_OSS_IMPORT", "0");
    let out = run(cmd);
    assert!(out.status.success(), "{}", out.text());
    assert!(!out.stderr.contains("found gpt-oss:20b"), "{}", out.text());
    assert!(fs_read(&requests).contains("POST /api/pull gpt-oss:20b"));

    // By hand, from a store anywhere, into an empty codex-oss store.
    let mut clean = scratch.codex_oss();
    clean.args(["clean", "--models"]);
    assert!(run(clean).status.success());
    let elsewhere = scratch.home().join("elsewhere");
    std::fs::rename(&theirs, &elsewhere).unwrap();
    let mut import = scratch.codex_oss();
    import.args(["models", "import"]).arg(&elsewhere);
    let out = run(import);
    assert!(out.status.success(), "{}", out.text());
    assert!(
        out.stdout.contains("found gpt-oss:20b in"),
        "{}",
        out.text()
    );
    let mut list = scratch.codex_oss();
    list.args(["models", "list"]);
    let out = run(list);
    assert!(out.stdout.contains("gpt-oss:20b"), "{}", out.text());
    assert_no_processes_within(scratch.home(), GONE);
}

/// A store on another filesystem cannot be linked: the model is copied in, checked blob
/// by blob as it is, and the user's store is left as it was.
#[test]
fn a_store_on_another_filesystem_is_copied_in() {
    let scratch = Scratch::new();
    let other_fs = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    assert_ne!(
        std::fs::metadata(other_fs.path()).unwrap().dev(),
        std::fs::metadata(scratch.home()).unwrap().dev(),
        "/dev/shm is on the scratch folder's filesystem: this test needs two"
    );
    std::os::unix::fs::symlink(other_fs.path(), scratch.home().join(".ollama")).unwrap();
    let theirs = users_store(&scratch);
    let before: Vec<(PathBuf, Vec<u8>)> = blobs(&theirs)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();

    let said = first_run_imports(&scratch);
    assert!(said.contains("copied it in"), "{said}");
    let ours = scratch.oss_home().join("models");
    for (theirs_blob, bytes) in &before {
        let ours_blob = ours.join("blobs").join(theirs_blob.file_name().unwrap());
        assert_eq!(&std::fs::read(&ours_blob).unwrap(), bytes);
        assert_eq!(
            std::fs::read(theirs_blob).unwrap(),
            *bytes,
            "their blob changed"
        );
    }
    assert_eq!(
        blobs(&theirs),
        before.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()
    );
    assert_no_processes_within(scratch.home(), GONE);
}
