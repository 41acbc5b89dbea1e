//! The source as it is: server, binlog settings and retention, GTID mode, and per selected table
//! its engine, size, key, partitions, foreign keys, triggers, generated columns and character
//! sets; plus the objects ferry does not carry (views, routines, triggers, events, accounts).
//!
//! Guarantees: read-only (`information_schema`, `SHOW` statements, on a session ferry marked
//! read-only); a table ferry cannot plan is still surveyed (its planning error is kept), so the
//! plan lists every problem at once instead of stopping at the first.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use serde::Serialize;

use crate::schema::{SourceName, Table};
use crate::select::TableSelector;
use crate::source::catalog::{self, sql_string};
use crate::source::connect::{Flavor, ServerInfo};
use crate::transform::TypeOptions;

/// The server and its binlog.
#[derive(Debug, Clone, Serialize)]
pub struct SourceState {
    pub flavor: &'static str,
    pub version: String,
    pub server_id: u32,
    pub log_bin: String,
    pub binlog_format: String,
    pub binlog_row_image: String,
    pub binlog_row_metadata: String,
    /// Seconds the server keeps binlog files (0: until purged by hand).
    pub binlog_retention_seconds: u64,
    /// MySQL `gtid_mode`; MariaDB always has GTIDs (`gtid_strict_mode` reported).
    pub gtid_mode: String,
    pub binlog_files: usize,
    pub binlog_bytes: u64,
    pub character_set_server: String,
    pub lower_case_table_names: String,
    pub time_zone: String,
}

/// A foreign key of a selected table.
#[derive(Debug, Clone, Serialize)]
pub struct ForeignKeyFact {
    pub name: String,
    pub columns: Vec<String>,
    pub parent: String,
    pub on_update: String,
    pub on_delete: String,
    /// The parent is outside the selection: the key cannot be created in PostgreSQL.
    pub parent_selected: bool,
}

/// What the catalog says about one selected table.
#[derive(Debug, Clone, Serialize)]
pub struct TableFacts {
    pub name: String,
    pub engine: String,
    pub rows: u64,
    pub data_bytes: u64,
    pub index_bytes: u64,
    pub partitioned: bool,
    pub collation: String,
    /// Key ferry identifies rows by (`primary key (id)`), or `None` for a keyless table.
    pub key: Option<String>,
    pub foreign_keys: Vec<ForeignKeyFact>,
    pub triggers: Vec<String>,
    pub generated_columns: Vec<String>,
    /// Character sets of the text columns.
    pub charsets: Vec<String>,
    /// Unique keys over text compared case- (or accent-) insensitively on the source.
    pub case_insensitive_unique_keys: Vec<String>,
    /// Why ferry cannot plan the table, if it cannot.
    pub planning_error: Option<String>,
    #[serde(skip)]
    pub planned: Option<Table>,
}

/// An object ferry does not carry.
#[derive(Debug, Clone, Serialize)]
pub struct Uncarried {
    pub kind: &'static str,
    pub name: String,
    pub what_to_do: String,
}

/// The whole survey.
#[derive(Debug, Clone)]
pub struct Survey {
    pub source: SourceState,
    pub tables: Vec<TableFacts>,
    pub objects: Vec<Uncarried>,
}

impl TableFacts {
    /// A table known by name only; the catalog queries fill the rest.
    fn named(name: String) -> Self {
        Self {
            name,
            engine: String::new(),
            rows: 0,
            data_bytes: 0,
            index_bytes: 0,
            partitioned: false,
            collation: String::new(),
            key: None,
            foreign_keys: Vec::new(),
            triggers: Vec::new(),
            generated_columns: Vec::new(),
            charsets: Vec::new(),
            case_insensitive_unique_keys: Vec::new(),
            planning_error: None,
            planned: None,
        }
    }
}

/// `'a','b'` for an `IN (...)` over database names.
fn db_list(dbs: &[String]) -> String {
    dbs.iter()
        .map(|d| sql_string(d))
        .collect::<Vec<_>>()
        .join(",")
}

