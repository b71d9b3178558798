//! A model the user already has in their own Ollama's store is taken from there: linked
//! in on the same disk (no download, no extra space), checked blob by blob, and pulled
//! as usual when what is there is damaged.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
    // A manifest as Ollama 0.32 writes it comes in byte for byte.
    assert_eq!(
        std::fs::read(legacy_tag(&ours)).unwrap(),
        std::fs::read(legacy_tag(&theirs)).unwrap()
    );
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

// ------------------------------------------------ stores as Ollama 0.40 writes them
//
// Built as ollama/ollama's `manifest/` package (the manifest-list releases) writes a
// store: `writeManifestBlob` stores a manifest as `blobs/sha256-<hex>` (0644);
// `linkManifest` makes the tag `manifests-v2/<host>/<namespace>/<model>/<tag>` a
// relative symlink to it (`filepath.Rel` from the tag's folder), else a hard link, else a
// copy; `WriteManifestData`/`WriteManifestList` then remove the old-layout manifest
// (`removeLegacyManifestPaths`, `PruneDirectory`); the public registry's host in v2 paths
// is `ollama.com` (`canonicalV2Name`, manifest/paths.go). A list is
// `{"schemaVersion":2,"mediaType":"application/vnd.ollama.manifest.list.v2+json","manifests":[...]}`
// whose entries made by `NewManifestReference` marshal as
// `{"mediaType","digest","runner","format"}` (`Manifest.MarshalJSON`).

const MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_LIST: &str = "application/vnd.ollama.manifest.list.v2+json";
const TAG: &str = "library/gpt-oss/20b";

fn legacy_tag(store: &Path) -> PathBuf {
    store.join("manifests/registry.ollama.ai").join(TAG)
}

fn v2_tag(store: &Path) -> PathBuf {
    store.join("manifests-v2/ollama.com").join(TAG)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `writeManifestBlob`: the bytes as the blob named by their digest; returns the digest.
fn write_blob(store: &Path, bytes: &[u8]) -> String {
    let hex = sha256_hex(bytes);
    let path = store.join("blobs").join(format!("sha256-{hex}"));
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    format!("sha256:{hex}")
}

#[derive(Clone, Copy, Debug)]
enum TagKind {
    Symlink,
    HardLink,
    Copy,
}

/// `linkManifest`: the v2 tag names the manifest blob `digest`.
fn link_tag(store: &Path, digest: &str, kind: TagKind) {
    let tag = v2_tag(store);
    std::fs::create_dir_all(tag.parent().unwrap()).unwrap();
    let blob = format!("sha256-{}", &digest["sha256:".len()..]);
    match kind {
        // From manifests-v2/ollama.com/library/gpt-oss/ to blobs/.
        TagKind::Symlink => {
            std::os::unix::fs::symlink(Path::new("../../../../blobs").join(&blob), &tag).unwrap();
        }
        TagKind::HardLink => std::fs::hard_link(store.join("blobs").join(&blob), &tag).unwrap(),
        TagKind::Copy => {
            std::fs::copy(store.join("blobs").join(&blob), &tag).unwrap();
        }
    }
}

/// `removeLegacyManifestPaths`: the old-layout manifest goes, and the folders it leaves
/// empty.
fn remove_legacy_tag(store: &Path) {
    std::fs::remove_file(legacy_tag(store)).unwrap();
    let _ = std::fs::remove_dir_all(store.join("manifests"));
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The manifest a first run wrote into codex-oss's store: a plain one, each blob it
/// names there and matching its digest; returns it.
fn our_manifest(scratch: &Scratch) -> serde_json::Value {
    let ours = scratch.oss_home().join("models");
    let manifest = json(&std::fs::read(legacy_tag(&ours)).unwrap());
    assert_eq!(manifest["mediaType"], MANIFEST, "{manifest}");
    let layers = manifest["layers"].as_array().unwrap();
    for layer in layers.iter().chain([&manifest["config"]]) {
        let digest = layer["digest"].as_str().unwrap();
        let blob = ours.join("blobs").join(digest.replace(':', "-"));
        let bytes = std::fs::read(&blob).unwrap_or_else(|e| panic!("{}: {e}", blob.display()));
        assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), digest);
    }
    manifest
}

