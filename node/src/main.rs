//! The `golek` binary: parse the command line, start logging, run the command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = golek_node::cli::Cli::parse();
    golek_node::init_tracing();
    match golek_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("golek: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
