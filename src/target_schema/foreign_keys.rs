//! Foreign keys: read from the source, created on PostgreSQL with their ON DELETE / ON UPDATE
//! actions, and validated with the violating rows reported, never hidden.
//!
//! When: not while ferry writes. A PostgreSQL foreign key checks every row written after it
//! exists, even `NOT VALID` (that only skips the rows already there), and nothing but
//! `session_replication_role = replica` lets a session skip the check — which also skips the
//! re-check of deferrable unique constraints (ferry's), so ferry does not use it. While ferry
//! streams, the target passes through states the source never had at once (the parallel
//! backfill and its replay window) and takes what `foreign_key_checks=0` sessions wrote, so a
//! foreign key there could stop replication. They are created after the last write ferry
//! applies — at cutover, once drained and switched — `NOT VALID` (a short lock, no scan) and
//! checked immediately like InnoDB's, then validated: the violating rows are reported and the
//! constraint left `NOT VALID` (still checking every new write) until they are fixed.
//!
//! [`check_foreign_keys`] is read-only and safe at any time (while streaming too): it reports,
//! per foreign key, how many rows of the PostgreSQL child table have no parent, with examples.

use serde::Serialize;
use tokio_postgres::Client;

use super::{connect_sides, SchemaError, Sides};
use crate::config::Config;
use crate::schema::{ForeignKey, Table};
use crate::select::{fold_name, quote_ident};
use crate::sink::ddl::sql_literal;

/// Rows shown per violated foreign key.
const EXAMPLES: i64 = 10;

/// One foreign key's state on PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignKeyReport {
    /// The PostgreSQL constraint name.
    pub name: String,
    /// `schema.table(columns)` of the child.
    pub child: String,
    /// `schema.table(columns)` of the parent.
    pub parent: String,
    /// Whether the constraint exists on PostgreSQL (after this run).
    pub exists: bool,
    /// Whether PostgreSQL holds it valid (every existing row checked).
    pub valid: bool,
    /// Child rows whose key has no parent row.
    pub violations: i64,
    /// Up to 10 violating rows: the child's key and foreign-key values, as text.
    pub examples: Vec<String>,
    /// Why it is not created (its parent is not replicated), when not.
    pub not_carried: Option<String>,
}

impl std::fmt::Display for ForeignKeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(why) = &self.not_carried {
            return write!(
                f,
                "{} {} -> {}: not carried ({why})",
                self.name, self.child, self.parent
            );
        }
        let state = match (self.exists, self.valid) {
            (false, _) => "not created yet",
            (true, true) => "valid",
            (true, false) => "NOT VALID",
        };
        write!(
            f,
            "{} {} -> {}: {state}, {} violating row(s)",
            self.name, self.child, self.parent, self.violations
        )?;
        for e in &self.examples {
            write!(f, "\n    {e}")?;
        }
        Ok(())
    }
}

/// The PostgreSQL name of a foreign key: the source's, folded (MySQL's foreign key names are
/// unique per database already; PostgreSQL needs them unique per table).
pub fn constraint_name(_t: &Table, fk: &ForeignKey) -> String {
    fold_name(&fk.name)
}

/// The parent table of `fk` among the replicated tables.
fn parent<'a>(tables: &'a [Table], fk: &ForeignKey) -> Option<&'a Table> {
    tables.iter().find(|p| p.source == fk.parent)
}

/// Column list of `t` by source names (case-insensitive, as MySQL compares them).
fn columns(t: &Table, names: &[String]) -> Option<Vec<String>> {
    names
        .iter()
        .map(|n| {
            t.source_columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(n))
                .map(|i| t.columns[i].quoted.clone())
        })
        .collect()
}

fn action(rule: &str) -> &'static str {
    match rule.to_ascii_uppercase().as_str() {
        "CASCADE" => "CASCADE",
        "SET NULL" => "SET NULL",
        "SET DEFAULT" => "SET DEFAULT",
        // InnoDB checks row by row (RESTRICT and NO ACTION alike); PostgreSQL's RESTRICT does
        // too, its NO ACTION at the end of the statement.
        "RESTRICT" => "RESTRICT",
        _ => "NO ACTION",
    }
}

/// `ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID` for each foreign key of `t`
/// whose parent is replicated: (constraint name, statement).
pub fn foreign_key_sql(t: &Table, tables: &[Table]) -> Vec<(String, String)> {
    t.foreign_keys
        .iter()
        .filter_map(|fk| {
            let p = parent(tables, fk)?;
            let child_cols = columns(t, &fk.columns)?;
            let parent_cols = columns(p, &fk.parent_columns)?;
            let name = constraint_name(t, fk);
            Some((
                name.clone(),
                format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) \
                     ON UPDATE {} ON DELETE {} NOT VALID",
                    t.target_quoted,
                    quote_ident(&name),
                    child_cols.join(", "),
                    p.target_quoted,
                    parent_cols.join(", "),
                    action(&fk.on_update),
                    action(&fk.on_delete),
                ),
            ))
        })
        .collect()
}

/// The foreign keys of `t` that are not carried, with the reason.
pub fn not_carried(t: &Table, tables: &[Table]) -> Vec<String> {
    t.foreign_keys
        .iter()
        .filter(|fk| parent(tables, fk).is_none())
        .map(|fk| {
            format!(
                "foreign key {} references {}, which is not replicated",
                fk.name, fk.parent
            )
        })
        .collect()
}

