//! Reads a release archive (.tgz, .tar.zst, .zip) or a bare executable and keeps what
//! codex-oss runs: Ollama's executable with its CPU backends and runner (not the GPU
//! libraries under `lib/ollama/<subdir>/`), and Codex's whole package layout
//! (`codex-package.json`, `bin/`, `codex-path/`, `codex-resources/`), which the Codex
//! binary reads to find its helpers.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::pins::Component;

/// One kept file or symlink, with a `/`-separated relative path.
#[derive(Debug)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub data: EntryData,
}

#[derive(Debug)]
pub enum EntryData {
    File(Vec<u8>),
    Symlink(String),
}

/// What will be embedded: the kept entries and the executable to run, relative.
#[derive(Debug)]
pub struct Tree {
    pub entries: Vec<Entry>,
    pub entrypoint: String,
}

/// What a file is, by its first bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Gzip,
    Zstd,
    Zip,
    Executable,
}

pub fn sniff(path: &Path) -> Result<Format, String> {
    let mut magic = [0u8; 4];
    let mut file =
        File::open(path).map_err(|e| format!("could not open {}: {e}", path.display()))?;
    let n = file
        .read(&mut magic)
        .map_err(|e| format!("could not read {}: {e}", path.display()))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Format::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Format::Zstd,
        [b'P', b'K', 3, 4] => Format::Zip,
        _ => Format::Executable,
    })
}

/// Reads `path` and applies the component's trimming rules.
pub fn read_trimmed(path: &Path, component: Component, target: &str) -> Result<Tree, String> {
    let keep_gpu = std::env::var("CODEX_OSS_KEEP_GPU_LIBS").as_deref() == Ok("1");
    let keep = |p: &str| component != Component::Ollama || keep_gpu || !is_gpu_library(p);
    let context = |e: String| format!("{} archive {}: {e}", component.display(), path.display());
    let mut entries = match sniff(path)? {
        Format::Gzip => {
            read_tar(flate2::read::GzDecoder::new(open(path)?), &keep).map_err(context)?
        }
        Format::Zstd => {
            let decoder = zstd::Decoder::new(open(path)?).map_err(|e| context(e.to_string()))?;
            read_tar(decoder, &keep).map_err(context)?
        }
        Format::Zip => read_zip(path, &keep).map_err(context)?,
        Format::Executable => return bare_executable(path, component, target),
    };
    if component == Component::Codex {
        unwrap_npm_package(&mut entries).map_err(context)?;
        entries.retain(|e| !is_left_out_of_codex(&e.path));
    }
    strip_wrapper_dir(&mut entries, component);
    if component == Component::Ollama {
        if let Some(cpu) = crate::macho::cpu_type(target) {
            thin_darwin(&mut entries, cpu).map_err(context)?;
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let entrypoint = find_entrypoint(&entries, component).ok_or_else(|| {
        context(format!(
            "no {} executable inside (looked for {})",
            component.lower(),
            entrypoint_candidates(component).join(", ")
        ))
    })?;
    for entry in entries.iter_mut().filter(|e| e.path == entrypoint) {
        entry.mode |= 0o755;
    }
    Ok(Tree {
        entries,
        entrypoint,
    })
}

/// For one Apple architecture: every universal file thinned to its slice, and what
/// codex-oss never runs left out: `llama-quantize` (making quantized models), and the
/// MLX runner's libraries (`mlx_metal_v*/`), which Ollama 0.32 loads only for
/// safetensors models (`Model.IsMLX` in server/images.go); gpt-oss:20b from Ollama's
/// library is GGUF and runs on the Metal backend built into `llama-server`.
fn thin_darwin(entries: &mut Vec<Entry>, cpu: u32) -> Result<(), String> {
    entries.retain(|e| {
        let name = e.path.rsplit('/').next().unwrap_or(&e.path);
        name != "llama-quantize"
            && !e
                .path
                .split('/')
                .any(|part| part.starts_with("mlx_metal_v"))
    });
    for entry in entries.iter_mut() {
        if let EntryData::File(bytes) = &entry.data {
            if let Some(slice) =
                crate::macho::thin(bytes, cpu).map_err(|e| format!("{}: {e}", entry.path))?
            {
                entry.data = EntryData::File(slice);
            }
        }
    }
    Ok(())
}

/// What codex-oss leaves out of Codex's package: the voice host (`codex-resources/voice/`,
/// since Codex 0.155: a glibc-linked program with its audio libraries, about 50 MB), which
/// only talks to the realtime service of Codex's cloud. codex-oss is local: without it Codex's `/voice`
/// says that voice is unavailable and everything else runs as before.
pub fn is_left_out_of_codex(path: &str) -> bool {
    path == "codex-resources/voice" || path.starts_with("codex-resources/voice/")
}

/// An npm platform package of Codex (`npm pack @openai/codex@<version>-linux-x64`) holds
/// `package/package.json` and the release layout under `package/vendor/<triple>/`: keep
/// that folder's contents, at the top, and nothing else.
fn unwrap_npm_package(entries: &mut Vec<Entry>) -> Result<(), String> {
    if !entries.iter().any(|e| e.path == "package/package.json") {
        return Ok(());
    }
    let mut triples: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.path.strip_prefix("package/vendor/")?.split_once('/'))
        .map(|(triple, _)| triple)
        .collect();
    triples.sort_unstable();
    triples.dedup();
    let prefix = match triples.as_slice() {
        [triple] => format!("package/vendor/{triple}/"),
        [] => {
            return Err(
                "an npm package without a vendor/<target>/ folder: take the platform package \
                 (@openai/codex@<version>-linux-x64 and its kin), not @openai/codex itself"
                    .to_owned(),
            )
        }
        several => {
            return Err(format!(
                "an npm package with several vendor folders ({}): take one platform package",
                several.join(", ")
            ))
        }
    };
    entries.retain(|e| e.path.starts_with(&prefix));
    for entry in entries.iter_mut() {
        entry.path = entry.path[prefix.len()..].to_owned();
    }
    Ok(())
}

/// GPU backends live in subfolders of `lib/ollama/` (`cuda_v12`, `cuda_v13`, rocm, vulkan...).
pub fn is_gpu_library(path: &str) -> bool {
    path.strip_prefix("lib/ollama/")
        .is_some_and(|rest| rest.contains('/'))
}

fn open(path: &Path) -> Result<BufReader<File>, String> {
    File::open(path)
        .map(|f| BufReader::with_capacity(1 << 20, f))
        .map_err(|e| format!("could not open {}: {e}", path.display()))
}

/// `./bin/x` -> `bin/x`; refuses absolute paths and `..`.
fn normalize(raw: &str) -> Result<Option<String>, String> {
    let parts: Vec<&str> = raw
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") || raw.starts_with('/') {
        return Err(format!("unsafe path in archive: {raw}"));
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

fn read_tar(reader: impl Read, keep: &dyn Fn(&str) -> bool) -> Result<Vec<Entry>, String> {
    let mut archive = tar::Archive::new(reader);
    let mut entries = Vec::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let raw = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let Some(path) = normalize(&raw)?.filter(|p| keep(p)) else {
            continue;
        };
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let kind = entry.header().entry_type();
        let data = if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            EntryData::Symlink(link.to_string_lossy().into_owned())
        } else if kind.is_file() {
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{path}: {e}"))?;
            EntryData::File(bytes)
        } else {
            continue;
        };
        entries.push(Entry { path, mode, data });
    }
    Ok(entries)
}

