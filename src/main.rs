//! The `ferry` command line: parses arguments, sets up logging and the runtime, and calls into
//! the library.
//!
//! Exit status of `ferry run`: 0 stopped on request; 78 (`EX_CONFIG`) a definite error only the
//! operator can fix (invalid config, preflight refusal, rewound target, schema change, purged
//! binlog, refused data) — the systemd unit does not restart on it; 1 an error that may pass by
//! itself (a server unreachable at start) — systemd restarts ferry after `RestartSec`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// mimalloc: the apply path allocates small strings per value; glibc malloc spent ~45% of
/// ferry's CPU in a catch-up profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};

use ferry::app::{self, RunOptions};
use ferry::config::Config;
use ferry::logging;
use ferry::migration::cutover::{self, parse_duration, CutoverOptions};
use ferry::position::BinlogPosition;
use ferry::reverse::rollback;

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
    /// Show the running daemon's state (from its HTTP status endpoint).
    Status {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Print the raw JSON instead of the dashboard.
        #[arg(long)]
        json: bool,
    },
    /// Re-copy one table while streaming continues (the running daemon picks the request up).
    Backfill {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
        /// The source table, as db.table.
        #[arg(long)]
        table: String,
        /// Wait until the re-copy is done (or failed) and show its progress.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up when the request shows no progress for this long (not picked
        /// up by a running ferry, or the daemon stopped mid-copy).
        #[arg(long, value_name = "SECONDS", default_value_t = 600.0)]
        stall_timeout: f64,
    },
    /// Go back to MySQL after a cutover without losing a write: freeze the application roles
    /// on PostgreSQL, drain the reverse stream, check, make MySQL writable, resume the forward
    /// stream. Exit 0: rolled back (or a dry run whose checks pass); 1: refused or stopped; 2: error.
    Rollback {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Check and print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Undo a rollback under way (its command stopped, or it must not go on): the roles get
        /// their recorded state back, MySQL is read-only again, PostgreSQL stays primary.
        #[arg(long, conflicts_with = "dry_run")]
        abort: bool,
        /// Longest the freeze and the drain may take.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Switches the application back to MySQL, run with `sh -c` once MySQL is writable.
        /// Environment: FERRY_STREAM, FERRY_PHASE=rollback, FERRY_RESUME_POSITION,
        /// FERRY_SOURCE_HOST/PORT.
        #[arg(long, value_name = "CMD")]
        switch_command: Option<String>,
        /// A PostgreSQL role the application writes with (repeat for several): made NOLOGIN and
        /// read-only, its sessions ended.
        #[arg(long = "app-role", value_name = "ROLE")]
        app_roles: Vec<String>,
        /// Tables with more keys changed by the reverse stream than this are compared by a full
        /// checksum pass instead of key by key.
        #[arg(long, value_name = "N", default_value_t = 1_000_000)]
        max_changed_keys: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// End the migration after the rollback window: drop the reverse stream's slot and
    /// publication (a forgotten slot fills PostgreSQL's disk) and record the end.
    Complete {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause replication at the next transaction boundary (sends SIGUSR1; survives restarts).
    Pause {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
    },
    /// Resume replication (sends SIGUSR2).
    Resume {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
    },
    /// The PostgreSQL schema ferry creates for the replicated tables, and what it does not
    /// carry; with --sync-sequences, set every AUTO_INCREMENT column's sequence past the
    /// source's counter and the column's maximum (idempotent; the cutover runs it too).
    Schema {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Set every identity/sequence past max(column) and the source's AUTO_INCREMENT.
        #[arg(long)]
        sync_sequences: bool,
        /// Report, per foreign key, the PostgreSQL rows without a parent (read-only; safe
        /// while ferry streams). Exit 1 when some exist.
        #[arg(long, conflicts_with = "sync_sequences")]
        validate_foreign_keys: bool,
        /// With --validate-foreign-keys: also create the missing foreign keys (NOT VALID) and
        /// validate those without violations. Only after ferry's last write (after the switch):
        /// PostgreSQL checks every later write against them, ferry's too.
        #[arg(long, requires = "validate_foreign_keys")]
        create: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Switch the application to PostgreSQL: freeze writes on the source, drain, verify what
    /// changed, run the switch command. Exit 0: switched (or a dry run whose checks pass);
    /// 1: refused or aborted (the source is writable again); 2: error.
    Cutover {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Print the plan with every check's result and the expected window; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Undo a cutover that has not switched yet (the source becomes writable again).
        #[arg(long)]
        abort: bool,
        /// Refuse while ferry lags more than this.
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
        max_lag: std::time::Duration,
        /// Longest the source stays frozen waiting for writers and the drain before aborting.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// The operator's switch (feature flag, PgBouncer/HAProxy, DNS), run with `sh -c`;
        /// its failure aborts. Environment: FERRY_STREAM, FERRY_PHASE, FERRY_FINAL_POSITION,
        /// FERRY_FINAL_GTID, FERRY_TARGET_HOST/PORT/DATABASE.
        #[arg(long, value_name = "CMD")]
        switch_command: Option<String>,
        /// End write transactions still open this long after the freeze (without it they abort
        /// the cutover once --timeout passes).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        kill_writers_after: Option<std::time::Duration>,
        /// The last matched verification pass may be at most this old.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
        max_verify_age: std::time::Duration,
        /// Tables with more changed keys than this get a full checksum pass when frozen.
        #[arg(long, value_name = "N", default_value_t = 1_000_000)]
        max_changed_keys: usize,
        /// Do not require the reverse stream's prerequisites (no rollback after the switch).
        #[arg(long)]
        without_rollback: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure both databases and write the migration plan (Markdown, or JSON): current state,
    /// workload, readiness per table, a data scan, objects not carried, estimates from a sample
    /// copy, the phases and their commands. Read-only. Exit 0: nothing blocks; 1: blockers
    /// (each with its fix); 2: error.
    Plan {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Length of the workload sample (SHOW GLOBAL STATUS deltas); the data scan runs meanwhile.
        #[arg(long, value_name = "SECONDS", default_value_t = 15.0)]
        sample_seconds: f64,
        /// Rate limit of the data scan on the source (0: unlimited).
        #[arg(long, value_name = "N", default_value_t = 250_000)]
        scan_rows_per_second: u64,
        /// Scan at most this many rows per table (default: all; 0: no scan).
        #[arg(long, value_name = "N")]
        scan_max_rows: Option<u64>,
        /// Tables whose first chunks are copied into a rolled-back scratch schema on the
        /// target to measure the backfill (largest first).
        #[arg(long, value_name = "N", default_value_t = 2)]
        sample_tables: usize,
        /// Print the plan as JSON.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Markdown, or one self-contained HTML page (default: HTML when FILE ends in .html).
        #[arg(long, value_enum)]
        format: Option<ferry::html_page::Format>,
        /// Write the plan to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// The stakeholder update: the migration so far as Markdown or one HTML page (phase
    /// timeline, rows copied, verification history, incidents, schema changes, the cutover
    /// window), from ferry's records on the target. Read-only.
    Report {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Markdown, or one self-contained HTML page (default: HTML when FILE ends in .html).
        #[arg(long, value_enum)]
        format: Option<ferry::html_page::Format>,
        /// Write the report to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Prove the target matches the source: row counts, checksums of key chunks computed inside
    /// both databases, bisection down to the differing rows. Exit 0: match; 1: differences;
    /// 2: error.
    Verify {
        #[arg(long, short, default_value = "config.toml", env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Verify only this table (`db.table`; repeatable). Default: every replicated table.
        #[arg(long = "table", value_name = "DB.TABLE")]
        tables: Vec<String>,
        /// Also compare N random rows per table (from each side) value by value.
        #[arg(long, value_name = "N", default_value_t = 0)]
        sample: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Re-copy the differing rows from the source (audited in <ferry_schema>.verify_repairs).
        #[arg(long)]
        repair: bool,
        /// Rows per checksum chunk (default: verify.chunk_rows).
        #[arg(long, value_name = "ROWS")]
        chunk_rows: Option<u64>,
        /// Concurrent chunk workers (default: verify.parallel).
        #[arg(long, value_name = "N")]
        parallel: Option<usize>,
        /// Limit the load on the source to this many rows per second (default: no limit).
        #[arg(long, value_name = "ROWS")]
        rows_per_second: Option<u64>,
        /// Longest wait for replication before re-checking candidate rows (default:
        /// verify.settle_timeout_seconds).
        #[arg(long, value_name = "SECONDS")]
        settle_timeout: Option<f64>,
    },
}

/// Sends `signal` to the daemon whose pid file is in the config's state directory.
fn signal_daemon(config: &std::path::Path, signal: i32, what: &str) -> anyhow::Result<ExitCode> {
    let config = Config::load_for_control(config)?;
    let pid = ferry::pidfile::signal_daemon(&config.state_dir, signal)?;
    println!("{what} requested (pid {pid})");
    Ok(ExitCode::SUCCESS)
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
            let config_path = config;
            let config = match Config::load(&config_path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ferry: {e}");
                    return Ok(ExitCode::from(app::EXIT_DEFINITE));
                }
            };
            let log = logging::init(&config.log_level, config.log_format);
            let (target, stream) = (config.target.clone(), config.stream.clone());
            runtime.block_on(async move {
                let commands = ferry::control::listen().context("installing signal handlers")?;
                let options = RunOptions {
                    accept_target_rewind,
                    skip_ddl,
                    drain_deadline: None,
                    config_path: Some(config_path),
                    log: Some(log),
                };
                match app::run(config, options, commands).await {
                    Ok(()) => {
                        tracing::info!("stopped");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        let code = e.exit_code();
                        if e.class().is_definite() {
                            tracing::error!(error = %e, exit_status = code, "stopped on a definite error: fix it, then start ferry again");
                            app::record_stop(&target, &stream, &e.to_string(), code).await;
                        } else {
                            tracing::error!(error = %e, exit_status = code, "stopped on an error that may pass; a supervisor may restart ferry");
                        }
                        eprintln!("ferry: {e}");
                        Ok(ExitCode::from(code))
                    }
                }
            })
        }
        Cmd::Backfill {
            config,
            table,
            wait,
            stall_timeout,
        } => {
            use ferry::backfill::recopy;
            let config = Config::load(&config)?;
            runtime.block_on(async move {
                let client = ferry::sink::connect::connect(&config.target)
                    .await
                    .map_err(|e| anyhow::anyhow!(ferry::sink::connect::describe(&e)))?;
                let schema = &config.target.ferry_schema;
                ferry::ferry_tables::ensure(&client, schema).await?;
                let id = recopy::request(&client, schema, &config.stream, &table)
                    .await
                    .map_err(|e| anyhow::anyhow!(ferry::sink::connect::describe(&e)))?;
                println!("re-copy of {table} requested (request {id}); the running ferry picks it up within seconds");
                if !wait {
                    return Ok(ExitCode::SUCCESS);
                }
                let stall = std::time::Duration::from_secs_f64(stall_timeout.max(1.0));
                match recopy::wait(&client, schema, id, stall, |line| println!("{line}")).await? {
                    recopy::WaitOutcome::Done => Ok(ExitCode::SUCCESS),
                    recopy::WaitOutcome::Failed(message) => {
                        eprintln!("re-copy failed: {message}");
                        Ok(ExitCode::from(1))
                    }
                }
            })
        }
        Cmd::Plan {
            config,
            sample_seconds,
            scan_rows_per_second,
            scan_max_rows,
            sample_tables,
            json,
            format,
            output,
        } => {
            let config_path = config.display().to_string();
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ferry plan: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            logging::init(&config.log_level, config.log_format);
            let options = ferry::plan::PlanOptions {
                sample_seconds,
                scan_rows_per_second,
                scan_max_rows,
                sample: ferry::plan::sample_copy::SampleBounds::default(),
                sample_tables,
                config_path,
                progress: true,
            };
            let plan = match runtime.block_on(ferry::plan::run(&config, &options)) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("ferry plan: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let text = if json {
                serde_json::to_string_pretty(&plan)? + "\n"
            } else {
                ferry::html_page::Format::resolve(format, output.as_deref())
                    .render(ferry::plan::render::markdown(&plan))
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "ferry plan: written to {} ({} blockers)",
                        path.display(),
                        plan.blockers().count()
                    );
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::from(plan.exit_code()))
        }
        Cmd::Report {
            config,
            format,
            output,
        } => {
            let config = Config::load(&config)?;
            let text = ferry::html_page::Format::resolve(format, output.as_deref()).render(
                runtime
                    .block_on(ferry::report::build(&config))
                    .map_err(|e| anyhow::anyhow!(e))?,
            );
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("ferry report: written to {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify {
            config,
            tables,
            sample,
            json,
            repair,
            chunk_rows,
            parallel,
            rows_per_second,
            settle_timeout,
        } => {
            // Every failure of `ferry verify` itself exits 2, so 1 always means "differences".
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ferry: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            logging::init("warn", config.log_format);
            let mut options = ferry::verify::VerifyOptions::from_config(&config.verify)
                .with_overrides(chunk_rows, parallel, settle_timeout);
            options.tables = tables;
            options.sample = sample;
            options.repair = repair;
            options.rows_per_second = rows_per_second;
            runtime.block_on(async move {
                match ferry::verify::run(&config, &options).await {
                    Ok(report) => {
                        if json {
                            println!(
                                "{}",
                                serde_json::to_string_pretty(&report).expect("report serializes")
                            );
                        } else {
                            print!("{}", ferry::verify::report::render(&report));
                        }
                        Ok(ExitCode::from(report.exit_code()))
                    }
                    Err(e) => {
                        eprintln!("ferry verify: {e}");
                        Ok(ExitCode::from(2))
                    }
                }
            })
        }
        Cmd::Schema {
            config,
            sync_sequences,
            validate_foreign_keys,
            create,
            json,
        } => {
            let config = Config::load(&config)?;
            logging::init("warn", config.log_format);
            runtime.block_on(async move {
                if validate_foreign_keys {
                    let report = if create {
                        ferry::target_schema::validate_foreign_keys(&config).await?
                    } else {
                        ferry::target_schema::check_foreign_keys(&config).await?
                    };
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&report).expect("report serializes")
                        );
                    } else if report.is_empty() {
                        println!("no foreign keys in the replicated tables");
                    } else {
                        for line in &report {
                            println!("{line}");
                        }
                    }
                    let violated = report.iter().any(|r| r.violations > 0);
                    return Ok(ExitCode::from(u8::from(violated)));
                }
                if sync_sequences {
                    let report = ferry::target_schema::sync_sequences(&config).await?;
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&report).expect("report serializes")
                        );
                    } else if report.is_empty() {
                        println!("no AUTO_INCREMENT columns in the replicated tables");
                    } else {
                        for line in &report {
                            println!("{line}");
                        }
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                let plan = ferry::target_schema::plan::plan(&config).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&plan).expect("plan serializes")
                    );
                } else {
                    print!("{}", plan.render());
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Cmd::Cutover {
            config,
            dry_run,
            abort,
            max_lag,
            timeout,
            switch_command,
            kill_writers_after,
            max_verify_age,
            max_changed_keys,
            without_rollback,
            yes,
            json,
        } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ferry: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            logging::init("warn", config.log_format);
            let options = CutoverOptions {
                dry_run,
                abort,
                max_lag,
                timeout,
                switch_command,
                kill_writers_after,
                max_verify_age,
                max_changed_keys,
                without_rollback,
                yes,
            };
            runtime.block_on(async move {
                match cutover::run(&config, &options).await {
                    Ok(report) => {
                        if json {
                            println!(
                                "{}",
                                serde_json::to_string_pretty(&report).expect("report serializes")
                            );
                        } else {
                            print!("{}", cutover::render(&report));
                        }
                        Ok(ExitCode::from(report.exit_code()))
                    }
                    Err(e) => {
                        eprintln!("ferry cutover: {e}");
                        Ok(ExitCode::from(2))
                    }
                }
            })
        }
        Cmd::Rollback {
            config,
            dry_run,
            abort,
            timeout,
            switch_command,
            app_roles,
            max_changed_keys,
            json,
        } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ferry: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            logging::init("warn", config.log_format);
            let options = rollback::RollbackOptions {
                dry_run,
                abort,
                timeout,
                switch_command,
                app_roles,
                max_changed_keys,
            };
            runtime.block_on(async move {
                let r = rollback::rollback(&config, &options).await;
                print_lifecycle("rollback", r, json)
            })
        }
        Cmd::Complete { config, json } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ferry: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            logging::init("warn", config.log_format);
            runtime.block_on(async move {
                let r = rollback::complete(&config).await;
                print_lifecycle("complete", r, json)
            })
        }
        Cmd::Pause { config } => signal_daemon(&config, libc::SIGUSR1, "pause"),
        Cmd::Resume { config } => signal_daemon(&config, libc::SIGUSR2, "resume"),
        Cmd::Status { config, json } => {
            let config = Config::load_for_control(&config)?;
            let addr = config
                .metrics_listen
                .context("metrics.listen is empty in the config: the daemon serves no status")?;
            runtime.block_on(async move {
                let (code, body) = ferry::http::get(addr, "/status", config.metrics_token.as_ref())
                    .await
                    .with_context(|| {
                        format!("cannot reach ferry at http://{addr}/status (is it running?)")
                    })?;
                anyhow::ensure!(
                    code != 401,
                    "the status endpoint wants the bearer token of metrics.token_file; make that file readable to this user"
                );
                anyhow::ensure!(code == 200, "status endpoint answered HTTP {code}");
                if json {
                    println!("{body}");
                } else {
                    let snapshot: ferry::status::Snapshot =
                        serde_json::from_str(&body).context("parsing the status JSON")?;
                    print!("{}", ferry::status::render(&snapshot));
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Cmd::Validate { config } => {
            let config = Config::load(&config)?;
            logging::init("warn", config.log_format);
            runtime.block_on(async move {
                let report = ferry::preflight::run(&config).await;
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

/// Prints a rollback/complete report; its exit status.
fn print_lifecycle(
    command: &str,
    r: Result<rollback::Report, ferry::reverse::ReverseError>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match r {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("report serializes")
                );
            } else {
                print!("{}", rollback::render(command, &report));
            }
            Ok(ExitCode::from(report.exit_code()))
        }
        Err(e) => {
            eprintln!("ferry {command}: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
