//! Preflight: everything that must hold before ferry writes anything, checked up front with one
//! message per failure saying what is wrong and how to fix it.
//!
//! Guarantees: `ferry run` never starts replicating against a source whose binlog would make it
//! decode wrongly (non-ROW format, partial row images, MINIMAL metadata, MariaDB binlog
//! compression), nor with tables it cannot identify rows in, nor against a target it cannot write.
//! Preflight itself writes nothing (target checks run in a rolled-back transaction).

use std::fmt;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::catalog;
use super::connect::{self, Flavor, ServerInfo};
use crate::config::Config;
use crate::schema::Table;
use crate::sink::connect as pg;
use crate::sink::postgis;
use crate::transform::TypeOptions;

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do when it failed.
    pub fix: Option<String>,
    /// The failure may pass by itself (a server not reachable yet), so retrying later makes
    /// sense; otherwise only the operator can fix it.
    pub transient: bool,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
            transient: false,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
            transient: false,
        }
    }

    fn transient(mut self, transient: bool) -> Self {
        self.transient = transient;
        self
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "[{mark}] {:<22} {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n       fix: {fix}")?;
        }
        Ok(())
    }
}

/// The preflight result: all checks, plus what a passing run needs next.
#[derive(Debug)]
pub struct Report {
    pub checks: Vec<Check>,
    pub server: Option<ServerInfo>,
    pub tables: Vec<Table>,
    /// The type options the tables were planned with (`types.spatial` resolved against the
    /// target): every later stage must use these.
    pub types: TypeOptions,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// Some check failed for a reason only the operator can fix (not merely an unreachable
    /// server).
    pub fn has_definite_failure(&self) -> bool {
        self.checks.iter().any(|c| !c.ok && !c.transient)
    }

    /// The failed checks as one message.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs every check; never stops at the first failure so the operator sees them all.
pub async fn run(config: &Config) -> Report {
    // The target first: where spatial columns go depends on it, and tables are planned with it.
    // Its checks are listed after the source's.
    let mut target_checks = Vec::new();
    let types = check_target(config, &mut target_checks).await;
    let mut checks = Vec::new();
    let mut server = None;
    let mut tables = Vec::new();
    match connect::connect(&config.source).await {
        Err(e) => checks.push(
            Check::fail(
                "source reachable",
                e.to_string(),
                "check source.host/port/user and the password; the user needs REPLICATION SLAVE, REPLICATION CLIENT (MariaDB: BINLOG MONITOR) and SELECT",
            )
            .transient(!e.is_definite()),
        ),
        Ok(mut conn) => {
            match check_source(&mut conn, config, &types, &mut checks).await {
                Ok((info, t)) => {
                    server = Some(info);
                    tables = t;
                }
                Err(e) => checks.push(Check::fail(
                    "source queries",
                    e.to_string(),
                    "grant the ferry user SELECT on the selected tables and information_schema access",
                )),
            }
            let _ = conn.disconnect().await;
        }
    }
    checks.append(&mut target_checks);
    Report {
        checks,
        server,
        tables,
        types,
    }
}

async fn check_source(
    conn: &mut Conn,
    config: &Config,
    types: &TypeOptions,
    checks: &mut Vec<Check>,
) -> Result<(ServerInfo, Vec<Table>), mysql_async::Error> {
    let info = connect::server_info(conn).await?;
    checks.push(Check::pass(
        "source reachable",
        format!("{} (server_id {})", info.version, info.server_id),
    ));
    let vars: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin','binlog_format','binlog_row_image',\
             'binlog_row_metadata','log_bin_compress','binlog_checksum','binlog_row_value_options')",
        )
        .await?;
    let var = |name: &str| {
        vars.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_uppercase())
    };
    let cnf = match info.flavor {
        Flavor::MariaDb => "my.cnf [mariadbd]",
        Flavor::MySql => "my.cnf [mysqld]",
    };
    checks.push(match var("log_bin").as_deref() {
        Some("ON") | Some("1") => Check::pass("binary log", "enabled"),
        other => Check::fail(
            "binary log",
            format!("log_bin = {}", other.unwrap_or("unknown")),
            format!("enable the binary log: set log_bin in {cnf} and restart the server"),
        ),
    });
    for (name, want) in [
        ("binlog_format", "ROW"),
        ("binlog_row_image", "FULL"),
        ("binlog_row_metadata", "FULL"),
    ] {
        let have = var(name);
        checks.push(if have.as_deref() == Some(want) {
            Check::pass(name, want)
        } else {
            Check::fail(
                name,
                format!("{name} = {}", have.as_deref().unwrap_or("unset (server too old?)")),
                format!("SET GLOBAL {name} = '{want}' and put {name} = {want} in {cnf}; sessions opened before keep the old value"),
            )
        });
    }
    if info.flavor == Flavor::MariaDb {
        let compress = var("log_bin_compress").unwrap_or_else(|| "OFF".into());
        checks.push(if compress == "OFF" || compress == "0" {
            Check::pass("log_bin_compress", "OFF")
        } else {
            Check::fail(
                "log_bin_compress",
                "MariaDB binlog compression is on; compressed row events cannot be decoded",
                "SET GLOBAL log_bin_compress = OFF (and in my.cnf); already compressed events stay unreadable",
            )
        });
    }
    if info.server_id == config.source.server_id {
        checks.push(Check::fail(
            "server_id",
            format!(
                "source.server_id {} equals the source's own server_id",
                info.server_id
            ),
            "choose another source.server_id, unique among the source's replicas",
        ));
    }
    checks.push(check_grants(conn, info.flavor).await?);

    match catalog::load_tables(conn, info.flavor, &config.tables, types).await {
        Ok(tables) if tables.is_empty() => checks.push(Check::fail(
            "tables",
            "no existing table matches tables.include / tables.exclude",
            "check the patterns (db.table, globs allowed) against SHOW TABLES on the source",
        )),
        Ok(tables) => {
            let note: Vec<String> = tables
                .iter()
                .filter(|t| t.key_source != crate::schema::KeySource::PrimaryKey)
                .map(|t| format!("{} keyed by its unique key", t.source))
                .collect();
            let detail = if note.is_empty() {
                format!("{} selected, every one with a primary key", tables.len())
            } else {
                format!("{} selected; {}", tables.len(), note.join(", "))
            };
            checks.push(Check::pass("tables", detail));
            return Ok((info, tables));
        }
        Err(e) => checks.push(Check::fail(
            "tables",
            e.to_string(),
            "see the message; every selected table needs a primary key or a NOT NULL unique key",
        )),
    }
    Ok((info, Vec::new()))
}