fn text(row: &Row, i: usize) -> String {
    match row.as_ref(i) {
        Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(mysql_async::Value::NULL) | None => String::new(),
        Some(v) => v.as_sql(true).trim_matches('\'').to_string(),
    }
}

fn number(row: &Row, i: usize) -> u64 {
    text(row, i).parse().unwrap_or(0)
}

/// Reads everything the plan needs from the source.
///
/// # Errors
/// Driver errors (the catalog must be readable).
pub async fn survey(
    conn: &mut Conn,
    info: &ServerInfo,
    selector: &TableSelector,
    types: &TypeOptions,
) -> Result<Survey, mysql_async::Error> {
    let source = source_state(conn, info).await?;
    let names = catalog::list_tables(conn, selector)
        .await
        .map_err(|e| match e {
            catalog::CatalogError::Mysql(e) => e,
            other => mysql_async::Error::Other(other.to_string().into()),
        })?;
    let mut dbs: Vec<String> = names.iter().map(|(n, _)| n.db.clone()).collect();
    dbs.sort();
    dbs.dedup();
    let mut tables = Vec::new();
    if !dbs.is_empty() {
        let db_list = db_list(&dbs);
        let selected: Vec<String> = names.iter().map(|(n, _)| n.to_string()).collect();
        let facts = table_rows(conn, &db_list, &names).await?;
        let keys = key_facts(conn, &db_list).await?;
        let fks = foreign_keys(conn, &db_list, &selected).await?;
        let triggers = triggers(conn, &db_list).await?;
        let columns = column_facts(conn, &db_list).await?;
        for (name, _) in &names {
            let id = name.to_string();
            let mut f = facts
                .get(&id)
                .cloned()
                .unwrap_or_else(|| TableFacts::named(id.clone()));
            let table_keys = keys.get(&id);
            f.key = table_keys.and_then(|k| k.identity.clone());
            f.case_insensitive_unique_keys = table_keys
                .map(|k| k.case_insensitive.clone())
                .unwrap_or_default();
            f.foreign_keys = fks.get(&id).cloned().unwrap_or_default();
            f.triggers = triggers.get(&id).cloned().unwrap_or_default();
            if let Some(c) = columns.get(&id) {
                f.generated_columns = c.generated.clone();
                f.charsets = c.charsets.clone();
            }
            match catalog::load_named(
                conn,
                info.flavor,
                selector,
                types,
                &[(name.clone(), f.rows)],
            )
            .await
            {
                Ok(mut planned) => f.planned = planned.pop(),
                Err(catalog::CatalogError::Mysql(e)) => return Err(e),
                Err(e) => f.planning_error = Some(e.to_string()),
            }
            tables.push(f);
        }
    }
    let objects = uncarried(conn, &dbs, selector, &tables).await?;
    Ok(Survey {
        source,
        tables,
        objects,
    })
}

async fn source_state(
    conn: &mut Conn,
    info: &ServerInfo,
) -> Result<SourceState, mysql_async::Error> {
    let vars: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin','binlog_format','binlog_row_image',\
             'binlog_row_metadata','binlog_expire_logs_seconds','expire_logs_days','gtid_mode',\
             'gtid_strict_mode','character_set_server','lower_case_table_names','time_zone',\
             'system_time_zone')",
        )
        .await?;
    let var = |name: &str| {
        vars.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let seconds: u64 = var("binlog_expire_logs_seconds").parse().unwrap_or(0);
    let days: f64 = var("expire_logs_days").parse().unwrap_or(0.0);
    let retention = if seconds > 0 {
        seconds
    } else {
        (days * 86_400.0) as u64
    };
    let (files, bytes) = binlog_files(conn).await.unwrap_or((0, 0));
    let gtid_mode = match info.flavor {
        Flavor::MySql => var("gtid_mode"),
        Flavor::MariaDb => format!(
            "MariaDB GTIDs (gtid_strict_mode {})",
            var("gtid_strict_mode")
        ),
    };
    let mut time_zone = var("time_zone");
    if time_zone.eq_ignore_ascii_case("SYSTEM") {
        time_zone = format!("SYSTEM ({})", var("system_time_zone"));
    }
    Ok(SourceState {
        flavor: match info.flavor {
            Flavor::MySql => "MySQL",
            Flavor::MariaDb => "MariaDB",
        },
        version: info.version.clone(),
        server_id: info.server_id,
        log_bin: var("log_bin"),
        binlog_format: var("binlog_format"),
        binlog_row_image: var("binlog_row_image"),
        binlog_row_metadata: var("binlog_row_metadata"),
        binlog_retention_seconds: retention,
        gtid_mode,
        binlog_files: files,
        binlog_bytes: bytes,
        character_set_server: var("character_set_server"),
        lower_case_table_names: var("lower_case_table_names"),
        time_zone,
    })
}

