//! The `mamori` binary: parse the command line, run the command, map the outcome to an exit
//! status. Everything else lives in the library crates.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = mamori::cli::Cli::parse();
    match mamori::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