/// The blob names in codex-oss's store.
fn our_blob_names(scratch: &Scratch) -> Vec<String> {
    let mut names: Vec<String> = blobs(&scratch.oss_home().join("models"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn blob_names_of(manifest: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&manifest["config"]])
        .map(|l| l["digest"].as_str().unwrap().replace(':', "-"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_model_behind_an_ollama_0_40_tag_is_imported_whatever_the_tag_is() {
    for kind in [TagKind::Symlink, TagKind::HardLink, TagKind::Copy] {
        let scratch = Scratch::new();
        let theirs = users_store(&scratch);
        let manifest = std::fs::read(legacy_tag(&theirs)).unwrap();
        let digest = write_blob(&theirs, &manifest);
        link_tag(&theirs, &digest, kind);
        remove_legacy_tag(&theirs);

        let said = first_run_imports(&scratch);
        assert!(said.contains("linked it in"), "{kind:?}: {said}");
        // Nothing to leave out: the manifest comes in byte for byte.
        let ours = std::fs::read(legacy_tag(&scratch.oss_home().join("models"))).unwrap();
        assert_eq!(ours, manifest, "{kind:?}");
        our_manifest(&scratch);
        assert_no_processes_within(scratch.home(), GONE);
    }
}

/// The user's store after a 0.40 pull of a model the registry serves as a manifest list:
/// an MLX child (safetensors), the GGUF converted for llama.cpp and the original Ollama
/// GGUF (the pulled model), in that order. Returns the original child and the digests of
/// the list and of the child manifests.
fn users_store_with_a_list(scratch: &Scratch) -> (PathBuf, serde_json::Value, Vec<String>) {
    let theirs = users_store(scratch);
    let original_bytes = std::fs::read(legacy_tag(&theirs)).unwrap();
    let original = json(&original_bytes);
    let config = original["config"].clone();

    let tensor = write_blob(&theirs, b"mlx tensor bytes");
    let mlx = serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST, "config": config,
        "layers": [{"mediaType": "application/vnd.ollama.image.tensor", "digest": tensor,
                    "size": 16, "name": "model.embed_tokens.weight"}],
        "runner": "mlx", "format": "safetensors",
    });
    let converted_weights = write_blob(&theirs, b"GGUF converted for llama.cpp");
    let llamacpp = serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST, "config": config,
        "layers": [{"mediaType": "application/vnd.ollama.image.model",
                    "digest": converted_weights, "size": 28}],
        "runner": "llamacpp", "format": "gguf",
    });
    let children = [
        (
            write_blob(&theirs, mlx.to_string().as_bytes()),
            "mlx",
            "safetensors",
        ),
        (
            write_blob(&theirs, llamacpp.to_string().as_bytes()),
            "llamacpp",
            "gguf",
        ),
        (write_blob(&theirs, &original_bytes), "ggml", "gguf"),
    ];
    let list = serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST_LIST,
        "manifests": children.iter().map(|(digest, runner, format)| serde_json::json!({
            "mediaType": MANIFEST, "digest": digest, "runner": runner, "format": format,
        })).collect::<Vec<_>>(),
    });
    let list_digest = write_blob(&theirs, list.to_string().as_bytes());
    link_tag(&theirs, &list_digest, TagKind::Symlink);
    remove_legacy_tag(&theirs);
    let mut manifests = vec![list_digest];
    manifests.extend(children.into_iter().map(|(digest, _, _)| digest));
    (theirs, original, manifests)
}

#[test]
fn a_manifest_list_gives_the_original_gguf_model_as_a_plain_manifest() {
    let scratch = Scratch::new();
    let (_theirs, original, _) = users_store_with_a_list(&scratch);

    let said = first_run_imports(&scratch);
    assert!(said.contains("linked it in"), "{said}");
    let ours = our_manifest(&scratch);
    assert_eq!(ours["config"], original["config"]);
    assert_eq!(ours["layers"], original["layers"], "not the original GGUF");
    assert!(
        ours.get("runner").is_none() && ours.get("manifests").is_none(),
        "{ours}"
    );
    // Only the model's own blobs: no list, no child manifest, no other runner's weights.
    assert_eq!(our_blob_names(&scratch), blob_names_of(&original));
    assert_no_processes_within(scratch.home(), GONE);
}