async fn check_grants(conn: &mut Conn, flavor: Flavor) -> Result<Check, mysql_async::Error> {
    let grants: Vec<String> = conn.query("SHOW GRANTS FOR CURRENT_USER()").await?;
    let global: Vec<String> = grants
        .iter()
        .filter(|g| g.contains(" ON *.* "))
        .map(|g| g.to_ascii_uppercase())
        .collect();
    let has = |p: &str| {
        global
            .iter()
            .any(|g| g.contains("ALL PRIVILEGES") || g.contains(p))
    };
    let slave = has("REPLICATION SLAVE") || has("REPLICATION REPLICA");
    let client = has("REPLICATION CLIENT") || has("BINLOG MONITOR") || has("SUPER");
    let mut missing = Vec::new();
    if !slave {
        missing.push("REPLICATION SLAVE");
    }
    if !client {
        missing.push(match flavor {
            Flavor::MariaDb => "BINLOG MONITOR",
            Flavor::MySql => "REPLICATION CLIENT",
        });
    }
    Ok(if missing.is_empty() {
        Check::pass("replication privileges", "granted")
    } else {
        Check::fail(
            "replication privileges",
            format!("missing {}", missing.join(", ")),
            format!("GRANT {} ON *.* TO <ferry user>", missing.join(", ")),
        )
    })
}

/// Checks the target; returns the type options resolved against it (as configured when the
/// target cannot be asked).
async fn check_target(config: &Config, checks: &mut Vec<Check>) -> TypeOptions {
    let client = match pg::connect(&config.target).await {
        Ok(c) => c,
        Err(e) => {
            checks.push(
                Check::fail(
                    "target reachable",
                    e.to_string(),
                    "check target.host/port/user/database and the password; the database must exist",
                )
                .transient(pg::is_transient(&e)),
            );
            return config.types.clone();
        }
    };
    let version = client
        .query_one("SELECT current_setting('server_version')", &[])
        .await
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_default();
    checks.push(Check::pass(
        "target reachable",
        format!("PostgreSQL {version}"),
    ));
    // Writable: create ferry's schema and a table inside a transaction that is rolled back.
    let probe = format!(
        "BEGIN; CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE {s}.ferry_preflight_probe (x int); \
         INSERT INTO {s}.ferry_preflight_probe VALUES (1); ROLLBACK;",
        s = crate::select::quote_ident(&config.target.ferry_schema)
    );
    checks.push(match client.batch_execute(&probe).await {
        Ok(()) => Check::pass("target writable", "can create schemas and tables"),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Check::fail(
                "target writable",
                pg::describe(&e),
                format!(
                    "GRANT CREATE ON DATABASE {} TO {} (ferry creates schema {:?} and the target tables)",
                    config.target.database, config.target.user, config.target.ferry_schema
                ),
            )
        }
    });
    match postgis::resolve(&client, &config.types).await {
        Ok(decision) => {
            checks.push(Check::pass("spatial types", decision.detail));
            decision.options
        }
        Err(e) => {
            checks.push(Check::fail(
                "spatial types",
                e,
                "install PostGIS in the target database (CREATE EXTENSION postgis) or set types.spatial = \"bytea\"",
            ));
            config.types.clone()
        }
    }
}
