//! Which GPUs this machine has, found cheaply and with nothing to install: files the
//! drivers publish, and `nvidia-smi` (which NVIDIA's driver brings) only where those
//! files are missing (Windows, WSL). Nothing here loads a GPU library.
//!
//! On Linux an NVIDIA driver shows itself in `/proc/driver/nvidia/version` (and names
//! each card in `/proc/driver/nvidia/gpus/*/information`); AMD's `ROCm` driver in
//! `/dev/kfd`; every card, whatever its driver, in `/sys/class/drm/card*/device/vendor`,
//! which also finds an NVIDIA card without NVIDIA's driver (nouveau), which CUDA cannot
//! use. On macOS, Apple silicon has Metal, built into the embedded Ollama.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long `nvidia-smi` may take (it wakes the GPU; usually well under a second).
const NVIDIA_SMI_PATIENCE: Duration = Duration::from_secs(5);

/// The driver branch Ollama's CUDA libraries need (its docs/gpu.mdx: "driver version 550
/// and newer"; `discover/cuda_compat.go` drops older ones with "NVIDIA driver too old").
pub const MIN_NVIDIA_DRIVER: u32 = 550;

/// A GPU found on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// `nvidia`, `amd`, `intel` or `apple`.
    pub vendor: &'static str,
    /// The card's name, when the driver says it.
    pub name: Option<String>,
    /// The driver's version (NVIDIA: `550.54.14`).
    pub driver: Option<String>,
    /// The card's memory as the driver says it (`24564 MiB`).
    pub memory: Option<String>,
    /// Where it was found: a file, `nvidia-smi`, or `CODEX_OSS_GPU=cuda`.
    pub found_by: String,
    /// True when this bundle can run the model on it.
    pub supported: bool,
    /// Why it cannot, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Gpu {
    /// A GPU the driver says nothing more of, found by `found_by`; supported unless a
    /// `note` says why not.
    pub fn found(vendor: &'static str, found_by: &str, note: Option<String>) -> Gpu {
        Gpu {
            vendor,
            name: None,
            driver: None,
            memory: None,
            found_by: found_by.to_owned(),
            supported: note.is_none(),
            note,
        }
    }

    /// `NVIDIA GeForce RTX 4090 (driver 550.54.14, 24564 MiB)`.
    pub fn describe(&self) -> String {
        let name = self.name.clone().unwrap_or_else(|| match self.vendor {
            "nvidia" => "an NVIDIA GPU".to_owned(),
            "amd" => "an AMD GPU".to_owned(),
            "intel" => "an Intel GPU".to_owned(),
            "apple" => "Apple silicon".to_owned(),
            other => format!("a GPU ({other})"),
        });
        let details: Vec<String> = [
            self.driver.as_ref().map(|d| format!("driver {d}")),
            self.memory.clone(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if details.is_empty() {
            name
        } else {
            format!("{name} ({})", details.join(", "))
        }
    }

    /// The driver's branch: 550 for `550.54.14`.
    pub fn driver_branch(&self) -> Option<u32> {
        self.driver
            .as_deref()?
            .split('.')
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

/// Where the probes look: `/` on a real machine, a folder of fake driver files in tests.
pub struct Probe<'a> {
    pub root: &'a Path,
    /// Runs `nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader`.
    pub nvidia_smi: &'a dyn Fn() -> Option<String>,
}

impl Probe<'_> {
    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }
}

/// Every GPU this machine shows, NVIDIA's first.
pub fn find(probe: &Probe<'_>) -> Vec<Gpu> {
    if cfg!(target_os = "macos") {
        return apple();
    }
    let mut found = nvidia(probe);
    let drm = drm_vendors(probe);
    if found.is_empty() && drm.contains(&"nvidia") {
        found.push(Gpu::found(
            "nvidia",
            "/sys/class/drm",
            Some(
                "NVIDIA's driver is not loaded (nouveau cannot run CUDA): install NVIDIA's driver"
                    .to_owned(),
            ),
        ));
    }
    let unsupported = |vendor, found_by| {
        Gpu::found(
            vendor,
            found_by,
            Some("not supported by this bundle yet".to_owned()),
        )
    };
    if probe.path("/dev/kfd").exists() {
        found.push(unsupported("amd", "/dev/kfd"));
    } else if drm.contains(&"amd") {
        found.push(unsupported("amd", "/sys/class/drm"));
    }
    if drm.contains(&"intel") {
        found.push(unsupported("intel", "/sys/class/drm"));
    }
    found
}

