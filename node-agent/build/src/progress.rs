//! What a build shows while it runs, on standard error as BuildKit does (standard output
//! is left for `-q`'s image id): one line per step with CACHED or its time; RUN output
//! streamed (`plain`) or the latest line under a live step line (`tty`); nothing with
//! `quiet`. The last lines of a step's output are kept to show when it fails.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How many lines of a failed step's output are shown.
const TAIL: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Tty,
    Quiet,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown progress mode \"{mode}\"; use auto, plain or tty")]
pub struct ModeError {
    pub mode: String,
}

impl Mode {
    /// `--progress auto|plain|tty`, with `-q` winning.
    pub fn choose(progress: &str, quiet: bool) -> Result<Mode, ModeError> {
        Ok(match (quiet, progress) {
            (true, _) => Mode::Quiet,
            (_, "plain") => Mode::Plain,
            (_, "tty") => Mode::Tty,
            (_, "auto") if std::io::stderr().is_terminal() => Mode::Tty,
            (_, "auto") => Mode::Plain,
            (_, other) => {
                return Err(ModeError {
                    mode: other.to_string(),
                });
            }
        })
    }
}

pub struct Progress {
    mode: Mode,
    step: String,
    started: Instant,
    tail: VecDeque<String>,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(mode: Mode) -> Progress {
        Progress {
            mode,
            step: String::new(),
            started: Instant::now(),
            tail: VecDeque::new(),
            bar: None,
        }
    }

    /// A step begins; `step` is its label, `[3/14] RUN chmod +x boot.sh`.
    pub fn start(&mut self, step: String) {
        self.started = Instant::now();
        self.tail.clear();
        if self.mode == Mode::Tty {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {elapsed}\n  {wide_msg:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(step.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            self.bar = Some(bar);
        }
        self.step = step;
    }

    /// A line of the running step's output.
    pub fn output(&mut self, line: &str) {
        let line = line.trim_end_matches('\n');
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
        match self.mode {
            Mode::Plain => {
                let label = self.step.split(']').next().unwrap_or_default();
                eprintln!("{label}] | {line}");
            }
            Mode::Tty => {
                if let Some(bar) = &self.bar {
                    bar.set_message(line.to_string());
                }
            }
            Mode::Quiet => {}
        }
    }

    /// The step is done: from the cache, or after running for as long as it took.
    pub fn finish(&mut self, cached: bool) {
        let status = if cached {
            "CACHED".to_string()
        } else {
            format!("{:.2}s", self.started.elapsed().as_secs_f64())
        };
        self.clear();
        if self.mode != Mode::Quiet {
            eprintln!("{} {status}", self.step);
        }
    }

    /// The step failed: its label and last lines of output go to standard error
    /// whatever the mode, so that a quiet build still says why.
    pub fn fail(&mut self) {
        self.clear();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{} FAILED", self.step);
        if self.mode != Mode::Plain {
            for line in &self.tail {
                let _ = writeln!(err, "  | {line}");
            }
        }
    }

    /// A line of its own (tagging, warnings), unless quiet.
    pub fn note(&self, text: &str) {
        if self.mode != Mode::Quiet {
            eprintln!("{text}");
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
