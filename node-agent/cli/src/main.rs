//! `berth`: docker-compatible commands and flags over the engine. One module per
//! command group; this file parses the command line and dispatches.

mod build;
mod containers;
mod format;
mod images;
mod inspect;
mod networks;
mod registry;
mod run;
mod volumes;

use clap::{Parser, Subcommand};

use berth_engine::Paths;
use berth_engine::monitor;

/// Docker's exit code for a failure of the tool itself (as opposed to the container).
const EXIT_BERTH_ERROR: i32 = 125;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Build, run and share containers",
    disable_help_subcommand = true
)]
struct Cli {
    /// Persistent state: images, layers, containers, volumes
    #[arg(
        long,
        global = true,
        env = "BERTH_ROOT",
        default_value = "/var/lib/berth"
    )]
    root: std::path::PathBuf,
    /// Runtime state that does not outlive a reboot
    #[arg(
        long = "runroot",
        global = true,
        env = "BERTH_RUN",
        default_value = "/run/berth"
    )]
    run: std::path::PathBuf,
    /// The cgroup under which containers get theirs
    #[arg(
        long,
        global = true,
        env = "BERTH_CGROUP_PARENT",
        default_value = "berth"
    )]
    cgroup_parent: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and run a new container from an image
    Run(Box<run::RunArgs>),
    /// List containers
    Ps(containers::PsArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Run a command in a running container
    Exec(containers::ExecArgs),
    /// Stop running containers (STOPSIGNAL, then SIGKILL after a grace period)
    Stop(containers::StopArgs),
    /// Send a signal to running containers
    Kill(containers::KillArgs),
    /// Remove containers
    Rm(containers::RmArgs),
    /// Block until containers stop, then print their exit codes
    Wait(containers::WaitArgs),
    /// Show low-level information on containers or images, as JSON
    Inspect(inspect::InspectArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Show the history of an image
    History(build::HistoryArgs),
    /// Manage the build cache
    #[command(subcommand)]
    Builder(build::BuilderCommand),
    /// List images
    Images(images::ImagesArgs),
    /// Create an image from a tarball of a root filesystem
    Import(images::ImportArgs),
    /// Save images to a tar archive (docker-archive or oci-archive)
    Save(images::SaveArgs),
    /// Load images from a tar archive
    Load(images::LoadArgs),
    /// Give an image another name
    Tag(images::TagArgs),
    /// Remove images
    Rmi(images::RmiArgs),
    /// Log in to a registry
    Login(registry::LoginArgs),
    /// Log out from a registry
    Logout(registry::LogoutArgs),
    /// Download an image from a registry
    Pull(registry::PullArgs),
    /// Upload an image to a registry
    Push(registry::PushArgs),
    /// List a container's published ports
    Port(networks::PortArgs),
    /// Manage networks
    #[command(subcommand)]
    Network(networks::NetworkCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volumes::VolumeCommand),
}

/// Runs the command line and returns the process exit code.
fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BERTH_ERROR } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let paths = Paths {
        root: cli.root,
        run: cli.run,
        cgroup_parent: cli.cgroup_parent,
        ..Paths::from_env()
    };
    if nix::unistd::geteuid().is_root()
        && let Err(e) = berth_engine::lifecycle::reap_dead(&paths)
    {
        eprintln!("berth: cleaning up after dead containers: {e}");
    }
    let result = match cli.command {
        Command::Run(a) => run::run(&paths, *a),
        Command::Ps(a) => containers::ps(&paths, a),
        Command::Logs(a) => containers::logs(&paths, a),
        Command::Exec(a) => containers::exec(&paths, a),
        Command::Stop(a) => containers::stop(&paths, a),
        Command::Kill(a) => containers::kill(&paths, a),
        Command::Rm(a) => containers::rm(&paths, a),
        Command::Wait(a) => containers::wait(&paths, a),
        Command::Inspect(a) => inspect::inspect(&paths, a),
        Command::Build(a) => build::build(&paths, a),
        Command::History(a) => build::history(&paths, a),
        Command::Builder(c) => build::builder(&paths, c),
        Command::Images(a) => images::images(&paths, a),
        Command::Import(a) => images::import(&paths, a),
        Command::Save(a) => images::save(&paths, a),
        Command::Load(a) => images::load(&paths, a),
        Command::Tag(a) => images::tag(&paths, a),
        Command::Rmi(a) => images::rmi(&paths, a),
        Command::Login(a) => registry::login(a),
        Command::Logout(a) => registry::logout(a),
        Command::Pull(a) => registry::pull(&paths, a),
        Command::Push(a) => registry::push(&paths, a),
        Command::Port(a) => networks::port(&paths, a),
        Command::Network(c) => networks::run(&paths, c),
        Command::Volume(c) => volumes::run(&paths, c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e:#}");
            EXIT_BERTH_ERROR
        }
    }
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    // The detached monitor's entry skips the command line parser: it stays small.
    let code = if args.next().as_deref() == Some(std::ffi::OsStr::new(monitor::ENTRY)) {
        monitor::detached_main(args.next().as_deref())
    } else {
        run()
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
