//! Command-line front end of mamori. Each subcommand is a small module under `commands`;
//! this file sets up logging and the async runtime and dispatches.

pub mod cli;
mod commands;
mod input;
mod login;
mod open;
mod output;
pub mod settings;

use cli::{Cli, Command};
use std::process::ExitCode;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Config { .. } = &cli.command {
        // Printing the default configuration needs neither settings nor a runtime.
        print!("{}", settings::DEFAULT_TOML);
        return Ok(ExitCode::SUCCESS);
    }
    let settings = settings::Settings::load(&cli.global)?;
    init_logging(&settings);
    if mamori_vault::UNAUDITED_BENCHMARK {
        eprintln!(
            "WARNING: UNAUDITED BENCHMARK BUILD. This mamori binary was built with the `unaudited-benchmark` \
             feature: audit events are acknowledged WITHOUT BEING WRITTEN. It exists to measure what auditing \
             costs; never run it on real data."
        );
    }
    // Database calls run on the blocking pool; a small cap keeps a burst of requests from
    // spawning hundreds of threads that then fight over 2 cores.
    let runtime = tokio::runtime::Builder::new_multi_thread().max_blocking_threads(8).enable_all().build()?;
    runtime.block_on(async {
        let outcome = commands::dispatch(cli, settings).await;
        // The command's vault is gone; let its audit writer finish a checkpoint in progress.
        mamori_vault::finish_audit_writers(std::time::Duration::from_secs(3)).await;
        outcome
    })
}

fn init_logging(settings: &settings::Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MAMORI_LOG").unwrap_or_else(|_| EnvFilter::new(&settings.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if settings.log.format == "json" { builder.json().try_init() } else { builder.try_init() };
}