/// Reports every foreign key's violations on PostgreSQL without changing anything (safe while
/// ferry streams).
///
/// # Errors
/// Connection, catalog and query failures.
pub async fn check_foreign_keys(config: &Config) -> Result<Vec<ForeignKeyReport>, SchemaError> {
    let Sides {
        source,
        target,
        tables,
        ..
    } = connect_sides(config).await?;
    let _ = source.disconnect().await;
    run(&target, &tables, false).await
}

/// Creates the missing foreign keys (`NOT VALID`) and validates each one without
/// violations; reports the violating rows of the others, which stay `NOT VALID` (PostgreSQL
/// checks every new write against them) until the rows are fixed and this runs again. For the
/// cutover, after ferry's last write (see the module doc). Idempotent.
///
/// # Errors
/// Connection, catalog and DDL failures.
pub async fn validate_foreign_keys(config: &Config) -> Result<Vec<ForeignKeyReport>, SchemaError> {
    let Sides {
        source,
        target,
        tables,
        ..
    } = connect_sides(config).await?;
    let _ = source.disconnect().await;
    run(&target, &tables, true).await
}

async fn run(
    target: &Client,
    tables: &[Table],
    create: bool,
) -> Result<Vec<ForeignKeyReport>, SchemaError> {
    let mut out = Vec::new();
    for t in tables {
        let statements = foreign_key_sql(t, tables);
        for fk in &t.foreign_keys {
            let name = constraint_name(t, fk);
            let p = parent(tables, fk);
            let describe = |table: Option<&Table>, db_table: String, cols: &[String]| {
                let where_ = table.map_or(db_table, |t| {
                    format!("{}.{}", t.target_schema, t.target_name)
                });
                format!("{where_}({})", cols.join(", "))
            };
            let mut report = ForeignKeyReport {
                name: name.clone(),
                child: describe(Some(t), String::new(), &fk.columns),
                parent: describe(p, fk.parent.to_string(), &fk.parent_columns),
                exists: false,
                valid: false,
                violations: 0,
                examples: Vec::new(),
                not_carried: None,
            };
            let (Some(p), Some((_, sql))) = (p, statements.iter().find(|(n, _)| *n == name)) else {
                report.not_carried = Some(if p.is_none() {
                    format!("its parent {} is not replicated", fk.parent)
                } else {
                    "a column is missing on PostgreSQL".into()
                });
                out.push(report);
                continue;
            };
            let present: bool = target
                .query_one(
                    "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
                    &[&t.target_quoted, &p.target_quoted],
                )
                .await
                .map_err(SchemaError::target(t, "looking up the tables"))?
                .get(0);
            if !present {
                report.not_carried = Some("the PostgreSQL tables do not exist yet".into());
                out.push(report);
                continue;
            }
            let state = target
                .query_opt(
                    "SELECT convalidated FROM pg_catalog.pg_constraint \
                     WHERE conrelid = $1::text::regclass AND conname = $2 AND contype = 'f'",
                    &[&t.target_quoted, &name],
                )
                .await
                .map_err(SchemaError::target(t, "reading its foreign keys"))?;
            match state {
                Some(row) => {
                    report.exists = true;
                    report.valid = row.get(0);
                }
                None if create => {
                    target
                        .batch_execute(sql)
                        .await
                        .map_err(SchemaError::target(t, "creating a foreign key"))?;
                    tracing::info!(constraint = %name, table = %report.child, "created foreign key (NOT VALID)");
                    report.exists = true;
                }
                None => {}
            }
            let child_cols = columns(t, &fk.columns).unwrap_or_default();
            let parent_cols = columns(p, &fk.parent_columns).unwrap_or_default();
            let key: Vec<String> = t
                .key
                .iter()
                .map(|i| format!("c.{}", t.columns[*i].quoted))
                .collect();
            let not_null: Vec<String> = child_cols
                .iter()
                .map(|c| format!("c.{c} IS NOT NULL"))
                .collect();
            let join: Vec<String> = child_cols
                .iter()
                .zip(&parent_cols)
                .map(|(c, pc)| format!("p.{pc} = c.{c}"))
                .collect();
            let orphans = format!(
                "FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})",
                t.target_quoted,
                not_null.join(" AND "),
                p.target_quoted,
                join.join(" AND ")
            );
            report.violations = target
                .query_one(&format!("SELECT count(*) {orphans}"), &[])
                .await
                .map_err(SchemaError::target(t, "counting rows without a parent"))?
                .get(0);
            if report.violations > 0 {
                let fk_values: Vec<String> = child_cols.iter().map(|c| format!("c.{c}")).collect();
                let rows = target
                    .query(
                        &format!(
                            "SELECT format('key %s: %s = %s has no row in {}', ROW({})::text, {}, ROW({})::text) {orphans} LIMIT {EXAMPLES}",
                            report.parent.replace('%', "%%").replace('\'', "''"),
                            key.join(", "),
                            sql_literal(&format!("({})", fk.columns.join(", "))),
                            fk_values.join(", "),
                        ),
                        &[],
                    )
                    .await
                    .map_err(SchemaError::target(t, "listing rows without a parent"))?;
                report.examples = rows.iter().map(|r| r.get(0)).collect();
            } else if create && report.exists && !report.valid {
                target
                    .batch_execute(&format!(
                        "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                        t.target_quoted,
                        quote_ident(&name)
                    ))
                    .await
                    .map_err(SchemaError::target(t, "validating a foreign key"))?;
                report.valid = true;
            }
            out.push(report);
        }
    }
    Ok(out)
}
