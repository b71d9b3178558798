//! Command-line interface: the launcher's own subcommands, and everything else for Codex.
//!
//! The subcommands below (`update`, `doctor`, `models`, ...) and `--help`/`--version`
//! belong to the launcher. Any other argument list, flags included, goes to Codex
//! unchanged (`codex-oss exec "fix the test"`, `codex-oss --full-auto`), so the
//! launcher parses its own grammar only when the first argument is one of its words.

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};

/// Codex on a local GPT-OSS model: no API key, no cloud.
///
/// Any arguments other than the subcommands below go to Codex unchanged, with the
/// embedded Ollama and the local model applied: `codex-oss`, `codex-oss exec "fix the
/// test"`, `codex-oss resume --last`, `codex-oss --search` (web search on). One of them
/// is codex-oss's own: `--no-share` runs an Ollama for this run alone, instead of the
/// one shared by every codex-oss with the same settings.
#[derive(Debug, Parser)]
#[command(name = "codex-oss", disable_version_flag = true)]
pub struct Cli {
    /// Print codex-oss's version and the embedded Ollama and Codex versions.
    #[arg(short = 'V', long)]
    pub version: bool,

    /// With --version: also where the licences of codex-oss and of what it embeds are.
    #[arg(long, requires = "version")]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Update codex-oss, and with it the embedded Ollama and Codex.
    Update(UpdateArgs),
    /// Check the installation, the unpacked payloads, the model and the machine.
    Doctor {
        /// Print the report as one JSON object, with stable field names, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Fetch, remove or show the NVIDIA GPU libraries of the embedded Ollama.
    #[command(subcommand)]
    Gpu(GpuCommand),
    /// List, pull, import or remove local models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Run the embedded Ollama in the foreground (for other clients), until Ctrl-C.
    Serve,
    /// Remove unpacked payloads, logs and (with --models) downloaded models.
    Clean {
        /// Also delete downloaded models (they are large and slow to download again).
        #[arg(long)]
        models: bool,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// `codex-oss update [VERSION]`: the text after the options says what is verified.
#[derive(Debug, Args)]
#[command(
    after_help = "Before replacing anything, codex-oss checks the download's SHA-256 and its \
    minisign signature by the codex-oss release key built into it; a download that does not \
    check out leaves the installed codex-oss as it is. Releases come from GitHub's releases \
    API; CODEX_OSS_UPDATE_API_URL names another server with the same API. GITHUB_TOKEN (or \
    CODEX_OSS_GITHUB_TOKEN) is sent to that server only, for a higher rate limit. A Homebrew \
    install updates with `brew upgrade codex-oss`, an MSI install with a newer MSI."
)]
pub struct UpdateArgs {
    /// Install this version (0.2.0 or v0.2.0) instead of the newest.
    pub version: Option<String>,

    /// Only report the installed and the newest version and the Ollama and Codex each
    /// embeds; exit 0 when up to date, 1 when an update is available, 2 when the check
    /// failed.
    #[arg(long, alias = "dry-run", conflicts_with_all = ["version", "yes", "allow_downgrade"])]
    pub check: bool,

    /// Replace without asking (codex-oss asks first when run in a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Install VERSION even when it is older than the installed codex-oss.
    #[arg(long, requires = "version")]
    pub allow_downgrade: bool,
}

/// On Linux and Windows the embedded Ollama carries only its CPU libraries; with an
/// NVIDIA GPU, a run fetches the CUDA libraries from the pinned Ollama release (checked
/// against its SHA-256) before it starts Ollama. These commands do it by hand.
#[derive(Debug, Subcommand)]
#[command(
    after_help = "CODEX_OSS_GPU=auto|cuda|none (default auto) overrides the detection; \
    CODEX_OSS_PAYLOAD_MIRROR=URL downloads the archive from URL/<file name> instead of GitHub."
)]
pub enum GpuCommand {
    /// Fetch and install the CUDA libraries now, whether or not a GPU is found.
    Install,
    /// Remove them; runs then use the CPU until `gpu install`.
    Remove,
    /// Show the GPU found, the libraries, and the device Ollama used last.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the models in the local store.
    List,
    /// Download a model (default: `CODEX_OSS_MODEL` or gpt-oss:20b).
    Pull {
        /// The model, as Ollama names it (default: `CODEX_OSS_MODEL` or gpt-oss:20b).
        model: Option<String>,
    },
    /// Delete a model from the local store.
    Rm {
        /// The model, as `codex-oss models list` names it.
        model: String,
    },
    /// Take a model from another Ollama's store (hard links on the same disk, else a copy;
    /// every blob checked), instead of downloading it again.
    Import {
        /// The other store (default: ~/.ollama/models, then the Linux service's).
        path: Option<std::path::PathBuf>,
        /// The model (default: `CODEX_OSS_MODEL` or gpt-oss:20b).
        #[arg(long, short)]
        model: Option<String>,
    },
}