/// The binlog files the server keeps and their total size.
///
/// # Errors
/// Driver errors (no binary log, or no privilege to list it).
pub async fn binlog_files(conn: &mut Conn) -> Result<(usize, u64), mysql_async::Error> {
    let rows: Vec<Row> = conn.query("SHOW BINARY LOGS").await?;
    let total = rows.iter().map(|r| number(r, 1)).sum();
    Ok((rows.len(), total))
}

async fn table_rows(
    conn: &mut Conn,
    db_list: &str,
    names: &[(SourceName, u64)],
) -> Result<BTreeMap<String, TableFacts>, mysql_async::Error> {
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(ENGINE, ''), COALESCE(TABLE_ROWS, 0), \
             COALESCE(DATA_LENGTH, 0), COALESCE(INDEX_LENGTH, 0), COALESCE(CREATE_OPTIONS, ''), \
             COALESCE(TABLE_COLLATION, '') FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA IN ({db_list}) AND TABLE_TYPE = 'BASE TABLE'"
        ))
        .await?;
    let wanted: std::collections::HashSet<String> =
        names.iter().map(|(n, _)| n.to_string()).collect();
    let mut out = BTreeMap::new();
    for r in rows {
        let name = SourceName::new(text(&r, 0), text(&r, 1)).to_string();
        if !wanted.contains(&name) {
            continue;
        }
        let facts = TableFacts {
            engine: text(&r, 2),
            rows: number(&r, 3),
            data_bytes: number(&r, 4),
            index_bytes: number(&r, 5),
            partitioned: text(&r, 6).to_ascii_lowercase().contains("partitioned"),
            collation: text(&r, 7),
            ..TableFacts::named(name.clone())
        };
        out.insert(name, facts);
    }
    Ok(out)
}

#[derive(Default)]
struct KeyFacts {
    identity: Option<String>,
    case_insensitive: Vec<String>,
}

