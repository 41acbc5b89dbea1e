//! The PostgreSQL statements that take a replicated table from one definition to the next after
//! a schema change on the source.
//!
//! Both definitions are [`Table`]s planned with the same type mapping as the initial copy (the
//! new one read back from the source's catalog), so a column added by `ALTER TABLE` gets exactly
//! the type, default, comment and trigger it would have had if the table had been copied after
//! the change. The statement's clauses ([`Alter`]) say what it meant to do; the difference
//! between the definitions says how.
//!
//! Guarantees:
//! - the catalog must show exactly this statement's effect: a column that appeared, vanished or
//!   changed without the statement naming it means the catalog has moved past the statement (a
//!   later change already ran), and the plan is refused rather than applied early;
//! - only changes PostgreSQL can make with the same outcome for every existing row are planned:
//!   widening type changes, nullability, defaults, identities, ENUM/SET members added, renames,
//!   drops, added columns whose existing rows get a constant value, indexes, unique keys, CHECK
//!   constraints, comments. Narrowing or converting types, a changed row identity, generated or
//!   AUTO_INCREMENT columns added to existing rows, and added columns whose existing rows get
//!   the time of the ALTER are refused ([`Refusal`]) with the reason;
//! - every statement is one PostgreSQL statement the caller runs in the transaction that records
//!   the binlog position after the schema change.

use std::collections::HashMap;

use crate::schema::{Index, Table};
use crate::select::quote_ident;
use crate::sink::ddl::{
    self, auto_increment, carried_checks, is_unique_constraint, on_update_sql, sql_literal,
    AutoIncrement,
};
use crate::source::alter::{Alter, Clause};
use crate::transform::defaults;
use crate::transform::mapping::create_icu_collation_sql;
use crate::transform::{CiCollation, PgType, ValueKind};

/// Why a schema change cannot be carried automatically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The source's catalog no longer shows the table as this statement left it.
    CatalogMovedOn(String),
    /// PostgreSQL cannot make this change with the same result for existing rows.
    NotExact(String),
    /// The row identity (primary key, or the unique key ferry uses) changes.
    KeyChange(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::CatalogMovedOn(d) => write!(
                f,
                "the source's catalog no longer shows the table as this statement left it ({d}): a later schema change of the table already ran"
            ),
            Refusal::NotExact(d) => write!(f, "{d}"),
            Refusal::KeyChange(d) => write!(f, "the row identity changes ({d})"),
        }
    }
}

/// The target statements for one schema change, and what they do, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evolution {
    pub statements: Vec<String>,
    /// Parts of the source change ferry leaves to a later step (foreign keys).
    pub notes: Vec<String>,
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A text type's length limit in characters, `u64::MAX` for none.
fn text_limit(t: &PgType) -> u64 {
    match t {
        PgType::Varchar(n)
        | PgType::Citext {
            max_chars: Some(n), ..
        } => *n,
        _ => u64::MAX,
    }
}

/// Whether PostgreSQL's cast from `from` to `to` keeps every value MySQL kept.
pub fn widens(from: &PgType, to: &PgType) -> bool {
    use PgType::*;
    let rank = |t: &PgType| match t {
        SmallInt => Some((1, 5)),
        Integer => Some((2, 10)),
        BigInt => Some((3, 19)),
        _ => None,
    };
    match (from, to) {
        (a, b) if a == b => true,
        (a, b) if rank(a).is_some() && rank(b).is_some() => rank(a) <= rank(b),
        (a, Numeric(Some((p, 0)))) if rank(a).is_some() => rank(a).is_some_and(|r| *p >= r.1),
        (a, Numeric(None)) if rank(a).is_some() => true,
        (Numeric(Some((p1, s1))), Numeric(Some((p2, s2)))) => s2 >= s1 && p2 - s2 >= p1 - s1,
        (Numeric(Some(_)), Numeric(None)) => true,
        (Real, Double) => true,
        (Varchar(a), Varchar(b)) => b >= a,
        (Varchar(_), Text) => true,
        // citext is text compared without case: the values are the same strings.
        (a, b) if a.is_text() && b.is_text() => text_limit(b) >= text_limit(a),
        (Timestamp(a), Timestamp(b))
        | (TimestampTz(a), TimestampTz(b))
        | (Interval(a), Interval(b)) => b >= a,
        _ => false,
    }
}

