//! The runner of the e2e test targets (`harness = false` in Cargo.toml).
//!
//! Why not libtest's `#[test]` functions sharing a cluster in a `OnceLock`: a static is
//! never dropped and libtest offers no hook after the last test, so the cluster (processes
//! in their own sessions, namespaces, a bridge) would outlive the run, or be taken down by
//! whichever test believes it is last, which filtering, parallel threads and failures make
//! guesswork. Libtest would also run the scenarios in parallel and in any order, while some
//! of them stop hosts, the controller or the API server under the others' feet.
//!
//! So each test target has a `main` calling [`run`]: the scenarios run one at a time, in
//! the order given, each reported on its own (`test NAME ... ok|FAILED`, a panic in one is
//! caught and the next runs), against a fixture made once, and only if some scenario is
//! selected; the fixture is dropped after the last one whatever happened (for a cluster:
//! `cluster.sh down`), and [`crate::take_down_on_signals`] covers Ctrl-C. Libtest's usual
//! arguments work: name filters (substrings, or `--exact`), `--skip`, `--list`; the
//! others (`--nocapture`, `--test-threads`...) are accepted and change nothing (output is
//! never captured, scenarios never run in parallel).

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Instant;

/// A scenario: its name and what it does with the fixture.
pub type Case<T> = (&'static str, fn(&T));

/// Libtest's options that take a value (as the next argument when not `--opt=value`).
const WITH_VALUE: [&str; 7] = [
    "--test-threads",
    "--skip",
    "--format",
    "--color",
    "--logfile",
    "-Z",
    "--shuffle-seed",
];

struct Selection {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    list: bool,
}

impl Selection {
    fn parse(args: impl IntoIterator<Item = String>) -> Selection {
        let mut s = Selection {
            filters: Vec::new(),
            skip: Vec::new(),
            exact: false,
            list: false,
        };
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--exact" => s.exact = true,
                "--list" => s.list = true,
                "--skip" => s.skip.extend(args.next()),
                _ if WITH_VALUE.contains(&a.as_str()) => {
                    args.next();
                }
                _ => match a.strip_prefix("--skip=") {
                    Some(skip) => s.skip.push(skip.to_string()),
                    None if a.starts_with('-') => {}
                    None => s.filters.push(a),
                },
            }
        }
        s
    }

    fn matches(&self, pattern: &str, name: &str) -> bool {
        if self.exact {
            name == pattern
        } else {
            name.contains(pattern)
        }
    }

    fn selects(&self, name: &str) -> bool {
        (self.filters.is_empty() || self.filters.iter().any(|f| self.matches(f, name)))
            && !self.skip.iter().any(|f| self.matches(f, name))
    }
}

/// Runs the selected `cases` in order against one fixture made by `setup`; `before_each`
/// runs first in every case (as part of it: its failure is the case's). Returns failure
/// if any case failed, or if `setup` did (every selected case then fails).
pub fn run<T>(setup: impl FnOnce() -> T, before_each: fn(&T), cases: &[Case<T>]) -> ExitCode {
    let selection = Selection::parse(std::env::args().skip(1));
    let selected: Vec<&Case<T>> = cases.iter().filter(|(n, _)| selection.selects(n)).collect();
    if selection.list {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    let mut passed = 0;
    if !selected.is_empty() {
        match catch_unwind(AssertUnwindSafe(setup)) {
            Err(_) => {
                println!("the fixture could not be set up: every test fails");
                failed.extend(selected.iter().map(|(n, _)| *n));
            }
            Ok(fixture) => {
                for (name, case) in &selected {
                    print!("test {name} ... ");
                    std::io::stdout().flush().ok();
                    let t = Instant::now();
                    let result = catch_unwind(AssertUnwindSafe(|| {
                        before_each(&fixture);
                        case(&fixture);
                    }));
                    let secs = t.elapsed().as_secs_f64();
                    match result {
                        Ok(()) => {
                            passed += 1;
                            println!("ok ({secs:.1}s)");
                        }
                        Err(_) => {
                            failed.push(*name);
                            println!("FAILED ({secs:.1}s)");
                        }
                    }
                }
                // The fixture goes (the cluster is taken down) before the summary.
                drop(fixture);
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.1}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        cases.len() - selected.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::Selection;

    fn parse(args: &[&str]) -> Selection {
        Selection::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn selects_as_libtest_does() {
        let all = parse(&["--nocapture", "--test-threads", "4"]);
        assert!(all.selects("scale") && all.filters.is_empty());
        let some = parse(&["--test-threads=4", "scale", "--skip", "down"]);
        assert!(some.selects("scale_up"));
        assert!(!some.selects("scale_down"));
        assert!(!some.selects("host_loss"));
        let exact = parse(&["--exact", "scale"]);
        assert!(exact.selects("scale") && !exact.selects("scale_up"));
        assert!(parse(&["--list"]).list);
    }
}