/// Per table: the key ferry would identify rows by (the primary key, else the first unique key
/// on NOT NULL columns) and the unique keys compared case-insensitively.
async fn key_facts(
    conn: &mut Conn,
    db_list: &str,
) -> Result<BTreeMap<String, KeyFacts>, mysql_async::Error> {
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT s.TABLE_SCHEMA, s.TABLE_NAME, s.INDEX_NAME, s.COLUMN_NAME, c.IS_NULLABLE, \
             COALESCE(c.COLLATION_NAME, '') FROM information_schema.STATISTICS s \
             JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA \
             AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME \
             WHERE s.TABLE_SCHEMA IN ({db_list}) AND s.NON_UNIQUE = 0 \
             ORDER BY s.TABLE_SCHEMA, s.TABLE_NAME, s.INDEX_NAME = 'PRIMARY' DESC, s.INDEX_NAME, s.SEQ_IN_INDEX"
        ))
        .await?;
    // (table, index) → (columns, every column NOT NULL, case-insensitive text column)
    let mut indexes: BTreeMap<(String, String), (Vec<String>, bool, bool)> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for r in rows {
        let table = SourceName::new(text(&r, 0), text(&r, 1)).to_string();
        let index = text(&r, 2);
        let key = (table, index);
        let entry = indexes.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            (Vec::new(), true, false)
        });
        entry.0.push(text(&r, 3));
        entry.1 &= text(&r, 4) == "NO";
        let collation = text(&r, 5).to_ascii_lowercase();
        entry.2 |= collation.ends_with("_ci") || collation.contains("_ai_");
    }
    let mut out: BTreeMap<String, KeyFacts> = BTreeMap::new();
    for key in order {
        let Some((columns, not_null, ci)) = indexes.get(&key) else {
            continue;
        };
        let facts = out.entry(key.0.clone()).or_default();
        let described = if key.1 == "PRIMARY" {
            format!("primary key ({})", columns.join(", "))
        } else {
            format!("unique key {} ({})", key.1, columns.join(", "))
        };
        if facts.identity.is_none() && (key.1 == "PRIMARY" || *not_null) {
            facts.identity = Some(described.clone());
        }
        if *ci {
            facts.case_insensitive.push(described);
        }
    }
    Ok(out)
}

async fn foreign_keys(
    conn: &mut Conn,
    db_list: &str,
    selected: &[String],
) -> Result<BTreeMap<String, Vec<ForeignKeyFact>>, mysql_async::Error> {
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, \
             k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, r.UPDATE_RULE, r.DELETE_RULE \
             FROM information_schema.KEY_COLUMN_USAGE k \
             JOIN information_schema.REFERENTIAL_CONSTRAINTS r ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA \
             AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME \
             WHERE k.TABLE_SCHEMA IN ({db_list}) AND k.REFERENCED_TABLE_NAME IS NOT NULL \
             ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
        ))
        .await?;
    let mut out: BTreeMap<String, Vec<ForeignKeyFact>> = BTreeMap::new();
    for r in rows {
        let table = SourceName::new(text(&r, 0), text(&r, 1)).to_string();
        let name = text(&r, 2);
        let parent = SourceName::new(text(&r, 4), text(&r, 5)).to_string();
        let list = out.entry(table).or_default();
        match list.last_mut() {
            Some(fk) if fk.name == name => fk.columns.push(text(&r, 3)),
            _ => list.push(ForeignKeyFact {
                name,
                columns: vec![text(&r, 3)],
                parent_selected: selected.contains(&parent),
                parent,
                on_update: text(&r, 6),
                on_delete: text(&r, 7),
            }),
        }
    }
    Ok(out)
}

async fn triggers(
    conn: &mut Conn,
    db_list: &str,
) -> Result<BTreeMap<String, Vec<String>>, mysql_async::Error> {
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT EVENT_OBJECT_SCHEMA, EVENT_OBJECT_TABLE, TRIGGER_NAME, ACTION_TIMING, \
             EVENT_MANIPULATION FROM information_schema.TRIGGERS \
             WHERE EVENT_OBJECT_SCHEMA IN ({db_list}) ORDER BY 1, 2, 3"
        ))
        .await?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        let table = SourceName::new(text(&r, 0), text(&r, 1)).to_string();
        out.entry(table).or_default().push(format!(
            "{} ({} {})",
            text(&r, 2),
            text(&r, 3),
            text(&r, 4)
        ));
    }
    Ok(out)
}

#[derive(Default)]
struct ColumnFacts {
    generated: Vec<String>,
    charsets: Vec<String>,
}

async fn column_facts(
    conn: &mut Conn,
    db_list: &str,
) -> Result<BTreeMap<String, ColumnFacts>, mysql_async::Error> {
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, EXTRA, COALESCE(CHARACTER_SET_NAME, '') \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({db_list}) \
             ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
        ))
        .await?;
    let mut out: BTreeMap<String, ColumnFacts> = BTreeMap::new();
    for r in rows {
        let table = SourceName::new(text(&r, 0), text(&r, 1)).to_string();
        let f = out.entry(table).or_default();
        if text(&r, 3).to_ascii_uppercase().contains("GENERATED") {
            f.generated.push(text(&r, 2));
        }
        let cs = text(&r, 4);
        if !cs.is_empty() && !f.charsets.contains(&cs) {
            f.charsets.push(cs);
        }
    }
    Ok(out)
}