/// Whether values decoded as `from` keep their meaning as `to` (same family, nothing removed).
fn kind_compatible(from: &ValueKind, to: &ValueKind) -> Result<(), String> {
    use ValueKind::*;
    let ints = |k: &ValueKind| matches!(k, Int { .. } | UInt { .. });
    match (from, to) {
        (a, b) if a == b => Ok(()),
        (a, b) if ints(a) && ints(b) => Ok(()),
        (Int { .. } | UInt { .. }, Decimal) | (Float, Double) => Ok(()),
        (Text { charset: a }, Text { charset: b }) => {
            if b.is_unicode() || a == b {
                Ok(())
            } else {
                Err("the character set changes to one that cannot hold every character of the old one".into())
            }
        }
        (Enum { members: a, .. }, Enum { members: b, .. })
        | (Set { members: a, .. }, Set { members: b, .. }) => {
            match a.iter().find(|m| !b.contains(m)) {
                Some(m) => Err(format!(
                    "member '{m}' is removed (MySQL rewrites such values without row events)"
                )),
                None => Ok(()),
            }
        }
        (Bytes { pad_to: None }, Bytes { pad_to: None }) => Ok(()),
        _ => Err(format!(
            "the values change representation ({from:?} to {to:?})"
        )),
    }
}

/// The value MySQL gives existing rows for an added NOT NULL column without a default.
fn implicit_default(t: &Table, i: usize) -> Option<String> {
    Some(match &t.columns[i].kind {
        ValueKind::Int { .. }
        | ValueKind::UInt { .. }
        | ValueKind::Year
        | ValueKind::Decimal
        | ValueKind::Float
        | ValueKind::Double => "0".into(),
        ValueKind::Bool => "false".into(),
        ValueKind::Bit { bits } => format!("B'{}'", "0".repeat(*bits as usize)),
        ValueKind::Text { .. } | ValueKind::Set { .. } => "''".into(),
        ValueKind::Enum { members, .. } => sql_literal(members.first()?),
        ValueKind::Bytes { pad_to: None } => "'\\x'::bytea".into(),
        ValueKind::Bytes { pad_to: Some(n) } => format!("'\\x{}'::bytea", "00".repeat(*n)),
        ValueKind::Time => "'00:00:00'".into(),
        ValueKind::Uuid => "'00000000-0000-0000-0000-000000000000'::uuid".into(),
        ValueKind::Inet { v6: false } => "'0.0.0.0'::inet".into(),
        ValueKind::Inet { v6: true } => "'::'::inet".into(),
        _ => return None,
    })
}

/// A default whose value depends on when it is evaluated.
fn is_time_dependent(sql: &str) -> bool {
    let s = sql.to_ascii_uppercase();
    s.contains("CURRENT_") || s.contains("LOCALTIMESTAMP") || s.contains("NOW(")
}

/// An index's identity across the change: uniqueness and (new column name, prefix).
fn index_signature(
    t: &Table,
    index: &Index,
    rename: &dyn Fn(&str) -> String,
) -> (bool, Vec<(String, Option<u32>)>) {
    (
        index.unique,
        index
            .columns
            .iter()
            .map(|(c, p)| (rename(&t.source_columns[*c].name).to_lowercase(), *p))
            .collect(),
    )
}

fn drop_index_sql(t: &Table, index: &Index) -> String {
    let name = quote_ident(&t.target_index_name(index));
    if is_unique_constraint(index) {
        format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {name}",
            t.target_quoted
        )
    } else {
        format!(
            "DROP INDEX IF EXISTS {}.{name}",
            quote_ident(&t.target_schema)
        )
    }
}

fn trigger_name(t: &Table) -> String {
    crate::select::fit_identifier(&format!("{}_on_update", t.target_name))
}

/// Plans the statements that take `old` to `new` for the schema change `alter`.
///
/// # Errors
/// A [`Refusal`] naming what cannot be carried.
pub fn plan(old: &Table, new: &Table, alter: &Alter) -> Result<Evolution, Refusal> {
    plan_with(old, new, alter, false)
}

