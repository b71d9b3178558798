//! What the launcher tells the user on stderr: `info:`/`warning:`/`error:` lines,
//! and diagnostics through tracing when `CODEX_OSS_LOG` asks for them.
//!
//! Only this module and `commands` print. A lower module that has something to tell the
//! user sends it up as a tracing event with the target `codex_oss::user` (main.rs's
//! `say!` and `caution!`), and `init_tracing`'s user layer renders it here, as
//! `codex-oss: <message>` or `codex-oss: warning: <message>`, whatever `CODEX_OSS_LOG`
//! says. Every other event is a diagnostic, shown by the fmt layer under `CODEX_OSS_LOG`
//! (default `warn`).

mod progress;

use std::io::{IsTerminal, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, EnvFilter};

/// The tracing target of what lower modules tell the user (main.rs's `say!`, `caution!`).
pub const USER_TARGET: &str = "codex_oss::user";

pub use progress::{human, Look, Progress};

/// The user lines and, under `CODEX_OSS_LOG` (an env-filter such as `debug`), the
/// launcher's diagnostics, on stderr.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_env(crate::env_vars::EnvVars::CODEX_OSS_LOG)
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    subscriber(filter, std::io::stderr, std::io::stderr).init();
}

/// The diagnostics `filter` lets through go to `diagnostics`, the user's lines to `user`.
fn subscriber<D, U>(filter: EnvFilter, diagnostics: D, user: U) -> impl Subscriber + Send + Sync
where
    D: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    U: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(diagnostics)
        .without_time()
        .with_target(false)
        .with_filter(filter::FilterExt::and(
            filter,
            filter::filter_fn(|meta| meta.target() != USER_TARGET),
        ));
    let user = UserLines(user).with_filter(filter::filter_fn(|meta| meta.target() == USER_TARGET));
    tracing_subscriber::registry().with(diagnostics).with(user)
}

/// Renders the `codex_oss::user` events as `info` and `warn` print them.
struct UserLines<W>(W);

impl<S: Subscriber, W: for<'w> MakeWriter<'w> + 'static> Layer<S> for UserLines<W> {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        // WARN or ERROR: tracing orders the louder levels first.
        let line = if *event.metadata().level() <= Level::WARN {
            format!("codex-oss: warning: {}\n", message.0)
        } else {
            format!("codex-oss: {}\n", message.0)
        };
        // A closed stderr is no reason to stop.
        let _ = self.0.make_writer().write_all(line.as_bytes());
    }
}

/// An event's `message` field.
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// A line of the command's output on stdout. A reader that went away (`codex-oss models
/// list | head -1`) is not an error: the rest of the output is dropped, and the command
/// goes on to finish its work (stopping its server) as usual.
pub fn out(line: impl std::fmt::Display) {
    out_bytes(format!("{line}\n").as_bytes());
}

/// Bytes on stdout, with the same tolerance as `out`.
pub fn out_bytes(bytes: &[u8]) {
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
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tempfile::NamedTempFile;

    use super::*;

    #[test]
    fn user_lines_print_whatever_the_log_filter_says() {
        // Temporary files stand in for stderr.
        let file = || Arc::new(NamedTempFile::new().unwrap());
        let (diagnostics, user) = (file(), file());
        let subscriber = subscriber(EnvFilter::new("error"), diagnostics.clone(), user.clone());
        tracing::subscriber::with_default(subscriber, || {
            caution!("{} is almost full", "/home");
            tracing::warn!("a filtered diagnostic");
            say!("pulled gpt-oss:20b");
            tracing::error!("a shown diagnostic");
        });
        let text = |file: &NamedTempFile| std::fs::read_to_string(file.path()).unwrap();
        assert_eq!(
            text(&user),
            "codex-oss: warning: /home is almost full\ncodex-oss: pulled gpt-oss:20b\n"
        );
        let diagnostics = text(&diagnostics);
        assert!(diagnostics.contains("a shown diagnostic"), "{diagnostics}");
        assert!(!diagnostics.contains("filtered"), "{diagnostics}");
        assert!(!diagnostics.contains("codex-oss"), "{diagnostics}");
    }
}