/// Apple silicon has Metal, built into the embedded Ollama; Ollama runs on the CPU of an
/// Intel Mac (its `x86_64` build has no Metal).
fn apple() -> Vec<Gpu> {
    if cfg!(target_arch = "aarch64") {
        vec![Gpu {
            name: Some("Apple silicon".to_owned()),
            ..Gpu::found("apple", "Metal, built into the embedded Ollama", None)
        }]
    } else {
        Vec::new()
    }
}

/// NVIDIA cards with NVIDIA's driver: from /proc on Linux, else from `nvidia-smi`.
fn nvidia(probe: &Probe<'_>) -> Vec<Gpu> {
    if let Ok(text) = std::fs::read_to_string(probe.path("/proc/driver/nvidia/version")) {
        let driver = proc_driver_version(&text);
        let mut cards: Vec<_> = proc_gpu_names(probe).into_iter().map(Some).collect();
        if cards.is_empty() {
            cards.push(None);
        }
        return cards
            .into_iter()
            .map(|name| nvidia_gpu(name, driver.clone(), None, "/proc/driver/nvidia"))
            .collect();
    }
    (probe.nvidia_smi)()
        .map(|text| parse_nvidia_smi(&text))
        .unwrap_or_default()
}

fn nvidia_gpu(
    name: Option<String>,
    driver: Option<String>,
    memory: Option<String>,
    found_by: &str,
) -> Gpu {
    let mut gpu = Gpu {
        name,
        driver,
        memory,
        ..Gpu::found("nvidia", found_by, None)
    };
    if let Some(branch) = gpu.driver_branch().filter(|b| *b < MIN_NVIDIA_DRIVER) {
        gpu.supported = false;
        gpu.note = Some(format!(
            "driver {branch} is older than {MIN_NVIDIA_DRIVER}, the oldest Ollama's CUDA libraries work with: update the NVIDIA driver"
        ));
    }
    gpu
}

/// `NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 ...` -> 550.54.14.
pub fn proc_driver_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version"))?;
    line.split_whitespace()
        .find(|word| {
            word.contains('.')
                && word
                    .split('.')
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
}

/// `Model: \t\t NVIDIA GeForce RTX 4090` of each `/proc/driver/nvidia/gpus/*/information`.
fn proc_gpu_names(probe: &Probe<'_>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(probe.path("/proc/driver/nvidia/gpus")) else {
        return Vec::new();
    };
    let mut cards: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    cards.sort();
    cards
        .iter()
        .filter_map(|card| std::fs::read_to_string(card.join("information")).ok())
        .filter_map(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("Model:"))
                .map(|model| model.trim().to_owned())
                .filter(|model| !model.is_empty())
        })
        .collect()
}

/// `NVIDIA GeForce RTX 4090, 550.54.14, 24564 MiB`, one line a card.
pub fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [name, driver, memory] = fields[..] else {
                return None;
            };
            let known = |v: &str| (!v.is_empty() && !v.starts_with('[')).then(|| v.to_owned());
            Some(nvidia_gpu(
                known(name),
                known(driver),
                known(memory),
                "nvidia-smi",
            ))
        })
        .collect()
}

/// The vendors of the display cards in /sys/class/drm (`card0`, not its connectors).
fn drm_vendors(probe: &Probe<'_>) -> Vec<&'static str> {
    let mut vendors = Vec::new();
    let cards = std::fs::read_dir(probe.path("/sys/class/drm"));
    for entry in cards.into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_card = name
            .strip_prefix("card")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_card {
            continue;
        }
        let id = std::fs::read_to_string(entry.path().join("device/vendor")).unwrap_or_default();
        let vendor = match id.trim() {
            "0x10de" => "nvidia",
            "0x1002" => "amd",
            "0x8086" => "intel",
            _ => continue,
        };
        if !vendors.contains(&vendor) {
            vendors.push(vendor);
        }
    }
    vendors
}

