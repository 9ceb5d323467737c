//! `berth login|logout|pull|push`, and the pull `berth run` makes when it lacks an image.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;
use nix::sys::termios::{self, LocalFlags, SetArg};

use crate::EXIT_BERTH_ERROR;
use berth_engine::Paths;
use berth_image::registry::{self, Credentials, Options, Progress};
use berth_image::{self as image, ImageStore, Reference};

#[derive(Args)]
pub struct TlsArgs {
    /// Require verified HTTPS (true) or allow unverified HTTPS and plain HTTP (false); by
    /// default only loopback registries and those in BERTH_INSECURE_REGISTRIES may be
    /// insecure
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    tls_verify: Option<bool>,
}

#[derive(Args)]
pub struct LoginArgs {
    /// The registry, HOST[:PORT] (Docker Hub when absent)
    server: Option<String>,
    /// Username (asked for when absent)
    #[arg(short, long)]
    username: Option<String>,
    /// Read the password from standard input (it is asked for otherwise)
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// The registry, HOST[:PORT] (Docker Hub when absent)
    server: Option<String>,
}

#[derive(Args)]
pub struct PullArgs {
    /// NAME[:TAG] or NAME@DIGEST
    image: String,
    /// Print only the image's name
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args)]
pub struct PushArgs {
    /// NAME[:TAG] of a local image
    image: String,
    /// Print only the image's name
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

pub fn login(args: LoginArgs) -> Result<i32> {
    let server = registry::server(args.server.as_deref())?;
    let username = match args.username {
        Some(username) => username,
        None if args.password_stdin => bail!("--password-stdin needs a username: add -u USER"),
        None => ask("Username: ", true)?,
    };
    let password = if args.password_stdin {
        let mut input = String::new();
        io::stdin()
            .lock()
            .read_to_string(&mut input)
            .context("reading the password from standard input")?;
        input.trim_end_matches(['\n', '\r']).to_string()
    } else {
        ask("Password: ", false)?
    };
    if username.is_empty() || password.is_empty() {
        bail!("the username and the password must not be empty");
    }
    let credentials = Credentials { username, password };
    registry::login(
        &server,
        &credentials,
        &Options::from_env(args.tls.tls_verify),
    )?;
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(args: LogoutArgs) -> Result<i32> {
    let server = registry::server(args.server.as_deref())?;
    if registry::logout(&server, &Options::from_env(None))? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(0)
}

pub fn pull(paths: &Paths, args: PullArgs) -> Result<i32> {
    let reference = Reference::parse(&args.image)?;
    let progress = Progress::new(io::stderr().is_terminal(), args.quiet);
    let options = Options::from_env(args.tls.tls_verify);
    let pulled = registry::pull(&paths.root, &reference, &options, &progress)?;
    if !args.quiet {
        println!("Digest: {}", pulled.digest);
        let status = if pulled.changed {
            "Downloaded newer image"
        } else {
            "Image is up to date"
        };
        println!("Status: {status} for {}", reference.familiar());
    }
    println!("{reference}");
    Ok(0)
}

pub fn push(paths: &Paths, args: PushArgs) -> Result<i32> {
    let reference = Reference::parse(&args.image)?;
    let progress = Progress::new(io::stderr().is_terminal(), args.quiet);
    let options = Options::from_env(args.tls.tls_verify);
    let pushed = registry::push(&paths.root, &reference, &options, &progress)?;
    if args.quiet {
        println!("{}", reference.familiar());
    } else {
        let tag = reference.tag().unwrap_or_default();
        println!("{tag}: digest: {} size: {}", pushed.digest, pushed.size);
    }
    Ok(0)
}

/// Before `berth run` makes a container: pulls `image` when the store has nothing by that
/// name. The pull is a child `berth pull`, because `run` clones the container's first
/// process from its own and so must never start threads (the pull's runtime does). Its
/// output goes to standard error, as Docker's does, leaving standard output to the
/// container. Returns the exit code to end with when the pull failed.
pub(super) fn pull_if_absent(paths: &Paths, image: &str) -> Result<Option<i32>> {
    match ImageStore::open(&paths.root)?.resolve(image) {
        Err(image::Error::NotFound(_)) => {}
        // Found, or an error that making the container reports.
        _ => return Ok(None),
    }
    let Ok(reference) = Reference::parse(image) else {
        return Ok(None);
    };
    eprintln!("Unable to find image '{}' locally", reference.familiar());
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating standard error")?;
    let status = Command::new("/proc/self/exe")
        .args(["pull", image])
        .envs(paths.env())
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .status()
        .context("starting berth pull")?;
    Ok((!status.success()).then_some(EXIT_BERTH_ERROR))
}

/// Asks on the terminal (not standard input, which may carry something else), without
/// echo for a password.
fn ask(prompt: &str, echo: bool) -> Result<String> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("cannot ask for credentials without a terminal; use -u USER --password-stdin")?;
    (&tty).write_all(prompt.as_bytes())?;
    let saved = termios::tcgetattr(tty.as_fd()).context("reading the terminal's settings")?;
    if !echo {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        termios::tcsetattr(tty.as_fd(), SetArg::TCSANOW, &quiet)
            .context("turning the terminal's echo off")?;
    }
    let answer = read_line(&tty);
    if !echo {
        let _ = termios::tcsetattr(tty.as_fd(), SetArg::TCSANOW, &saved);
        let _ = (&tty).write_all(b"\n");
    }
    answer
}

fn read_line(tty: &File) -> Result<String> {
    let mut line = String::new();
    BufReader::new(tty)
        .read_line(&mut line)
        .context("reading from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