/// [`plan`]; with `allow_key_change` (`ddl.allow_key_change`) a change of the row identity is
/// carried: the target's primary key is dropped before the column changes and the new one
/// added after them, in the same transaction (the source accepted the new key, so the rows
/// the target holds — the source's — satisfy it).
///
/// # Errors
/// As [`plan`], except for a key change when allowed.
pub fn plan_with(
    old: &Table,
    new: &Table,
    alter: &Alter,
    allow_key_change: bool,
) -> Result<Evolution, Refusal> {
    let renamed = alter.renamed();
    let added = alter.added();
    let dropped = alter.dropped();
    let modify_all = alter.has(|c| matches!(c, Clause::ConvertCharset));
    let modified = alter.modified();
    let new_name_of = |old_name: &str| -> String {
        renamed
            .iter()
            .find(|(from, _)| same(from, old_name))
            .map_or_else(|| old_name.to_string(), |(_, to)| to.to_string())
    };
    // new column position → old column position (None: added by this statement)
    let mut from_old: Vec<Option<usize>> = Vec::with_capacity(new.columns.len());
    for nc in &new.source_columns {
        let old_name = renamed
            .iter()
            .find(|(_, to)| same(to, &nc.name))
            .map_or(nc.name.as_str(), |(from, _)| *from);
        // An added column the old definition already has (and the statement does not drop):
        // the table was loaded from the catalog after the statement ran.
        let known = old.source_columns.iter().any(|oc| same(&oc.name, old_name))
            && !dropped.iter().any(|d| same(d, old_name));
        let is_added = added.iter().any(|a| same(a, &nc.name)) && !known;
        let found = old
            .source_columns
            .iter()
            .position(|oc| same(&oc.name, old_name))
            .filter(|i| {
                !dropped
                    .iter()
                    .any(|d| same(d, &old.source_columns[*i].name))
                    || {
                        // DROP + ADD of the same name: the old column is gone, a new one takes its name.
                        !is_added
                    }
            });
        match (found, is_added) {
            (Some(i), false) => from_old.push(Some(i)),
            (None, true) | (Some(_), true) => from_old.push(None),
            (None, false) => {
                return Err(Refusal::CatalogMovedOn(format!(
                    "column `{}` exists but the statement does not add it",
                    nc.name
                )))
            }
        }
    }
    for (i, oc) in old.source_columns.iter().enumerate() {
        let kept = from_old.contains(&Some(i));
        let goes = dropped.iter().any(|d| same(d, &oc.name))
            || renamed.iter().any(|(from, _)| same(from, &oc.name));
        if !kept && !goes {
            return Err(Refusal::CatalogMovedOn(format!(
                "column `{}` is gone but the statement does not drop it",
                oc.name
            )));
        }
        if kept && dropped.iter().any(|d| same(d, &oc.name)) {
            return Err(Refusal::CatalogMovedOn(format!(
                "column `{}` is still there although the statement drops it",
                oc.name
            )));
        }
    }
    for a in &added {
        if !new.source_columns.iter().any(|c| same(&c.name, a)) {
            return Err(Refusal::CatalogMovedOn(format!(
                "column `{a}` that the statement adds is not there"
            )));
        }
    }
    // The row identity must be the same columns.
    let old_key: Vec<String> = old
        .key
        .iter()
        .map(|i| new_name_of(&old.source_columns[*i].name).to_lowercase())
        .collect();
    let new_key: Vec<String> = new
        .key
        .iter()
        .map(|i| new.source_columns[*i].name.to_lowercase())
        .collect();
    // A table identified by its whole row stays so as its columns change.
    let whole_row = !old.has_key() && !new.has_key();
    let rekey = !whole_row
        && (old_key != new_key
            || old.has_key() != new.has_key()
            || new.key.iter().any(|i| from_old[*i].is_none()));
    if rekey && !allow_key_change {
        return Err(Refusal::KeyChange(format!(
            "({}) becomes ({}); set ddl.allow_key_change = true to re-key the PostgreSQL table in the same transaction",
            old_key.join(", "),
            new_key.join(", ")
        )));
    }

    let table = &new.target_quoted;
    let mut first = Vec::new(); // before column changes
    let mut columns = Vec::new();
    let mut last = Vec::new(); // after column changes
    let mut notes = Vec::new();
    if rekey {
        if old.has_key() {
            first.push(format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                old.target_quoted,
                quote_ident(&crate::select::fit_identifier(&format!(
                    "{}_pkey",
                    old.target_name
                )))
            ));
        }
        last.extend(ddl::add_primary_key_sql(new));
    }

    let has_trigger = |t: &Table| t.source_columns.iter().any(|c| c.on_update_now);
    if has_trigger(old) || has_trigger(new) {
        first.push(format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            quote_ident(&trigger_name(old)),
            old.target_quoted
        ));
    }
    // CHECK constraints: dropped or changed first, (re)added last.
    let old_checks: HashMap<String, String> = carried_checks(old).into_iter().collect();
    let new_checks: HashMap<String, String> = carried_checks(new).into_iter().collect();
    for (name, expr) in &old_checks {
        if new_checks.get(name) != Some(expr) {
            first.push(format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                old.target_quoted,
                quote_ident(name)
            ));
        }
    }
    // Indexes, compared by name and by what they cover (after renames).
    let old_sigs: Vec<_> = old
        .indexes
        .iter()
        .map(|ix| (ix, index_signature(old, ix, &new_name_of)))
        .collect();
    let new_sigs: Vec<_> = new
        .indexes
        .iter()
        .map(|ix| (ix, index_signature(new, ix, &|n| n.to_string())))
        .collect();
    for (ix, sig) in &old_sigs {
        let kept = new_sigs
            .iter()
            .any(|(n, s)| same(&n.name, &ix.name) && s == sig);
        if !kept {
            first.push(drop_index_sql(old, ix));
        }
    }
    for (ix, sig) in &new_sigs {
        let kept = old_sigs
            .iter()
            .any(|(o, s)| same(&o.name, &ix.name) && s == sig);
        if !kept {
            last.push(ddl::one_index(new, ix));
        }
    }

    // Renames, then drops.
    for (ni, from) in from_old.iter().enumerate() {
        if let Some(oi) = from {
            let (o, n) = (&old.columns[*oi], &new.columns[ni]);
            if o.target_name != n.target_name {
                columns.push(format!(
                    "ALTER TABLE {table} RENAME COLUMN {} TO {}",
                    o.quoted, n.quoted
                ));
            }
        }
    }
    for (oi, oc) in old.source_columns.iter().enumerate() {
        if !from_old.contains(&Some(oi)) {
            columns.push(format!(
                "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                old.columns[oi].quoted
            ));
            let _ = oc;
        }
    }
    // Changed and added columns.
    for (ni, from) in from_old.iter().enumerate() {
        let nsc = &new.source_columns[ni];
        let n = &new.columns[ni];
        let col = &n.quoted;
        match from {
            Some(oi) => {
                let osc = &old.source_columns[*oi];
                let o = &old.columns[*oi];
                let named = modify_all
                    || modified.iter().any(|m| same(m, &nsc.name))
                    || added.iter().any(|a| same(a, &nsc.name));
                let mut renamed_old = osc.clone();
                renamed_old.name = nsc.name.clone();
                if !named {
                    if renamed_old != *nsc || o.pg_type != n.pg_type || o.kind != n.kind {
                        return Err(Refusal::CatalogMovedOn(format!(
                            "column `{}` changed but the statement does not modify it",
                            nsc.name
                        )));
                    }
                    continue;
                }
                let not_exact =
                    |why: String| Refusal::NotExact(format!("column `{}`: {why}", nsc.name));
                if osc.generated != nsc.generated {
                    return Err(not_exact(
                        "changes between stored and generated (MySQL computes the values without row events)".into(),
                    ));
                }
                kind_compatible(&o.kind, &n.kind).map_err(not_exact)?;
                if o.pg_type != n.pg_type || o.collation != n.collation {
                    if !widens(&o.pg_type, &n.pg_type) {
                        return Err(not_exact(format!(
                            "{} to {} ({} to {}) narrows or converts values",
                            osc.column_type,
                            nsc.column_type,
                            o.pg_type.sql(),
                            n.pg_type.sql()
                        )));
                    }
                    let check = ddl::domain_check_name(new, ni);
                    if o.domain_check().is_some() {
                        columns.push(format!(
                            "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}"
                        ));
                    }
                    if n.collation == CiCollation::Icu {
                        columns.push(create_icu_collation_sql(&new.target_schema));
                    }
                    columns.push(format!(
                        "ALTER TABLE {table} ALTER COLUMN {col} TYPE {}",
                        n.type_in(&new.target_schema)
                    ));
                    if let Some(expr) = n.domain_check() {
                        columns.push(format!(
                            "ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({expr})"
                        ));
                    }
                }
                let key = new.is_key_column(ni);
                let (was_null, is_null) =
                    (o.nullable && !old.is_key_column(*oi), n.nullable && !key);
                if was_null != is_null {
                    columns.push(format!(
                        "ALTER TABLE {table} ALTER COLUMN {col} {} NOT NULL",
                        if is_null { "DROP" } else { "SET" }
                    ));
                }
                let (oa, na) = (auto_increment(old, *oi), auto_increment(new, ni));
                if oa != na {
                    match (&oa, &na) {
                        (None, Some(AutoIncrement::Identity)) => columns.push(format!(
                            "ALTER TABLE {table} ALTER COLUMN {col} ADD GENERATED BY DEFAULT AS IDENTITY"
                        )),
                        (Some(AutoIncrement::Identity), None) => columns.push(format!(
                            "ALTER TABLE {table} ALTER COLUMN {col} DROP IDENTITY IF EXISTS"
                        )),
                        _ => notes.push(format!(
                            "column `{}`: the AUTO_INCREMENT change is not carried (no identity for {})",
                            nsc.name,
                            n.pg_type.sql()
                        )),
                    }
                }
                if na.is_none() {
                    let od = defaults::default_sql(osc, o).ok().flatten();
                    let nd = defaults::default_sql(nsc, n).ok().flatten();
                    if od != nd {
                        columns.push(match nd {
                            Some(d) => {
                                format!("ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT {d}")
                            }
                            None => format!("ALTER TABLE {table} ALTER COLUMN {col} DROP DEFAULT"),
                        });
                    }
                }
                if osc.comment != nsc.comment {
                    last.push(format!(
                        "COMMENT ON COLUMN {table}.{col} IS {}",
                        if nsc.comment.is_empty() {
                            "NULL".into()
                        } else {
                            sql_literal(&nsc.comment)
                        }
                    ));
                }
            }
            None => {
                let not_exact = |why: &str| {
                    Refusal::NotExact(format!(
                        "added column `{}`: {why}; existing rows would differ from the source's",
                        nsc.name
                    ))
                };
                if nsc.generated {
                    return Err(not_exact(
                        "a generated column's values are computed by MySQL without row events",
                    ));
                }
                if nsc.auto_increment {
                    return Err(not_exact(
                        "MySQL numbers the existing rows of an AUTO_INCREMENT column without row events",
                    ));
                }
                let nullable = n.nullable && !new.is_key_column(ni);
                let not_null = if nullable { "" } else { " NOT NULL" };
                if n.collation == CiCollation::Icu {
                    columns.push(create_icu_collation_sql(&new.target_schema));
                }
                let ty = n.type_in(&new.target_schema);
                match defaults::default_sql(nsc, n) {
                    Ok(Some(d)) if is_time_dependent(&d) => {
                        return Err(not_exact(
                            "existing rows get the time the ALTER ran on the source, which PostgreSQL cannot reproduce",
                        ))
                    }
                    Ok(Some(d)) => columns.push(format!(
                        "ALTER TABLE {table} ADD COLUMN {col} {ty}{not_null} DEFAULT {d}"
                    )),
                    Err(why) => return Err(not_exact(&why)),
                    Ok(None) if nullable => {
                        columns.push(format!("ALTER TABLE {table} ADD COLUMN {col} {ty}"))
                    }
                    Ok(None) => {
                        let Some(fill) = implicit_default(new, ni) else {
                            return Err(not_exact(
                                "NOT NULL without a default: MySQL fills existing rows with a value PostgreSQL has no equivalent for",
                            ));
                        };
                        columns.push(format!(
                            "ALTER TABLE {table} ADD COLUMN {col} {ty} NOT NULL DEFAULT {fill}"
                        ));
                        columns.push(format!(
                            "ALTER TABLE {table} ALTER COLUMN {col} DROP DEFAULT"
                        ));
                    }
                }
                if let Some(check) = n.domain_check() {
                    columns.push(format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({check})",
                        ddl::domain_check_name(new, ni)
                    ));
                }
                if !nsc.comment.is_empty() {
                    last.push(format!(
                        "COMMENT ON COLUMN {table}.{col} IS {}",
                        sql_literal(&nsc.comment)
                    ));
                }
            }
        }
    }
    if old.comment != new.comment {
        last.push(format!(
            "COMMENT ON TABLE {table} IS {}",
            if new.comment.is_empty() {
                "NULL".into()
            } else {
                sql_literal(&new.comment)
            }
        ));
    }
    for (name, expr) in &new_checks {
        if old_checks.get(name) != Some(expr) {
            last.push(format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({expr})",
                quote_ident(name)
            ));
        }
    }
    if has_trigger(new) {
        last.extend(on_update_sql(new));
    }
    if old.foreign_keys != new.foreign_keys {
        notes.push(
            "foreign keys are not changed while streaming; `ferry schema --validate-foreign-keys --create` (or the cutover) creates them from the source's definition".into(),
        );
    }
    let mut statements = first;
    statements.extend(columns);
    statements.extend(last);
    Ok(Evolution { statements, notes })
}