/// What a 0.40 pull leaves at the old path for an older Ollama (`WriteLegacyAnchor` as
/// `manifest/downgrade_test.go` calls it): the child manifest, marshalled with its runner
/// and format, with the list's and the child manifests' blobs appended as layers so that
/// an older Ollama's prune keeps them (`downgradePrune` there). The appended layers are
/// given the media types of what they hold; codex-oss keeps only the layer types the
/// embedded Ollama reads, whatever these are.
#[test]
fn a_store_with_only_the_legacy_anchor_is_imported_without_the_anchors_extra_layers() {
    let scratch = Scratch::new();
    let (theirs, original, manifests) = users_store_with_a_list(&scratch);
    let mut anchor = original.clone();
    anchor["runner"] = "ggml".into();
    anchor["format"] = "gguf".into();
    for (i, digest) in manifests.iter().enumerate() {
        let size = std::fs::metadata(theirs.join("blobs").join(digest.replace(':', "-")))
            .unwrap()
            .len();
        let media_type = if i == 0 { MANIFEST_LIST } else { MANIFEST };
        anchor["layers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"mediaType": media_type, "digest": digest, "size": size}));
    }
    std::fs::create_dir_all(legacy_tag(&theirs).parent().unwrap()).unwrap();
    std::fs::write(legacy_tag(&theirs), anchor.to_string()).unwrap();
    std::fs::remove_dir_all(theirs.join("manifests-v2")).unwrap();

    let said = first_run_imports(&scratch);
    assert!(said.contains("linked it in"), "{said}");
    let ours = our_manifest(&scratch);
    assert_eq!(ours["config"], original["config"]);
    assert_eq!(
        ours["layers"], original["layers"],
        "the anchor's extra layers came in"
    );
    assert_eq!(our_blob_names(&scratch), blob_names_of(&original));
    assert_no_processes_within(scratch.home(), GONE);
}

// ------------------------------------------------ blobs others could change

/// A blob that someone else could change (another user's, or writable by group and
/// others), or that is a symlink, is copied, never linked: a link would let that user
/// change the model codex-oss runs, or lead anywhere.
#[test]
fn blobs_others_could_change_are_copied_not_linked() {
    type Change = fn(&Path, &Path);
    let cases: [(&str, Change); 3] = [
        ("owned by another user", |blob, _| {
            std::os::unix::fs::chown(blob, Some(65534), Some(65534)).unwrap();
        }),
        ("writable by others", |blob, _| {
            std::fs::set_permissions(blob, std::fs::Permissions::from_mode(0o666)).unwrap();
        }),
        ("a symlink", |blob, elsewhere| {
            let moved = elsewhere.join(blob.file_name().unwrap());
            std::fs::rename(blob, &moved).unwrap();
            std::os::unix::fs::symlink(&moved, blob).unwrap();
        }),
    ];
    for (case, change) in cases {
        let scratch = Scratch::new();
        let theirs = users_store(&scratch);
        let elsewhere = scratch.home().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        for blob in blobs(&theirs) {
            change(&blob, &elsewhere);
        }

        let said = first_run_imports(&scratch);
        assert!(said.contains("copied it in"), "{case}: {said}");
        let me = nix::unistd::geteuid().as_raw();
        for blob in blobs(&theirs) {
            let ours = scratch
                .oss_home()
                .join("models/blobs")
                .join(blob.file_name().unwrap());
            let meta = std::fs::symlink_metadata(&ours).unwrap();
            assert!(
                meta.file_type().is_file(),
                "{case}: {} is no file",
                ours.display()
            );
            assert_eq!(meta.uid(), me, "{case}");
            assert_ne!(
                meta.ino(),
                std::fs::metadata(&blob).unwrap().ino(),
                "{case}: linked"
            );
        }
        our_manifest(&scratch);
        assert_no_processes_within(scratch.home(), GONE);
    }
}

// ------------------------------------------------ partial copies

/// The import's partial files (`<blob>.import-<pid>`) in codex-oss's store.
fn partials(scratch: &Scratch) -> Vec<String> {
    std::fs::read_dir(scratch.oss_home().join("models/blobs"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(".import-"))
                .collect()
        })
        .unwrap_or_default()
}