/// Codex's own subcommands (the pinned Codex's `codex --help`, aliases included) and
/// whether each opens an interactive session (the TUI), after which Codex names the
/// session to continue. A word that is also the launcher's (`update`, `doctor`, `help`)
/// reaches Codex only after a flag (`codex-oss -c x=1 doctor`).
pub const CODEX_SUBCOMMANDS: &[(&str, Session)] = &[
    ("exec", Session::Batch),
    ("e", Session::Batch),
    ("review", Session::Batch),
    ("login", Session::Batch),
    ("logout", Session::Batch),
    ("mcp", Session::Batch),
    ("plugin", Session::Batch),
    ("app-server", Session::Batch),
    ("remote-control", Session::Batch),
    ("completion", Session::Batch),
    ("update", Session::Batch),
    ("doctor", Session::Batch),
    ("sandbox", Session::Batch),
    ("debug", Session::Batch),
    ("apply", Session::Batch),
    ("a", Session::Batch),
    ("resume", Session::Interactive),
    ("fork", Session::Interactive),
    ("queue", Session::Batch),
    ("archive", Session::Batch),
    ("delete", Session::Batch),
    ("migrate-rollouts", Session::Batch),
    ("migrate-nfs-db", Session::Batch),
    ("unarchive", Session::Batch),
    ("cloud", Session::Batch),
    ("exec-server", Session::Batch),
    ("features", Session::Batch),
    ("help", Session::Batch),
    ("agents", Session::Batch),
];

/// What a Codex subcommand runs: the TUI, or a command that ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    Interactive,
    Batch,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Launcher(Cli),
    Codex(Vec<OsString>),
    /// Internal: the watchdog process of a server (see `platform::Watchdog`).
    Watchdog(String),
    /// Internal: the keeper of a shared server (home, key; see `shared`).
    Keeper(String, String),
}

/// True when `word` starts the launcher's own grammar: one of its subcommands (as
/// clap knows them) or a help or version flag.
fn is_launcher_word(word: &str) -> bool {
    matches!(word, "help" | "--help" | "-h" | "--version" | "-V")
        || <Cli as clap::CommandFactory>::command()
            .get_subcommands()
            .any(|sub| sub.get_name() == word || sub.get_all_aliases().any(|a| a == word))
}

/// Splits the launcher's own commands from Codex's.
pub fn parse(args: Vec<OsString>) -> Invocation {
    let arg = |i: usize| args.get(i).and_then(|a| a.to_str());
    let owned = |i: usize| arg(i).unwrap_or_default().to_owned();
    match arg(1) {
        Some(crate::platform::WATCHDOG_COMMAND) => Invocation::Watchdog(owned(2)),
        Some(crate::shared::KEEPER_COMMAND) => Invocation::Keeper(owned(2), owned(3)),
        Some(word) if is_launcher_word(word) => Invocation::Launcher(Cli::parse_from(args)),
        _ => Invocation::Codex(args.into_iter().skip(1).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn codex_arguments_pass_through_untouched() {
        let rest = os(&["exec", "--full-auto", "-m", "x", "fix the test"]);
        match parse([os(&["codex-oss"]), rest.clone()].concat()) {
            Invocation::Codex(got) => assert_eq!(got, rest),
            other => panic!("expected Codex, got {other:?}"),
        }
    }

    #[test]
    fn every_subcommand_is_the_launchers_and_nothing_else_is() {
        for sub in <Cli as clap::CommandFactory>::command().get_subcommands() {
            assert!(is_launcher_word(sub.get_name()), "{}", sub.get_name());
        }
        // Codex's words (its flags, its subcommands) are Codex's, but for the three
        // subcommands the launcher takes first.
        let subcommands = CODEX_SUBCOMMANDS.iter().map(|(word, _)| *word);
        let named = [
            "exec",
            "resume",
            "login",
            "--full-auto",
            "-m",
            "mcp",
            "apply",
        ];
        for word in named.into_iter().chain(subcommands) {
            let shadowed = matches!(word, "update" | "doctor" | "help");
            assert_eq!(is_launcher_word(word), shadowed, "{word}");
        }
    }

    #[test]
    fn launcher_words_are_ours() {
        assert!(matches!(
            parse(os(&["codex-oss", "models", "list"])),
            Invocation::Launcher(_)
        ));
        assert!(matches!(parse(os(&["codex-oss"])), Invocation::Codex(ref a) if a.is_empty()));
    }
}
