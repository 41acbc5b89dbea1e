//! The `ferry` command line: parses arguments, sets up logging and the runtime, and calls into
//! the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use ferry::app::{self, RunOptions};
use ferry::config::{Config, LogFormat};
use ferry::position::BinlogPosition;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Replicate a live MySQL/MariaDB database into PostgreSQL, exactly"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the replication daemon.
    Run {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Resume from the target's checkpoint even though ferry's local state is ahead of it.
        #[arg(long)]
        accept_target_rewind: bool,
        /// Skip the schema change at FILE:OFFSET once (after mirroring it in PostgreSQL).
        #[arg(long, value_name = "FILE:OFFSET")]
        skip_ddl: Option<BinlogPosition>,
    },
    /// Check the configuration and run every preflight check; writes nothing.
    Validate {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
    },
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Cmd::Run {
            config,
            accept_target_rewind,
            skip_ddl,
        } => {
            let config = Config::load(&config)?;
            init_logging(&config.log_level, config.log_format);
            runtime.block_on(async move {
                let _metrics = ferry::metrics::install();
                let commands = ferry::control::listen().context("installing signal handlers")?;
                let options = RunOptions {
                    accept_target_rewind,
                    skip_ddl,
                    drain_deadline: None,
                };
                match app::run(config, options, commands).await {
                    Ok(()) => {
                        tracing::info!("stopped");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "stopped on a definite error");
                        eprintln!("ferry: {e}");
                        Ok(ExitCode::from(1))
                    }
                }
            })
        }
        Cmd::Validate { config } => {
            let config = Config::load(&config)?;
            init_logging("warn", config.log_format);
            runtime.block_on(async move {
                let report = ferry::source::preflight::run(&config).await;
                for c in &report.checks {
                    println!("{c}");
                }
                if report.passed() {
                    println!(
                        "\nconfiguration and preflight: OK ({} tables)",
                        report.tables.len()
                    );
                    Ok(ExitCode::SUCCESS)
                } else {
                    println!("\npreflight FAILED");
                    Ok(ExitCode::from(1))
                }
            })
        }
    }
}
