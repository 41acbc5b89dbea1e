//! Carries a schema change the decoder accepted ([`PendingChange`]): reads the tables' new
//! definitions from the source's catalog, plans the PostgreSQL statements
//! (`target_schema::evolve`), registers the new definitions with the decoder, and returns the
//! [`SchemaChange`] messages that apply them in the statement's own transaction.
//!
//! Guarantees: the decoder decodes every later row with the new definition, and the sink
//! applies the target statements before any of those rows, in the transaction that records the
//! position after the statement. A change that cannot be carried exactly stops the stream with a
//! definite error naming table, position, statement, reason and fix, before any later row.

use std::sync::Arc;

use mysql_async::Conn;

use super::alter::{Alter, Clause, Place};
use super::catalog;
use super::connect::Flavor;
use super::decode::{
    statement_excerpt, ChangeKind, DecodeError, Decoder, PendingChange, RefusedChange,
};
use crate::change::{Message, SchemaChange};
use crate::recorded_alters::{Bookkeeping, RecordedAlter};
use crate::schema::{Index, SourceName, Table};
use crate::select::{fit_identifier, quote_ident, TableSelector};
use crate::target_schema::evolve::{self, Refusal};
use crate::transform::TypeOptions;

use super::binlog::SourceError;

/// What the catalog reads need.
pub struct Catalog<'a> {
    pub conn: &'a mut Conn,
    pub flavor: Flavor,
    pub selector: &'a TableSelector,
    pub options: &'a TypeOptions,
    /// `ddl.allow_key_change`: a change of the row identity is carried.
    pub allow_key_change: bool,
}

