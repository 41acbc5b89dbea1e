//! Source checks: binlog settings that decide whether ferry can decode exactly, replication
//! privileges, and the selected tables (each planned with the resolved type options).

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::Check;
use crate::config::Config;
use crate::schema::Table;
use crate::source::catalog;
use crate::source::connect::{self, Flavor, ServerInfo};
use crate::transform::TypeOptions;

pub(super) async fn check_source(
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
    checks.push(check_grants(conn, info.flavor, config.backfill.enabled).await?);

    match catalog::load_tables(conn, info.flavor, &config.tables, types).await {
        Ok(tables) if tables.is_empty() => checks.push(Check::fail(
            "tables",
            "no existing table matches tables.include / tables.exclude",
            "check the patterns (db.table, globs allowed) against SHOW TABLES on the source; the ferry user sees only tables it holds a privilege on: GRANT SELECT ON `<db>`.* TO <ferry user>",
        )),
        Ok(tables) => {
            checks.push(check_select(conn, &tables).await?);
            checks.push(super::zero_date_keys::check(conn, &tables, types).await?);
            let note: Vec<String> = tables
                .iter()
                .filter(|t| t.key_source != crate::schema::KeySource::PrimaryKey)
                .map(|t| {
                    if t.has_key() {
                        format!("{} keyed by its unique key", t.source)
                    } else {
                        format!("{} has no primary key (identified by its whole row)", t.source)
                    }
                })
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

/// SELECT on every selected table, tried (`LIMIT 0` reads nothing), so privileges held
/// through roles or database-level grants count exactly as the server counts them.
async fn check_select(conn: &mut Conn, tables: &[Table]) -> Result<Check, mysql_async::Error> {
    let mut denied = Vec::new();
    for t in tables {
        let sql = format!(
            "SELECT * FROM {}.{} LIMIT 0",
            crate::select::quote_mysql_ident(&t.source.db),
            crate::select::quote_mysql_ident(&t.source.table)
        );
        match conn.query_drop(sql).await {
            Ok(()) => {}
            // ER_TABLEACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR
            Err(mysql_async::Error::Server(e)) if e.code == 1142 || e.code == 1143 => {
                denied.push(t.source.clone());
            }
            // ER_NO_SUCH_TABLE: dropped since it was listed (a schema change tool's table);
            // the stream handles tables that come and go.
            Err(mysql_async::Error::Server(e)) if e.code == 1146 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(if denied.is_empty() {
        Check::pass(
            "SELECT privilege",
            format!("on all {} tables", tables.len()),
        )
    } else {
        let mut dbs: Vec<&str> = denied.iter().map(|n| n.db.as_str()).collect();
        dbs.dedup();
        Check::fail(
            "SELECT privilege",
            format!(
                "missing SELECT on {}",
                denied
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            dbs.iter()
                .map(|d| {
                    format!(
                        "GRANT SELECT ON {}.* TO <ferry user>",
                        crate::select::quote_mysql_ident(d)
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

async fn check_grants(
    conn: &mut Conn,
    flavor: Flavor,
    backfill: bool,
) -> Result<Check, mysql_async::Error> {
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
    // MySQL's backfill start position waits for in-flight commits with FLUSH TABLES WITH READ
    // LOCK (released at once); MariaDB's consistent snapshot needs no lock.
    if backfill && flavor == Flavor::MySql && !has("RELOAD") {
        missing.push("RELOAD");
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
