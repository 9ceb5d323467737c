use std::ffi::OsStr;

use berth::runtime::monitor;

fn main() {
    let mut args = std::env::args_os().skip(1);
    // The detached monitor's entry skips the command line parser: it stays small.
    let code = if args.next().as_deref() == Some(OsStr::new(monitor::ENTRY)) {
        monitor::detached_main(args.next().as_deref())
    } else {
        berth::cli::main()
    };
    std::process::exit(code);
}