impl Catalog<'_> {
    async fn load(&mut self, name: &SourceName) -> Result<Option<Table>, SourceError> {
        let tables = catalog::load_named(
            self.conn,
            self.flavor,
            self.selector,
            self.options,
            &[(name.clone(), 0)],
        )
        .await?;
        Ok(tables.into_iter().next())
    }
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The table as `alter` leaves `old`, with each column the statement adds or redefines taken
/// from the catalog's `live` definition. Equal to `live` while the catalog shows exactly this
/// statement's effect; when later changes of the same table already ran (several schema changes
/// in the backlog), it is the definition at this statement, not the catalog's latest. The next
/// table map is validated against it, as always.
///
/// # Errors
/// A column the statement adds or redefines that the catalog no longer has.
fn derive(
    old: &Table,
    live: &Table,
    alter: &Alter,
    options: &TypeOptions,
) -> Result<Table, Refusal> {
    let live_col = |name: &str| {
        live.source_columns
            .iter()
            .find(|c| same(&c.name, name))
            .cloned()
            .ok_or_else(|| {
                Refusal::CatalogMovedOn(format!(
                    "column `{name}` that the statement defines is no longer in the source's table"
                ))
            })
    };
    let mut cols = old.source_columns.clone();
    let mut renames: Vec<(String, String)> = Vec::new();
    for clause in &alter.clauses {
        match clause {
            Clause::AddColumn { name, .. } => {
                let def = live_col(name)?;
                match cols.iter_mut().find(|c| same(&c.name, name)) {
                    // Already known: the table was loaded (CREATE TABLE) after this ran.
                    Some(c) => *c = def,
                    None => cols.push(def),
                }
            }
            Clause::DropColumn(name) => cols.retain(|c| !same(&c.name, name)),
            Clause::RenameColumn { from, to } => {
                if let Some(c) = cols.iter_mut().find(|c| same(&c.name, from)) {
                    c.name = to.clone();
                    renames.push((from.clone(), to.clone()));
                }
            }
            Clause::ModifyColumn(name) => {
                let def = live_col(name)?;
                if let Some(c) = cols.iter_mut().find(|c| same(&c.name, name)) {
                    *c = def;
                }
            }
            Clause::ConvertCharset => {
                for c in cols.iter_mut() {
                    if let Ok(def) = live_col(&c.name) {
                        *c = def;
                    }
                }
            }
            Clause::Place { column, place } => {
                if let Some(i) = cols.iter().position(|c| same(&c.name, column)) {
                    let c = cols.remove(i);
                    let at = match place {
                        Place::First => 0,
                        Place::After(x) => cols
                            .iter()
                            .position(|c| same(&c.name, x))
                            .map_or(cols.len(), |j| j + 1),
                    };
                    cols.insert(at, c);
                }
            }
            _ => {}
        }
    }
    if cols == live.source_columns {
        return Ok(live.clone());
    }
    // Indexes by column name, re-positioned on the derived columns; an index on a column the
    // derived table lacks is left out.
    let renamed = |n: &str| {
        renames
            .iter()
            .find(|(from, _)| same(from, n))
            .map_or_else(|| n.to_string(), |(_, to)| to.clone())
    };
    let position = |n: &str| cols.iter().position(|c| same(&c.name, n));
    let remap = |t: &Table, ix: &Index, rename: bool| -> Option<Index> {
        let columns = ix
            .columns
            .iter()
            .map(|(c, p)| {
                let name = &t.source_columns[*c].name;
                let name = if rename { renamed(name) } else { name.clone() };
                position(&name).map(|i| (i, *p))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Index {
            name: ix.name.clone(),
            unique: ix.unique,
            columns,
        })
    };
    let indexes: Vec<Index> = if alter.has(|c| matches!(c, Clause::PrimaryKey)) {
        // The row identity changes (`ddl.allow_key_change`): every index as the source has it.
        live.all_indexes()
            .iter()
            .filter_map(|ix| remap(live, ix, false))
            .collect()
    } else {
        let key = old.key_index();
        let indexes_from = if alter.has(|c| matches!(c, Clause::Index)) {
            (live, false)
        } else {
            (old, true)
        };
        let mut indexes: Vec<Index> = key.and_then(|k| remap(old, &k, true)).into_iter().collect();
        indexes.extend(
            indexes_from
                .0
                .indexes
                .iter()
                .filter_map(|ix| remap(indexes_from.0, ix, indexes_from.1)),
        );
        indexes
    };
    let table_level = |c: &Clause| matches!(c, Clause::TableComment | Clause::Constraint);
    let details = if alter.has(table_level) { live } else { old };
    Table::plan(
        old.source.clone(),
        old.target_schema.clone(),
        cols,
        indexes,
        old.estimated_rows,
        options,
    )
    .map(|t| t.with_details_of(details))
    .map_err(|e| Refusal::NotExact(e.to_string()))
}

/// `old`'s definition under the name `to`.
fn renamed(
    old: &Table,
    to: &SourceName,
    selector: &TableSelector,
    options: &TypeOptions,
) -> Result<Table, Refusal> {
    Table::plan(
        to.clone(),
        selector.target_schema(&to.db),
        old.source_columns.clone(),
        old.all_indexes(),
        old.estimated_rows,
        options,
    )
    .map(|t| t.with_details_of(old))
    .map_err(|e| Refusal::NotExact(e.to_string()))
}

fn refused(table: &SourceName, change: &PendingChange, refusal: &Refusal) -> SourceError {
    crate::metrics::schema_change("refused");
    SourceError::Decode(DecodeError::SchemaChangeRefused(Box::new(RefusedChange {
        table: table.clone(),
        position: change.position.clone(),
        statement: statement_excerpt(&change.sql),
        reason: refusal.to_string(),
        recopy: String::new(),
    })))
}

fn message(
    change: &PendingChange,
    table: Arc<Table>,
    new: Option<Arc<Table>>,
    statements: Vec<String>,
) -> Message {
    Message::SchemaChange(Box::new(SchemaChange {
        table,
        new,
        statements,
        position: change.position.clone(),
        source_sql: change.sql.clone(),
        bookkeeping: false,
        shadow: None,
    }))
}

/// A bookkeeping message about `table` (unchanged) for a shadow table's records.
fn bookkeeping(change: &PendingChange, table: Arc<Table>, book: Bookkeeping) -> Message {
    Message::SchemaChange(Box::new(SchemaChange {
        table: table.clone(),
        new: Some(table),
        statements: Vec::new(),
        position: change.position.clone(),
        source_sql: change.sql.clone(),
        bookkeeping: true,
        shadow: Some(book),
    }))
}

/// The recorded statements of a shadow as one ALTER of `base`, in binlog order.
fn merged_alter(base: &SourceName, recorded: &[RecordedAlter]) -> Result<Alter, Refusal> {
    let mut clauses = Vec::new();
    for r in recorded {
        if let Some(parsed) = super::alter::parse_alter_table(&r.sql) {
            clauses.extend(parsed.clauses);
        } else if is_index_statement(&r.sql) {
            clauses.push(Clause::Index);
        } else {
            return Err(Refusal::NotExact(format!(
                "the shadow's recorded statement at {} cannot be read: {}",
                r.position,
                statement_excerpt(&r.sql)
            )));
        }
    }
    Ok(Alter {
        table: (Some(base.db.clone()), base.table.clone()),
        clauses,
    })
}

fn is_index_statement(sql: &str) -> bool {
    matches!(
        super::ddl::classify(sql),
        super::ddl::Statement::SchemaChange { verb, .. } if verb == "CREATE INDEX" || verb == "DROP INDEX"
    )
}

/// Carries `change`; the messages go before the statement's commit.
///
/// # Errors
/// Catalog failures (classed by the connection), and refusals (definite).
pub async fn carry(
    catalog: &mut Catalog<'_>,
    decoder: &mut Decoder,
    change: &PendingChange,
    recopying: Option<&SourceName>,
) -> Result<Vec<Message>, SourceError> {
    if let Some(t) = recopying.filter(|t| change.kind.tables().contains(t)) {
        return Err(refused(
            t,
            change,
            &Refusal::NotExact(
                "the table is being copied again (`ferry backfill --table`), into a shadow table of the old definition".into(),
            ),
        ));
    }
    let mut out = Vec::new();
    match &change.kind {
        ChangeKind::Alter { table, alter } => {
            let Some(old) = decoder.registry().get(table).cloned() else {
                return Ok(out);
            };
            let Some(live) = catalog.load(table).await? else {
                return Err(refused(
                    table,
                    change,
                    &Refusal::CatalogMovedOn("the table no longer exists".into()),
                ));
            };
            let mut new = derive(&old, &live, alter, catalog.options)
                .map_err(|r| refused(table, change, &r))?;
            if new.source_columns != live.source_columns {
                tracing::info!(table = %table, position = %change.position, "the source's catalog already shows later schema changes of this table; using the definition as this statement left it");
            }
            new.estimated_rows = old.estimated_rows;
            let evolution = evolve::plan_with(&old, &new, alter, catalog.allow_key_change)
                .map_err(|r| refused(table, change, &r))?;
            for note in &evolution.notes {
                tracing::warn!(table = %table, position = %change.position, "{note}");
            }
            let new = decoder.register(new);
            out.push(message(change, old, Some(new), evolution.statements));
        }
        ChangeKind::Rename(pairs) => {
            for (from, to) in pairs {
                let Some(old) = decoder.registry().get(from).cloned() else {
                    continue;
                };
                decoder.unregister(from);
                if !catalog.selector.matches(&to.db, &to.table) {
                    tracing::warn!(table = %from, renamed_to = %to, position = %change.position, "a replicated table was renamed out of the selection; ferry stops replicating it and leaves its PostgreSQL table as it is");
                    out.push(message(change, old, None, Vec::new()));
                    continue;
                }
                // The same definition under the new name: the catalog may already have moved on
                // (pt-online-schema-change drops `_t_old` right after its swap).
                let new = renamed(&old, to, catalog.selector, catalog.options)
                    .map_err(|r| refused(from, change, &r))?;
                let evolution =
                    evolve::rename(&old, &new).map_err(|r| refused(from, change, &r))?;
                let new = decoder.register(new);
                out.push(message(change, old, Some(new), evolution.statements));
            }
        }
        ChangeKind::ShadowAlter { base, shadow } => {
            let Some(old) = decoder.registry().get(base).cloned() else {
                return Ok(out);
            };
            let record = RecordedAlter {
                shadow: shadow.clone(),
                base: base.clone(),
                position: change.position.to_string(),
                sql: change.sql.clone(),
            };
            decoder.record_shadow_alter(record.clone());
            tracing::info!(table = %base, shadow = %shadow, position = %change.position, statement = %statement_excerpt(&change.sql), "recorded the schema change of an online schema change tool's shadow table: it applies to the table at the tool's cut-over");
            out.push(bookkeeping(change, old, Bookkeeping::Record(record)));
        }
        ChangeKind::ShadowDropped { base, shadow } => {
            let Some(old) = decoder.registry().get(base).cloned() else {
                return Ok(out);
            };
            let discarded = decoder.take_shadow_alters(shadow);
            if !discarded.is_empty() {
                tracing::warn!(table = %base, shadow = %shadow, position = %change.position, discarded = discarded.len(), "an online schema change tool dropped (or created again) its shadow table without a cut-over (an interrupted run): its recorded schema changes are discarded");
            }
            out.push(bookkeeping(
                change,
                old,
                Bookkeeping::Forget(shadow.clone()),
            ));
        }
        ChangeKind::Swap { base, shadow } => {
            let Some(old) = decoder.registry().get(base).cloned() else {
                return Ok(out);
            };
            let recorded = decoder.take_shadow_alters(shadow);
            let alter = merged_alter(base, &recorded).map_err(|r| refused(base, change, &r))?;
            let Some(live) = catalog.load(base).await? else {
                return Err(refused(
                    base,
                    change,
                    &Refusal::CatalogMovedOn("the table no longer exists".into()),
                ));
            };
            if recorded.is_empty() && live.source_columns != old.source_columns {
                return Err(refused(
                    base,
                    change,
                    &Refusal::NotExact(format!(
                        "the tool's shadow {shadow} that takes the table's place has another definition, but ferry saw no schema change of it (the tool altered it before the stream's start position)"
                    )),
                ));
            }
            let mut new = derive(&old, &live, &alter, catalog.options)
                .map_err(|r| refused(base, change, &r))?;
            new.estimated_rows = old.estimated_rows;
            let evolution = evolve::plan_with(&old, &new, &alter, catalog.allow_key_change)
                .map_err(|r| refused(base, change, &r))?;
            for note in &evolution.notes {
                tracing::warn!(table = %base, position = %change.position, "{note}");
            }
            tracing::info!(table = %base, shadow = %shadow, position = %change.position, recorded = recorded.len(), statements = %evolution.statements.join("; "), "online schema change cut-over: the shadow's recorded schema changes apply to the table, which keeps its rows on PostgreSQL");
            let new = decoder.register(new);
            let mut m = SchemaChange {
                table: old,
                new: Some(new),
                statements: evolution.statements,
                position: change.position.clone(),
                source_sql: change.sql.clone(),
                bookkeeping: false,
                shadow: Some(Bookkeeping::Forget(shadow.clone())),
            };
            if recorded.is_empty() && m.statements.is_empty() {
                m.bookkeeping = true;
            }
            out.push(Message::SchemaChange(Box::new(m)));
        }
        ChangeKind::Drop(names) => {
            for name in names {
                let Some(old) = decoder.registry().get(name).cloned() else {
                    continue;
                };
                decoder.unregister(name);
                let function = format!(
                    "{}.{}",
                    quote_ident(&old.target_schema),
                    quote_ident(&fit_identifier(&format!("{}_on_update", old.target_name)))
                );
                let statements = vec![
                    format!("DROP TABLE IF EXISTS {}", old.target_quoted),
                    format!("DROP FUNCTION IF EXISTS {function}()"),
                ];
                out.push(message(change, old, None, statements));
            }
        }
    }
    Ok(out)
}