/// Runs `nvidia-smi` (on PATH, or where NVIDIA's Windows driver puts it), if there is one.
pub fn run_nvidia_smi() -> Option<String> {
    let program = nvidia_smi_path()?;
    let mut child = std::process::Command::new(&program)
        .args([
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut child.stdout.take()?, &mut text).ok()?;
                return status.success().then_some(text);
            }
            Ok(None) if start.elapsed() < NVIDIA_SMI_PATIENCE => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                tracing::info!("{} did not answer in time", program.display());
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn nvidia_smi_path() -> Option<PathBuf> {
    let exe = format!("nvidia-smi{}", std::env::consts::EXE_SUFFIX);
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(&exe))
                .collect()
        })
        .unwrap_or_default();
    let fixed: &[&str] = if cfg!(windows) {
        &[r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe"]
    } else {
        &["/usr/lib/wsl/lib/nvidia-smi"]
    };
    on_path
        .into_iter()
        .chain(fixed.iter().map(PathBuf::from))
        .find(|p| crate::platform::is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn find_in(root: &Path, smi: Option<&str>) -> Vec<Gpu> {
        let smi = smi.map(str::to_owned);
        let run = move || smi.clone();
        find(&Probe {
            root,
            nvidia_smi: &run,
        })
    }

    const PROC_VERSION: &str = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n";
    const PROC_OPEN: &str = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Jan 23 00:12:50 UTC 2025\n";

    #[test]
    fn the_driver_version_of_either_kernel_module() {
        assert_eq!(
            proc_driver_version(PROC_VERSION).as_deref(),
            Some("550.54.14")
        );
        assert_eq!(proc_driver_version(PROC_OPEN).as_deref(), Some("570.86.15"));
        assert_eq!(proc_driver_version("garbage"), None);
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn fake_driver_files_are_found_and_named() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(find_in(root.path(), None), Vec::new(), "nothing there");

        write(root.path(), "proc/driver/nvidia/version", PROC_VERSION);
        write(
            root.path(),
            "proc/driver/nvidia/gpus/0000:01:00.0/information",
            "Model: \t\t NVIDIA GeForce RTX 4090\nIRQ:   \t\t 190\n",
        );
        // /proc wins: nvidia-smi is not asked.
        let found = find_in(root.path(), Some("Other, 1.0, 1 MiB"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].describe(),
            "NVIDIA GeForce RTX 4090 (driver 550.54.14)"
        );
        assert!(found[0].supported);
        assert_eq!(found[0].found_by, "/proc/driver/nvidia");

        write(root.path(), "dev/kfd", "");
        write(root.path(), "sys/class/drm/card1/device/vendor", "0x8086\n");
        write(
            root.path(),
            "sys/class/drm/card1-HDMI-A-1/device/vendor",
            "0x1002\n",
        );
        let found = find_in(root.path(), None);
        let vendors: Vec<_> = found.iter().map(|g| (g.vendor, g.supported)).collect();
        assert_eq!(
            vendors,
            [("nvidia", true), ("amd", false), ("intel", false)]
        );
        assert_eq!(
            found[1].note.as_deref(),
            Some("not supported by this bundle yet")
        );
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn nvidia_smi_where_proc_has_nothing() {
        let root = tempfile::tempdir().unwrap();
        let found = find_in(
            root.path(),
            Some("NVIDIA GeForce RTX 4090, 560.35.03, 24564 MiB\nNVIDIA RTX A2000, 560.35.03, [N/A]\n"),
        );
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].describe(),
            "NVIDIA GeForce RTX 4090 (driver 560.35.03, 24564 MiB)"
        );
        assert_eq!(found[0].found_by, "nvidia-smi");
        assert_eq!(found[1].memory, None);
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn an_old_driver_or_no_driver_is_found_but_not_supported() {
        let root = tempfile::tempdir().unwrap();
        let found = find_in(root.path(), Some("Tesla T4, 535.104.05, 15360 MiB\n"));
        assert!(!found[0].supported);
        assert!(
            found[0].note.as_deref().unwrap().contains("older than 550"),
            "{found:?}"
        );

        write(root.path(), "sys/class/drm/card0/device/vendor", "0x10de\n");
        let found = find_in(root.path(), None);
        assert_eq!(found.len(), 1);
        assert!(!found[0].supported);
        assert!(found[0].note.as_deref().unwrap().contains("nouveau"));
    }
}
