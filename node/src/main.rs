//! The `golek` binary: parse the command line, run the command (which starts the log).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = golek_node::cli::Cli::parse();
    match golek_node::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("golek: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
