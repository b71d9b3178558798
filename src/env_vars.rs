//! The name of every environment variable codex-oss reads or sets, in one place (uv
//! keeps its own in `EnvVars` for the same reason: one list to document, test and grep).

/// Environment variable names.
pub struct EnvVars;

impl EnvVars {
    /// Everything codex-oss writes; default `~/.codex-oss`.
    pub const CODEX_OSS_HOME: &'static str = "CODEX_OSS_HOME";
    /// The model; also `--model`/`-m`, and `model` in config.toml.
    pub const CODEX_OSS_MODEL: &'static str = "CODEX_OSS_MODEL";
    /// A fixed loopback port for the embedded Ollama.
    pub const CODEX_OSS_PORT: &'static str = "CODEX_OSS_PORT";
    /// Where to bind the embedded Ollama on purpose, loopback or not.
    pub const CODEX_OSS_HOST: &'static str = "CODEX_OSS_HOST";
    /// A running Ollama to use instead of the embedded one (`http://HOST:PORT/v1`).
    pub const CODEX_OSS_BASE_URL: &'static str = "CODEX_OSS_BASE_URL";
    /// The API key of the team server at `CODEX_OSS_BASE_URL` (unless config.toml's
    /// `api_key_env` names another variable). Codex reads it from its environment.
    pub const CODEX_OSS_API_KEY: &'static str = "CODEX_OSS_API_KEY";
    /// An Ollama executable to run instead of the embedded one.
    pub const CODEX_OSS_OLLAMA: &'static str = "CODEX_OSS_OLLAMA";
    /// A Codex executable to run instead of the embedded one.
    pub const CODEX_OSS_CODEX: &'static str = "CODEX_OSS_CODEX";
    /// Seconds a model download may go without a word from Ollama.
    pub const CODEX_OSS_PULL_TIMEOUT: &'static str = "CODEX_OSS_PULL_TIMEOUT";
    /// `0`: never take a missing model from another Ollama store.
    pub const CODEX_OSS_IMPORT: &'static str = "CODEX_OSS_IMPORT";
    /// `0`: a server of its own for every run, not one shared between runs.
    pub const CODEX_OSS_SHARE: &'static str = "CODEX_OSS_SHARE";
    /// A server with GitHub's releases API for `codex-oss update` (not in a build without
    /// the self-update feature, which has no `update`).
    #[cfg(feature = "self-update")]
    pub const CODEX_OSS_UPDATE_API_URL: &'static str = "CODEX_OSS_UPDATE_API_URL";
    /// Tokens sent to that server only (the first set wins).
    #[cfg(feature = "self-update")]
    pub const CODEX_OSS_GITHUB_TOKEN: &'static str = "CODEX_OSS_GITHUB_TOKEN";
    #[cfg(feature = "self-update")]
    pub const GITHUB_TOKEN: &'static str = "GITHUB_TOKEN";
    /// The launcher's diagnostics, an env-filter (`warn`, `info`, `debug`).
    pub const CODEX_OSS_LOG: &'static str = "CODEX_OSS_LOG";
    /// `auto` (look for a GPU), `cuda` (take an NVIDIA GPU as found) or `none` (CPU only).
    pub const CODEX_OSS_GPU: &'static str = "CODEX_OSS_GPU";
    /// A base URL to download the pinned release assets from instead of GitHub (the GPU
    /// libraries at run time; the payloads at build time).
    pub const CODEX_OSS_PAYLOAD_MIRROR: &'static str = "CODEX_OSS_PAYLOAD_MIRROR";

    /// Ollama's bind address; taken only when it is a loopback address.
    pub const OLLAMA_HOST: &'static str = "OLLAMA_HOST";
    /// Ollama's model store.
    pub const OLLAMA_MODELS: &'static str = "OLLAMA_MODELS";
    /// The context length Ollama serves.
    pub const OLLAMA_CONTEXT_LENGTH: &'static str = "OLLAMA_CONTEXT_LENGTH";
    /// Ollama keeps partial downloads at start-up when set.
    pub const OLLAMA_NOPRUNE: &'static str = "OLLAMA_NOPRUNE";
    /// How long Ollama keeps a model loaded after its last request; codex-oss keeps the
    /// shared server that long after its last run.
    pub const OLLAMA_KEEP_ALIVE: &'static str = "OLLAMA_KEEP_ALIVE";
    /// Browser origins allowed to call Ollama: never passed to the embedded one.
    pub const OLLAMA_ORIGINS: &'static str = "OLLAMA_ORIGINS";

    /// The variables Ollama reads to choose which GPUs it may use (its
    /// `discover/runner.go`); `-1` hides every GPU of that kind.
    pub const GPU_VISIBILITY: [&'static str; 6] = [
        "CUDA_VISIBLE_DEVICES",
        "HIP_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "GGML_VK_VISIBLE_DEVICES",
        "GPU_DEVICE_ORDINAL",
        "HSA_OVERRIDE_GFX_VERSION",
    ];
    /// Those that `CODEX_OSS_GPU=none` sets to `-1`, as Ollama's GPU guide says to keep
    /// it on the CPU (NVIDIA, AMD, Vulkan).
    pub const GPU_HIDE: [&'static str; 4] = [
        "CUDA_VISIBLE_DEVICES",
        "HIP_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "GGML_VK_VISIBLE_DEVICES",
    ];

    /// How the server reaches the internet for pulls: the user's proxy and the
    /// certificates it needs. They change what the server does, so they are among its
    /// settings (and in the key that decides which runs share a server).
    pub const SERVER_NETWORK: [&'static str; 10] = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ];
    /// What a program needs from the system to run at all (matched without regard to
    /// case, as Windows names them: `Path`, `SystemRoot` for its network stack).
    pub const SYSTEM: [&'static str; 18] = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "TMPDIR",
        "TMP",
        "TEMP",
        "SystemRoot",
        "SystemDrive",
        "windir",
        "ComSpec",
        "PATHEXT",
        "USERPROFILE",
        "LOCALAPPDATA",
        "APPDATA",
        "ProgramData",
        "NUMBER_OF_PROCESSORS",
        "PROCESSOR_ARCHITECTURE",
    ];

    /// Codex's own configuration directory (default `~/.codex`).
    pub const CODEX_HOME: &'static str = "CODEX_HOME";

    /// Hosts reached without a proxy (both spellings are read by HTTP clients).
    pub const NO_PROXY: &'static str = "NO_PROXY";
    pub const NO_PROXY_LOWER: &'static str = "no_proxy";
    /// Where programs are looked for when nothing is embedded.
    pub const PATH: &'static str = "PATH";
}
