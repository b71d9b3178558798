//! The one progress display of long work (the model pull, the GPU and update downloads,
//! the model import): a bar on a terminal, plain `codex-oss:` lines otherwise, so that a
//! log or a CI run reads what happened without a screen full of redraws.
//!
//! The caller says what to draw on the bar and which plain lines to print; which of the
//! two reaches the user is decided here, once. `finish` clears the bar (the caller says
//! the result in a line); `abandon` leaves it as it stood, under the error that follows.
//! A progress dropped before either is abandoned.

use std::borrow::Cow;
use std::collections::HashMap;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What the bar shows beside its message.
#[derive(Clone, Copy)]
pub enum Look {
    /// A transfer: bytes, rate and time left.
    Transfer,
    /// Work over bytes already here (hashing): bytes only.
    Bytes,
}

/// A bar on a terminal, plain lines otherwise.
pub struct Progress {
    /// A hidden bar, that draws nothing, without a terminal.
    bar: ProgressBar,
    terminal: bool,
    /// Without a terminal: the last tenth said of each part (`tenth`).
    tenths: HashMap<String, u64>,
}

impl Progress {
    /// A progress of `total` bytes (unknown: `None`) that draws `message` on its bar.
    pub fn new(look: Look, total: Option<u64>, message: impl Into<Cow<'static, str>>) -> Progress {
        let terminal = super::stderr_is_terminal();
        let target = if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let template = match look {
            Look::Transfer => {
                "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
            }
            Look::Bytes => "{msg} {wide_bar} {bytes}/{total_bytes}",
        };
        let bar = ProgressBar::with_draw_target(total, target);
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
        bar.set_message(message);
        Progress {
            bar,
            terminal,
            tenths: HashMap::new(),
        }
    }

    pub fn set_message(&self, message: impl Into<Cow<'static, str>>) {
        self.bar.set_message(message);
    }

    /// The bar's length, once known.
    pub fn set_length(&self, total: u64) {
        self.bar.set_length(total);
    }

    pub fn set_position(&self, done: u64) {
        self.bar.set_position(done);
    }

    pub fn inc(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    /// True when a bar is drawn (and plain lines are not printed).
    pub fn is_bar(&self) -> bool {
        self.terminal
    }

    /// Without a terminal: `<what>: N% of <total>` the first time, and again each time
    /// `part` (one of several downloads, or "") reaches a further tenth.
    pub fn tenth(&mut self, part: &str, what: &str, done: u64, total: u64) {
        if self.terminal {
            return;
        }
        let percent = done * 100 / total.max(1);
        let last = self.tenths.get(part).copied();
        if last.is_none_or(|last| percent / 10 > last / 10) {
            self.tenths.insert(part.to_owned(), percent);
            super::info(format!("{what}: {percent}% of {}", human(total)));
        }
    }

    /// Without a terminal: a line of its own.
    pub fn line(&self, text: impl std::fmt::Display) {
        if !self.terminal {
            super::info(text);
        }
    }

    /// Done: the bar is cleared away.
    pub fn finish(&mut self) {
        self.bar.finish_and_clear();
    }

    /// Stopped short: the bar stays as it stood, above the error that follows.
    pub fn abandon(&mut self) {
        self.bar.abandon();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.abandon();
        }
    }
}

/// `1.4 GB`, `8.4 MB`, `2.3 kB`: sizes as the progress lines and messages say them.
pub fn human(bytes: u64) -> String {
    const GB: u64 = 1_000_000_000;
    const MB: u64 = 1_000_000;
    if bytes >= GB {
        format!("{:.1} GB", bytes as f64 / GB as f64)
    } else if bytes >= MB {
        format!("{:.1} MB", bytes as f64 / MB as f64)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_the_pull_says_them() {
        assert_eq!(human(1_422_416_084), "1.4 GB");
        assert_eq!(human(8_388_608), "8.4 MB");
        assert_eq!(human(2_345), "2.3 kB");
    }
}
