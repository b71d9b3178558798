//! What the launcher tells the user on stderr: `info:`/`warning:`/`error:` lines,
//! and diagnostics through tracing when `CODEX_OSS_LOG` asks for them.

mod progress;

use std::io::IsTerminal;

pub use progress::{human, Look, Progress};

/// `CODEX_OSS_LOG=debug` (an env-filter) shows the launcher's diagnostics.
pub fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env(crate::env_vars::EnvVars::CODEX_OSS_LOG)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}

/// A line of the command's output on stdout. A reader that went away (`codex-oss models
/// list | head -1`) is not an error: the rest of the output is dropped, and the command
/// goes on to finish its work (stopping its server) as usual.
pub fn out(line: impl std::fmt::Display) {
    out_bytes(format!("{line}\n").as_bytes());
}

/// Bytes on stdout, with the same tolerance as `out`.
pub fn out_bytes(bytes: &[u8]) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

pub fn info(message: impl std::fmt::Display) {
    say(format_args!("codex-oss: {message}"));
}

pub fn warn(message: impl std::fmt::Display) {
    say(format_args!("codex-oss: warning: {message}"));
}

/// `error: <message>` and then one `  caused by:` line per underlying cause.
pub fn error(err: &anyhow::Error) {
    say(format_args!("codex-oss: error: {err}"));
    for cause in err.chain().skip(1) {
        say(format_args!("  caused by: {cause}"));
    }
}

/// A line on stderr; a closed stderr is no reason to stop (`eprintln!` would panic).
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