/// SHA-256 of 1 GiB of zeros (`head -c 1073741824 /dev/zero | sha256sum`).
const GIB_OF_ZEROS: &str = "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14";

/// Ctrl-C while a large blob is being copied in, on a first run and in `codex-oss
/// models import`: the launcher stops, and the partial copy goes with it (Ollama never
/// removes such a file).
#[test]
fn an_import_stopped_by_ctrl_c_leaves_no_partial_copy() {
    for by_hand in [false, true] {
        let scratch = Scratch::new();
        let other_fs = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
        std::os::unix::fs::symlink(other_fs.path(), scratch.home().join(".ollama")).unwrap();
        let theirs = users_store(&scratch);
        // A model of 1 GiB (sparse: it takes no room), so that the copy lasts.
        let weights = theirs.join(format!("blobs/sha256-{GIB_OF_ZEROS}"));
        std::fs::File::create(&weights)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let mut manifest = json(&std::fs::read(legacy_tag(&theirs)).unwrap());
        manifest["layers"][0]["digest"] = format!("sha256:{GIB_OF_ZEROS}").into();
        manifest["layers"][0]["size"] = (1u64 << 30).into();
        std::fs::write(legacy_tag(&theirs), manifest.to_string()).unwrap();

        let command = if by_hand {
            let mut import = scratch.codex_oss();
            import.args(["models", "import"]);
            import
        } else {
            exec_with(&scratch, &script(&scratch, "codex-exits", "exit 0\n"))
        };
        let mut running = crate::support::Running::start(command);
        running.wait_until("a partial copy", crate::support::STEP, |_| {
            !partials(&scratch).is_empty()
        });
        running.signal(nix::sys::signal::Signal::SIGINT);
        let out = running.finish(crate::support::STEP);
        let what = if by_hand {
            "models import"
        } else {
            "first run"
        };
        assert_eq!(out.status.code(), Some(130), "{what}: {}", out.text());
        assert_eq!(
            partials(&scratch),
            Vec::<String>::new(),
            "{what}: {}",
            out.text()
        );
        assert_no_processes_within(scratch.home(), GONE);
    }
}

/// A pid that no process has now: one that just ended.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Partial copies of imports that were killed (SIGKILL, a power cut) are removed by
/// `clean` and by the next import; those of a running import stay.
#[test]
fn partial_copies_of_killed_imports_are_removed_by_clean_and_the_next_import() {
    let scratch = Scratch::new();
    users_store(&scratch);
    first_run_imports(&scratch);
    let ours = scratch.oss_home().join("models/blobs");
    let mut running = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let blob = format!("sha256-{}", "e".repeat(64));
    let live = format!("{blob}.import-{}", running.id());
    let plant = || {
        let dead = format!("{blob}.import-{}", dead_pid());
        std::fs::write(ours.join(&dead), b"half a blob").unwrap();
        std::fs::write(ours.join(&live), b"half a blob").unwrap();
    };

    plant();
    let mut clean = scratch.codex_oss();
    clean.arg("clean");
    let out = run(clean);
    assert!(out.status.success(), "{}", out.text());
    assert_eq!(
        partials(&scratch),
        std::slice::from_ref(&live),
        "after clean"
    );

    plant();
    let mut rm = scratch.codex_oss();
    rm.args(["models", "rm", "gpt-oss:20b"]);
    let out = run(rm);
    assert!(out.status.success(), "{}", out.text());
    first_run_imports(&scratch);
    assert_eq!(partials(&scratch), [live], "after the next import");

    let _ = running.kill();
    let _ = running.wait();
    assert_no_processes_within(scratch.home(), GONE);
}
