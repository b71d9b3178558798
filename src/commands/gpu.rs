//! `codex-oss gpu install|remove|status`: the NVIDIA GPU libraries of the embedded
//! Ollama, by hand. A run fetches them on its own when it finds an NVIDIA GPU (see
//! `gpu`); `remove` also tells runs not to, until `install`.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::GpuCommand;
use crate::gpu::{self, Place, State};
use crate::payload::{self, Unpacked};
use crate::settings::{GpuMode, Settings};

pub async fn run(command: GpuCommand) -> Result<ExitCode> {
    let settings = super::settings(None)?;
    match command {
        GpuCommand::Install => install(&settings).await,
        GpuCommand::Remove => remove(&settings),
        GpuCommand::Status => Ok(status(&settings)),
    }
}

/// The unpacked embedded Ollama (leased while the value lives) and its GPU side.
fn embedded(settings: &Settings) -> Result<(Unpacked, Place)> {
    let Some(payload) = payload::ollama() else {
        bail!("this codex-oss embeds no Ollama (built with SKIP_OLLAMA_DOWNLOAD=1): GPU libraries come with the embedded Ollama only");
    };
    let unpacked = payload.ensure_unpacked(&settings.home)?;
    let place = Place::of_embedded(payload, &settings.home);
    Ok((unpacked, place))
}

async fn install(settings: &Settings) -> Result<ExitCode> {
    if cfg!(target_os = "macos") {
        out!("Metal is built into the embedded Ollama: there is nothing to install");
        return Ok(ExitCode::SUCCESS);
    }
    if settings.gpu == GpuMode::None {
        bail!("CODEX_OSS_GPU=none asks for the CPU only: unset it to install the CUDA libraries");
    }
    let (_lease, place) = embedded(settings)?;
    if gpu::embedded() {
        out!(
            "the CUDA libraries are built into this codex-oss ({})",
            place.lib().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(source) = gpu::source() else {
        bail!("this codex-oss has no CUDA libraries to fetch (it was built without a Linux or Windows Ollama release archive)");
    };
    gpu::forget_removal(&settings.home);
    if let State::Installed(record) = place.state() {
        let installed = gpu::installed(&record, &place);
        out!("Ollama's CUDA libraries are installed {installed}");
        return Ok(ExitCode::SUCCESS);
    }
    if !gpu::found(settings.gpu)
        .iter()
        .any(|g| g.vendor == "nvidia" && g.supported)
    {
        crate::ui::info("no NVIDIA GPU found that could use them: installing them all the same");
    }
    let url = gpu::url(source, settings.payload_mirror.as_deref());
    crate::ui::info(format!(
        "fetching Ollama's CUDA libraries ({} from {url}; it resumes if interrupted)",
        gpu::human(source.bytes)
    ));
    let record = match gpu::install(&settings.home, &place, source, &url, gpu::Wait::Yes).await {
        Ok(record) => record,
        Err(gpu::InstallError::Busy) => {
            bail!("another codex-oss is fetching them: try again when it is done")
        }
        Err(gpu::InstallError::Failed(why)) => {
            bail!("could not install Ollama's CUDA libraries: {why}; run `codex-oss gpu install` again to retry")
        }
    };
    let installed = gpu::installed(&record, &place);
    out!("installed Ollama's CUDA libraries {installed}");
    Ok(ExitCode::SUCCESS)
}

fn remove(settings: &Settings) -> Result<ExitCode> {
    let (_lease, place) = embedded(settings)?;
    if gpu::embedded() {
        bail!("the CUDA libraries are built into this codex-oss: set CODEX_OSS_GPU=none to run on the CPU");
    }
    let freed = gpu::remove(&settings.home, &place)?;
    if freed == 0 {
        out!("no CUDA libraries were installed; runs will not fetch them until `codex-oss gpu install`");
    } else {
        out!(
            "removed Ollama's CUDA libraries ({}) from {}: runs use the CPU until `codex-oss gpu install`",
            gpu::human(freed),
            place.lib().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status(settings: &Settings) -> ExitCode {
    let place = embedded(settings)
        .inspect_err(|err| crate::ui::warn(format!("{err:#}")))
        .ok();
    let report = super::doctor::GpuReport::new(settings, place.as_ref().map(|(_, p)| p));
    report.print();
    if let Some(source) = &report.status.libraries.source {
        out!(
            "source: {} ({}, SHA-256 {}) from {}",
            source.asset,
            gpu::human(source.bytes),
            source.sha256,
            source.url
        );
    }
    ExitCode::SUCCESS
}
