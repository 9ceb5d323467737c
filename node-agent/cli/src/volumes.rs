//! `berth volume create|ls|inspect|rm`.

use anyhow::Result;
use clap::Subcommand;

use crate::format::table;
use berth_engine::Paths;
use berth_engine::container;
use berth_engine::volume;

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create { name: String },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        /// Only display volume names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show volumes as JSON
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses them)
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub fn run(paths: &Paths, cmd: VolumeCommand) -> Result<i32> {
    match cmd {
        VolumeCommand::Create { name } => {
            println!("{}", volume::create(paths, &name)?.name);
        }
        VolumeCommand::Ls { quiet } => {
            let volumes = volume::list(paths)?;
            if quiet {
                volumes.iter().for_each(|v| println!("{}", v.name));
            } else {
                let rows: Vec<Vec<String>> = volumes
                    .iter()
                    .map(|v| vec![v.driver.clone(), v.name.clone()])
                    .collect();
                print!("{}", table(&["DRIVER", "VOLUME NAME"], &rows));
            }
        }
        VolumeCommand::Inspect { names } => {
            let vs = names
                .iter()
                .map(|n| volume::inspect(paths, n))
                .collect::<Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&vs)?);
        }
        VolumeCommand::Rm { names } => {
            let containers = container::list(paths)?;
            for name in names {
                let users: Vec<String> = containers
                    .iter()
                    .filter(|c| {
                        c.config
                            .mounts
                            .iter()
                            .any(|m| m.name.as_deref() == Some(name.as_str()))
                    })
                    .map(|c| c.config.name.clone())
                    .collect();
                volume::remove(paths, &name, &users)?;
                println!("{name}");
            }
        }
    }
    Ok(0)
}