fn read_zip(path: &Path, keep: &dyn Fn(&str) -> bool) -> Result<Vec<Entry>, String> {
    let mut zip = zip::ZipArchive::new(open(path)?).map_err(|e| e.to_string())?;
    let mut entries = Vec::new();
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).map_err(|e| e.to_string())?;
        if file.is_dir() {
            continue;
        }
        let Some(path) = normalize(file.name())?.filter(|p| keep(p)) else {
            continue;
        };
        let mode = file.unix_mode().unwrap_or(0o644) & 0o777;
        let mut bytes = Vec::with_capacity(file.size() as usize);
        file.read_to_end(&mut bytes)
            .map_err(|e| format!("{path}: {e}"))?;
        entries.push(Entry {
            path,
            mode,
            data: EntryData::File(bytes),
        });
    }
    Ok(entries)
}

/// Some archives wrap everything in one folder: drop it when the executable is not at the top.
fn strip_wrapper_dir(entries: &mut [Entry], component: Component) {
    if find_entrypoint(entries, component).is_some() {
        return;
    }
    let Some(first) = entries
        .first()
        .and_then(|e| e.path.split_once('/'))
        .map(|(dir, _)| dir.to_owned())
    else {
        return;
    };
    let prefix = format!("{first}/");
    if entries.iter().all(|e| e.path.starts_with(&prefix)) {
        for entry in entries.iter_mut() {
            entry.path = entry.path[prefix.len()..].to_owned();
        }
    }
}

fn entrypoint_candidates(component: Component) -> &'static [&'static str] {
    match component {
        Component::Ollama => &["bin/ollama", "ollama", "ollama.exe", "bin/ollama.exe"],
        Component::Codex => &[
            "codex-package.json",
            "bin/codex",
            "bin/codex.exe",
            "codex",
            "codex.exe",
            "codex-<target>",
        ],
    }
}

fn find_entrypoint(entries: &[Entry], component: Component) -> Option<String> {
    let has = |p: &str| entries.iter().any(|e| e.path == p);
    if component == Component::Codex {
        let package = entries.iter().find(|e| e.path == "codex-package.json");
        let declared = package.and_then(|entry| match &entry.data {
            EntryData::File(bytes) => package_entrypoint(bytes),
            EntryData::Symlink(_) => None,
        });
        if let Some(path) = declared.filter(|p| has(p)) {
            return Some(path);
        }
        // Older releases ship a lone `codex-<target>` executable.
        if let Some(e) = entries
            .iter()
            .find(|e| !e.path.contains('/') && e.path.starts_with("codex-") && !is_json(&e.path))
        {
            return Some(e.path.clone());
        }
    }
    entrypoint_candidates(component)
        .iter()
        .copied()
        .filter(|p| !p.contains('<') && !is_json(p))
        .find(|p| has(p))
        .map(str::to_owned)
}

fn is_json(path: &str) -> bool {
    std::path::Path::new(path)
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"))
}

/// `"entrypoint": "bin/codex"` from codex-package.json.
fn package_entrypoint(bytes: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    json.get("entrypoint")?.as_str().map(str::to_owned)
}

fn bare_executable(path: &Path, component: Component, target: &str) -> Result<Tree, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
    let exe = if target.contains("windows") {
        ".exe"
    } else {
        ""
    };
    let entrypoint = format!("bin/{}{exe}", component.lower());
    let entry = Entry {
        path: entrypoint.clone(),
        mode: 0o755,
        data: EntryData::File(bytes),
    };
    Ok(Tree {
        entries: vec![entry],
        entrypoint,
    })
}
