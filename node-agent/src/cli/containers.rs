//! `berth run|ps|logs|exec|stop|kill|rm|wait|inspect`.

use anyhow::Result;
use clap::Args;

use crate::paths::Paths;

macro_rules! stub_args {
    ($($name:ident => $f:ident),*) => {
        $(
            #[derive(Args)]
            pub struct $name {
                #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
                pub rest: Vec<String>,
            }
            pub fn $f(_paths: &Paths, _args: $name) -> Result<i32> {
                anyhow::bail!("not implemented yet")
            }
        )*
    };
}

stub_args!(RunArgs => run, PsArgs => ps, LogsArgs => logs, ExecArgs => exec, StopArgs => stop,
    KillArgs => kill, RmArgs => rm, WaitArgs => wait, InspectArgs => inspect, MonitorArgs => monitor);
