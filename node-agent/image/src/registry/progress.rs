//! What pulls and pushes tell the user as they go: a progress bar per layer on a terminal
//! (indicatif), plain lines otherwise, in Docker's words (`<id>: Pull complete`).

use std::io::Write;
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes. Cheap to clone.
#[derive(Clone)]
pub struct Progress {
    bars: Option<Arc<MultiProgress>>,
    quiet: bool,
}

impl Progress {
    /// Bars on standard error when it is a terminal, else lines on standard output;
    /// `quiet` prints nothing but notes (retries) on standard error.
    pub fn new(terminal: bool, quiet: bool) -> Progress {
        let bars = (terminal && !quiet)
            .then(|| Arc::new(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())));
        Progress { bars, quiet }
    }

    /// A line of the operation's output (`latest: Pulling from me/app`).
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
        }
    }

    /// A note that is not part of the output (a retry), on standard error.
    pub fn note(&self, text: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(format!("berth: {text}"));
            }
            None => eprintln!("berth: {text}"),
        }
    }

    /// A bar for one blob of `total` bytes, labelled with the digest's first 12 digits.
    pub fn bar(&self, digest: &str, total: u64, action: &str) -> Bar {
        let id = short(digest).to_string();
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(total));
            let style = ProgressStyle::with_template(
                "{prefix}: {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(id.clone());
            bar.set_message(action.to_string());
            bar
        });
        Bar {
            id,
            bar,
            progress: self.clone(),
        }
    }
}

/// One blob's progress.
#[derive(Clone)]
pub struct Bar {
    id: String,
    bar: Option<ProgressBar>,
    progress: Progress,
}

impl Bar {
    pub fn set(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
        }
    }

    pub fn inc(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// Ends the bar without a word (a config blob, which Docker does not show).
    pub fn finish_quietly(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Ends the bar with `status` (`Pull complete`, `Layer already exists`).
    pub fn finish(&self, status: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.finish_with_message(status.to_string());
            }
            None => self.progress.line(&format!("{}: {status}", self.id)),
        }
    }
}

/// The first 12 hex digits of a digest, as Docker labels layers.
pub fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    &hex[..hex.len().min(12)]
}