/// Statements that rename (and, across databases, move) the target table of `old` to `new`'s
/// name, carrying its index, sequence and trigger names along.
///
/// # Errors
/// A [`Refusal`] when the renamed table is not the same definition.
pub fn rename(old: &Table, new: &Table) -> Result<Evolution, Refusal> {
    if old.source_columns != new.source_columns || old.key != new.key {
        return Err(Refusal::CatalogMovedOn(
            "the renamed table's columns differ from the old table's".into(),
        ));
    }
    let mut statements = Vec::new();
    if old.target_schema != new.target_schema {
        statements.push(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(&new.target_schema)
        ));
        statements.push(format!(
            "ALTER TABLE {} SET SCHEMA {}",
            old.target_quoted,
            quote_ident(&new.target_schema)
        ));
    }
    let moved = format!(
        "{}.{}",
        quote_ident(&new.target_schema),
        quote_ident(&old.target_name)
    );
    if old.target_name != new.target_name {
        statements.push(format!(
            "ALTER TABLE {moved} RENAME TO {}",
            quote_ident(&new.target_name)
        ));
    }
    let schema = quote_ident(&new.target_schema);
    for (a, b) in old.indexes.iter().zip(&new.indexes) {
        let (from, to) = (old.target_index_name(a), new.target_index_name(b));
        if from != to {
            statements.push(format!(
                "ALTER INDEX IF EXISTS {schema}.{} RENAME TO {}",
                quote_ident(&from),
                quote_ident(&to)
            ));
        }
    }
    let (pk_from, pk_to) = (
        crate::select::fit_identifier(&format!("{}_pkey", old.target_name)),
        crate::select::fit_identifier(&format!("{}_pkey", new.target_name)),
    );
    if pk_from != pk_to {
        statements.push(format!(
            "ALTER INDEX IF EXISTS {schema}.{} RENAME TO {}",
            quote_ident(&pk_from),
            quote_ident(&pk_to)
        ));
    }
    for i in 0..new.columns.len() {
        let (from, to) = (ddl::sequence_name(old, i), ddl::sequence_name(new, i));
        if auto_increment(new, i).is_some() && from != to {
            statements.push(format!(
                "ALTER SEQUENCE IF EXISTS {schema}.{} RENAME TO {}",
                quote_ident(&from),
                quote_ident(&to)
            ));
        }
    }
    if new.source_columns.iter().any(|c| c.on_update_now) {
        statements.push(format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            quote_ident(&trigger_name(old)),
            new.target_quoted
        ));
        statements.extend(on_update_sql(new));
    }
    Ok(Evolution {
        statements,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SourceName;
    use crate::source::alter::parse_alter_table;
    use crate::transform::{CaseInsensitive, SourceColumn, TypeOptions};

    fn col(name: &str, data_type: &str, column_type: &str, nullable: bool) -> SourceColumn {
        SourceColumn {
            name: name.into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            nullable,
            unsigned: column_type.contains("unsigned"),
            char_max_length: column_type
                .strip_prefix("varchar(")
                .and_then(|s| s.trim_end_matches(')').parse().ok()),
            numeric_precision: None,
            numeric_scale: None,
            datetime_precision: None,
            charset: (data_type == "varchar" || data_type == "text").then(|| "utf8mb4".into()),
            collation: None,
            is_json: false,
            members: Vec::new(),
            generated: false,
            invisible: false,
            auto_increment: false,
            default: None,
            on_update_now: false,
            comment: String::new(),
        }
    }

    fn table(cols: Vec<SourceColumn>) -> Table {
        Table::plan(
            SourceName::new("shop", "items"),
            "shop".into(),
            cols,
            vec![Index {
                name: "PRIMARY".into(),
                unique: true,
                columns: vec![(0, None)],
            }],
            0,
            &TypeOptions::default(),
        )
        .expect("plan")
    }

    fn base() -> Vec<SourceColumn> {
        vec![
            col("id", "int", "int(11)", false),
            col("label", "varchar", "varchar(20)", true),
            col("qty", "int", "int(11)", true),
        ]
    }

    fn plan_of(sql: &str, new: Vec<SourceColumn>) -> Result<Evolution, Refusal> {
        plan(
            &table(base()),
            &table(new),
            &parse_alter_table(sql).expect(sql),
        )
    }

    #[test]
    fn a_collation_change_follows_types_case_insensitive() {
        let plan_ci = |mode: CaseInsensitive, old_len: u64, new_len: u64, to_ci: bool| {
            let opts = TypeOptions {
                case_insensitive: mode,
                citext_schema: Some("public".into()),
                ..Default::default()
            };
            let t = |len: u64, ci: bool| {
                let mut cols = base();
                cols[1].column_type = format!("varchar({len})");
                cols[1].char_max_length = Some(len);
                cols[1].collation = Some(
                    if ci {
                        "utf8mb4_general_ci"
                    } else {
                        "utf8mb4_bin"
                    }
                    .into(),
                );
                Table::plan(
                    SourceName::new("shop", "items"),
                    "shop".into(),
                    cols,
                    vec![Index {
                        name: "PRIMARY".into(),
                        unique: true,
                        columns: vec![(0, None)],
                    }],
                    0,
                    &opts,
                )
                .expect("plan")
            };
            let sql = format!("ALTER TABLE items MODIFY label varchar({new_len})");
            plan(
                &t(old_len, true),
                &t(new_len, to_ci),
                &parse_alter_table(&sql).expect("parse"),
            )
            .expect("evolves")
            .statements
        };
        assert_eq!(
            plan_ci(CaseInsensitive::Citext, 20, 40, true),
            vec![
                r#"ALTER TABLE "shop"."items" DROP CONSTRAINT IF EXISTS "items_label_type""#,
                r#"ALTER TABLE "shop"."items" ALTER COLUMN "label" TYPE "public".citext"#,
                r#"ALTER TABLE "shop"."items" ADD CONSTRAINT "items_label_type" CHECK (char_length("label") <= 40)"#,
            ],
            "a longer citext column gets the new limit"
        );
        assert_eq!(
            plan_ci(CaseInsensitive::Icu, 20, 20, false),
            vec![r#"ALTER TABLE "shop"."items" ALTER COLUMN "label" TYPE varchar(20)"#],
            "_ci to _bin drops the ICU collation"
        );
        let to_icu = plan_ci(CaseInsensitive::Icu, 20, 30, true);
        assert!(to_icu[0].starts_with(r#"CREATE COLLATION IF NOT EXISTS "shop"."ferry_ci""#));
        assert_eq!(
            to_icu[1],
            r#"ALTER TABLE "shop"."items" ALTER COLUMN "label" TYPE varchar(30) COLLATE "shop"."ferry_ci""#
        );
    }

    #[test]
    fn add_drop_rename_and_widen() {
        let mut cols = base();
        cols.push(col("note", "varchar", "varchar(10)", true));
        let e = plan_of("ALTER TABLE items ADD COLUMN note varchar(10)", cols).expect("add");
        assert_eq!(
            e.statements,
            vec![r#"ALTER TABLE "shop"."items" ADD COLUMN "note" varchar(10)"#]
        );

        let mut cols = base();
        cols.remove(2);
        let e = plan_of("ALTER TABLE items DROP COLUMN qty", cols).expect("drop");
        assert_eq!(
            e.statements,
            vec![r#"ALTER TABLE "shop"."items" DROP COLUMN IF EXISTS "qty""#]
        );

        let mut cols = base();
        cols[1].name = "title".into();
        cols[1].column_type = "varchar(40)".into();
        cols[1].char_max_length = Some(40);
        let e = plan_of("ALTER TABLE items CHANGE label title varchar(40)", cols).expect("change");
        assert_eq!(
            e.statements,
            vec![
                r#"ALTER TABLE "shop"."items" RENAME COLUMN "label" TO "title""#,
                r#"ALTER TABLE "shop"."items" ALTER COLUMN "title" TYPE varchar(40)"#
            ]
        );

        let mut cols = base();
        cols[2] = col("qty", "bigint", "bigint(20)", false);
        let e = plan_of("ALTER TABLE items MODIFY qty bigint NOT NULL", cols).expect("widen");
        assert_eq!(
            e.statements,
            vec![
                r#"ALTER TABLE "shop"."items" ALTER COLUMN "qty" TYPE bigint"#,
                r#"ALTER TABLE "shop"."items" ALTER COLUMN "qty" SET NOT NULL"#
            ]
        );
    }

    #[test]
    fn not_null_added_columns_get_mysqls_implicit_value() {
        let mut cols = base();
        cols.push(col("n", "int", "int(11)", false));
        let e = plan_of("ALTER TABLE items ADD n int NOT NULL", cols).expect("add");
        assert_eq!(
            e.statements,
            vec![
                r#"ALTER TABLE "shop"."items" ADD COLUMN "n" integer NOT NULL DEFAULT 0"#,
                r#"ALTER TABLE "shop"."items" ALTER COLUMN "n" DROP DEFAULT"#
            ]
        );
        let mut cols = base();
        let mut at = col("at", "timestamp", "timestamp", true);
        at.default = Some("current_timestamp()".into());
        cols.push(at);
        assert!(matches!(
            plan_of(
                "ALTER TABLE items ADD at timestamp DEFAULT CURRENT_TIMESTAMP",
                cols
            ),
            Err(Refusal::NotExact(_))
        ));
    }

    #[test]
    fn refusals() {
        let mut cols = base();
        cols[1].column_type = "varchar(5)".into();
        cols[1].char_max_length = Some(5);
        assert!(matches!(
            plan_of("ALTER TABLE items MODIFY label varchar(5)", cols),
            Err(Refusal::NotExact(_))
        ));
        let mut cols = base();
        cols.push(col("x", "int", "int(11)", true));
        assert!(matches!(
            plan_of("ALTER TABLE items ENGINE=InnoDB, ADD INDEX (qty)", cols),
            Err(Refusal::CatalogMovedOn(_))
        ));
        let cols = base();
        let new = Table::plan(
            SourceName::new("shop", "items"),
            "shop".into(),
            cols,
            vec![Index {
                name: "PRIMARY".into(),
                unique: true,
                columns: vec![(0, None), (2, None)],
            }],
            0,
            &TypeOptions::default(),
        );
        let mut new = new.expect("plan");
        new.source_columns[2].nullable = false;
        let alter =
            parse_alter_table("ALTER TABLE items DROP PRIMARY KEY, ADD PRIMARY KEY (id, qty)")
                .expect("alter");
        assert!(matches!(
            plan(&table(base()), &new, &alter),
            Err(Refusal::KeyChange(_)) | Err(Refusal::CatalogMovedOn(_))
        ));
    }

    #[test]
    fn widening_rules() {
        use PgType::*;
        assert!(widens(&Integer, &BigInt));
        assert!(widens(&BigInt, &Numeric(Some((20, 0)))));
        assert!(!widens(&BigInt, &Integer));
        assert!(widens(&Numeric(Some((10, 2))), &Numeric(Some((12, 4)))));
        assert!(!widens(&Numeric(Some((10, 2))), &Numeric(Some((10, 4)))));
        assert!(widens(&Varchar(10), &Text));
        assert!(!widens(&Text, &Varchar(10)));
        assert!(!widens(&Bit(4), &Bit(8)));
        assert!(widens(&Timestamp(0), &Timestamp(3)));
    }
}