/// Views, routines, triggers, events and accounts: what ferry leaves to the team.
async fn uncarried(
    conn: &mut Conn,
    dbs: &[String],
    selector: &TableSelector,
    tables: &[TableFacts],
) -> Result<Vec<Uncarried>, mysql_async::Error> {
    let mut out = Vec::new();
    if !dbs.is_empty() {
        let db_list = db_list(dbs);
        let views: Vec<(String, String)> = conn
            .query(format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.VIEWS \
                 WHERE TABLE_SCHEMA IN ({db_list}) ORDER BY 1, 2"
            ))
            .await?;
        for (db, name) in views {
            if !selector.matches(&db, &name) && !dbs.contains(&db) {
                continue;
            }
            out.push(Uncarried {
                kind: "view",
                name: format!("{db}.{name}"),
                what_to_do: "recreate it in PostgreSQL before the switch (its SQL may need rewriting: SHOW CREATE VIEW on the source); test it against the replicated tables".into(),
            });
        }
        let routines: Vec<(String, String, String)> = conn
            .query(format!(
                "SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA IN ({db_list}) ORDER BY 1, 2"
            ))
            .await?;
        for (db, name, kind) in routines {
            out.push(Uncarried {
                kind: if kind.eq_ignore_ascii_case("FUNCTION") {
                    "function"
                } else {
                    "procedure"
                },
                name: format!("{db}.{name}"),
                what_to_do: "port it to PL/pgSQL (or move the logic into the application) and create it before the switch".into(),
            });
        }
        for t in tables {
            for trigger in &t.triggers {
                out.push(Uncarried {
                    kind: "trigger",
                    name: format!("{} on {}", trigger, t.name),
                    what_to_do: "port it to a PostgreSQL trigger and create it only at the switch: ferry's apply already carries the rows the trigger wrote on the source, so an earlier copy would apply its effect twice".into(),
                });
            }
        }
        let events: Vec<(String, String)> = conn
            .query(format!(
                "SELECT EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS \
                 WHERE EVENT_SCHEMA IN ({db_list}) ORDER BY 1, 2"
            ))
            .await?;
        for (db, name) in events {
            out.push(Uncarried {
                kind: "event",
                name: format!("{db}.{name}"),
                what_to_do: "schedule it outside the database (cron, pg_cron) and disable it on MySQL at the switch".into(),
            });
        }
    }
    // Accounts: readable only with SELECT on mysql.user; otherwise say so.
    let accounts: Result<Vec<(String, String)>, _> = conn
        .query("SELECT User, Host FROM mysql.user WHERE User <> '' ORDER BY 1, 2")
        .await;
    match accounts {
        Ok(list) => {
            let names: Vec<String> = list
                .iter()
                .filter(|(u, _)| !matches!(u.as_str(), "mariadb.sys" | "mysql.sys" | "mysql.session" | "mysql.infoschema" | "root" | "PUBLIC"))
                .map(|(u, h)| format!("'{u}'@'{h}'"))
                .collect();
            if !names.is_empty() {
                out.push(Uncarried {
                    kind: "accounts",
                    name: names.join(", "),
                    what_to_do: "create the application's roles in PostgreSQL with the privileges they need (GRANT ... ON ALL TABLES IN SCHEMA); passwords cannot be carried".into(),
                });
            }
        }
        Err(_) => out.push(Uncarried {
            kind: "accounts",
            name: "(mysql.user is not readable by ferry's user)".into(),
            what_to_do: "list the application's accounts (SELECT User, Host FROM mysql.user) and create matching roles in PostgreSQL".into(),
        }),
    }
    Ok(out)
}
