//! The replicated-table model shared by the source (which reads it from MySQL's catalog) and the
//! sink (which creates and writes PostgreSQL tables from it).
//!
//! Guarantees: a [`Table`] always has a row identity ([`Table::key`]): the primary key, a
//! unique key whose columns are all NOT NULL, or — for a table with neither — the whole row
//! ([`KeySource::FullRow`]: every column, duplicates allowed, so an update or delete touches
//! exactly one row equal to the source's before image, as MySQL's own replica does). Target names are deterministic and collision-free
//! within a table (two MySQL columns folding to one PostgreSQL name is an error at load, not an
//! overwrite). Index names are made unique per PostgreSQL schema by prefixing the table name,
//! because MySQL scopes index names per table and PostgreSQL per schema.

use std::collections::HashSet;
use std::fmt;

use crate::select::{fit_identifier, fold_name, quote_ident};
use crate::transform::{
    plan_column, ColumnRule, MappingError, SourceColumn, TypeOptions, ValueKind, ValuePolicy,
};

/// `db.table` on the source.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SourceName {
    pub db: String,
    pub table: String,
}

impl SourceName {
    pub fn new(db: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            db: db.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

/// An index as MySQL declares it; columns are positions in [`Table::columns`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    /// (column position, prefix length in characters for MySQL prefix indexes).
    pub columns: Vec<(usize, Option<u32>)>,
}

/// How the row identity was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    PrimaryKey,
    /// A unique key on NOT NULL columns, used because the table has no primary key.
    UniqueKey(String),
    /// No primary key and no unique key on NOT NULL columns: the whole row is the identity.
    /// [`Table::key`] then lists every column, identical rows may repeat, and nothing on the
    /// target is unique by it.
    FullRow,
}

/// A table ferry replicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub source: SourceName,
    pub target_schema: String,
    pub target_name: String,
    /// `"schema"."table"`, quoted, for SQL generation.
    pub target_quoted: String,
    pub source_columns: Vec<SourceColumn>,
    pub columns: Vec<ColumnRule>,
    /// Column positions of the row identity, in key order.
    pub key: Vec<usize>,
    pub key_source: KeySource,
    /// Other indexes (unique and not) to recreate on tables ferry creates.
    pub indexes: Vec<Index>,
    /// `information_schema.TABLES.TABLE_ROWS`: an estimate, for progress only.
    pub estimated_rows: u64,
    /// TABLE_COMMENT (empty for none), carried as `COMMENT ON TABLE`.
    pub comment: String,
    /// CHECK constraints as the source declares them.
    pub checks: Vec<Check>,
    /// Foreign keys of this (child) table as the source declares them.
    pub foreign_keys: Vec<ForeignKey>,
}

/// A foreign key of the source table (columns by source name).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub parent: SourceName,
    pub parent_columns: Vec<String>,
    /// UPDATE_RULE / DELETE_RULE: `CASCADE`, `SET NULL`, `RESTRICT`, `NO ACTION`, ...
    pub on_update: String,
    pub on_delete: String,
}

/// A CHECK constraint of the source table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    pub name: String,
    /// CHECK_CLAUSE as the server prints it.
    pub clause: String,
}

/// Why a table cannot be replicated as declared.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table {table}: {source}; exclude the table with `tables.exclude = [\"{table}\"]` or change the column on the source")]
    Mapping {
        table: SourceName,
        source: MappingError,
    },
    #[error("table {table}: columns {a:?} and {b:?} both become {folded:?} in PostgreSQL (names are folded to lower case); rename one on the source")]
    NameCollision {
        table: SourceName,
        a: String,
        b: String,
        folded: String,
    },
}

impl Table {
    /// Plans a table from its catalog description.
    ///
    /// # Errors
    /// No usable key, an unmappable column, or two columns folding to one name.
    pub fn plan(
        source: SourceName,
        target_schema: String,
        source_columns: Vec<SourceColumn>,
        indexes: Vec<Index>,
        estimated_rows: u64,
        options: &TypeOptions,
    ) -> Result<Table, TableError> {
        let mut columns = Vec::with_capacity(source_columns.len());
        let mut seen: Vec<(String, String)> = Vec::new();
        for c in &source_columns {
            let rule = plan_column(c, options).map_err(|e| TableError::Mapping {
                table: source.clone(),
                source: e,
            })?;
            if let Some((a, _)) = seen.iter().find(|(_, f)| *f == rule.target_name) {
                return Err(TableError::NameCollision {
                    table: source.clone(),
                    a: a.clone(),
                    b: c.name.clone(),
                    folded: rule.target_name.clone(),
                });
            }
            seen.push((c.name.clone(), rule.target_name.clone()));
            columns.push(rule);
        }
        let primary = indexes.iter().find(|i| i.name == "PRIMARY");
        let (key, key_source) = match primary {
            Some(pk) => (
                pk.columns.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
                KeySource::PrimaryKey,
            ),
            None => {
                let candidate = indexes.iter().find(|i| {
                    i.unique
                        && i.columns
                            .iter()
                            .all(|(c, prefix)| prefix.is_none() && !source_columns[*c].nullable)
                });
                match candidate {
                    Some(u) => (
                        u.columns.iter().map(|(c, _)| *c).collect(),
                        KeySource::UniqueKey(u.name.clone()),
                    ),
                    None => ((0..source_columns.len()).collect(), KeySource::FullRow),
                }
            }
        };
        // Under `types.zero_date = "null"` a zero date becomes NULL: a NOT NULL date column
        // would refuse it, so it is created nullable (`ferry schema` and the start log say
        // which). A key column stays NOT NULL: a key cannot be NULL.
        if options.zero_date == ValuePolicy::Null {
            for (i, rule) in columns.iter_mut().enumerate() {
                if !rule.nullable
                    && (key_source == KeySource::FullRow || !key.contains(&i))
                    && matches!(
                        rule.kind,
                        ValueKind::Date | ValueKind::DateTime | ValueKind::Timestamp
                    )
                {
                    rule.nullable = true;
                }
            }
        }
        let target_name = fold_name(&source.table);
        let target_quoted = format!(
            "{}.{}",
            quote_ident(&target_schema),
            quote_ident(&target_name)
        );
        let indexes = indexes
            .into_iter()
            .filter(|i| i.name != "PRIMARY" && key_source != KeySource::UniqueKey(i.name.clone()))
            .collect();
        Ok(Table {
            source,
            target_schema,
            target_name,
            target_quoted,
            source_columns,
            columns,
            key,
            key_source,
            indexes,
            estimated_rows,
            comment: String::new(),
            checks: Vec::new(),
            foreign_keys: Vec::new(),
        })
    }

    /// Deterministic, schema-unique PostgreSQL name for one of this table's indexes.
    /// The row identity as an index: `PRIMARY`, or the unique key ferry keys by; `None` for a
    /// table identified by its whole row.
    pub fn key_index(&self) -> Option<Index> {
        let name = match &self.key_source {
            KeySource::PrimaryKey => "PRIMARY".to_string(),
            KeySource::UniqueKey(n) => n.clone(),
            KeySource::FullRow => return None,
        };
        Some(Index {
            name,
            unique: true,
            columns: self.key.iter().map(|c| (*c, None)).collect(),
        })
    }

    /// Every index as the catalog describes it (the key first), for planning the table again.
    pub fn all_indexes(&self) -> Vec<Index> {
        let mut out: Vec<Index> = self.key_index().into_iter().collect();
        out.extend(self.indexes.iter().cloned());
        out
    }

    /// The key's values of a row of this table, in key order.
    pub fn key_of(&self, cells: &[crate::transform::Cell]) -> Vec<crate::transform::Cell> {
        self.key.iter().map(|i| cells[*i].clone()).collect()
    }

    /// True when rows have an identity of their own (a primary or unique key); false for a
    /// table identified by its whole row ([`KeySource::FullRow`]).
    pub fn has_key(&self) -> bool {
        self.key_source != KeySource::FullRow
    }

    /// Takes the table-level details [`Table::plan`] does not set (comment, CHECKs, foreign
    /// keys) from `other`.
    pub fn with_details_of(mut self, other: &Table) -> Table {
        self.comment = other.comment.clone();
        self.checks = other.checks.clone();
        self.foreign_keys = other.foreign_keys.clone();
        self
    }

    pub fn target_index_name(&self, index: &Index) -> String {
        fit_identifier(&format!("{}_{}", self.target_name, fold_name(&index.name)))
    }

    /// Names of the key columns on the source, for messages.
    pub fn key_names(&self) -> Vec<&str> {
        self.key
            .iter()
            .map(|i| self.source_columns[*i].name.as_str())
            .collect()
    }

    /// Columns NOT NULL on the source that the target takes as nullable (zero dates written as
    /// NULL under `types.zero_date = "null"`), by source name.
    pub fn relaxed_not_null(&self) -> Vec<&str> {
        self.source_columns
            .iter()
            .zip(&self.columns)
            .filter(|(s, r)| !s.nullable && r.nullable)
            .map(|(s, _)| s.name.as_str())
            .collect()
    }

    /// True when column `i` is part of a primary or unique key ferry identifies rows by (never
    /// for a table identified by its whole row: its columns keep their own nullability).
    pub fn is_key_column(&self, i: usize) -> bool {
        self.has_key() && self.key.contains(&i)
    }
}

/// Checks that no two tables map to the same PostgreSQL table.
pub fn check_target_collisions<'a>(tables: impl Iterator<Item = &'a Table>) -> Result<(), String> {
    let mut seen = HashSet::new();
    for t in tables {
        if !seen.insert((t.target_schema.clone(), t.target_name.clone())) {
            return Err(format!(
                "two source tables map to PostgreSQL table {}.{} (names are folded to lower case); exclude one or map its database to another schema with `tables.schema_map`",
                t.target_schema, t.target_name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, dt: &str, nullable: bool) -> SourceColumn {
        SourceColumn {
            name: name.into(),
            data_type: dt.into(),
            column_type: dt.into(),
            nullable,
            charset: Some("utf8mb4".into()),
            char_max_length: Some(10),
            ..Default::default()
        }
    }

    fn idx(name: &str, unique: bool, cols: &[usize]) -> Index {
        Index {
            name: name.into(),
            unique,
            columns: cols.iter().map(|c| (*c, None)).collect(),
        }
    }

    #[test]
    fn primary_key_is_the_identity() {
        let t = Table::plan(
            SourceName::new("shop", "Users"),
            "shop".into(),
            vec![col("id", "int", false), col("Email", "varchar", false)],
            vec![idx("PRIMARY", true, &[0]), idx("email", true, &[1])],
            0,
            &TypeOptions::default(),
        )
        .expect("plans");
        assert_eq!(t.key, vec![0]);
        assert_eq!(t.target_name, "users");
        assert_eq!(t.target_quoted, "\"shop\".\"users\"");
        assert_eq!(t.indexes.len(), 1);
        assert_eq!(t.target_index_name(&t.indexes[0]), "users_email");
    }

    #[test]
    fn not_null_unique_key_stands_in_for_a_missing_primary_key() {
        let t = Table::plan(
            SourceName::new("shop", "t"),
            "shop".into(),
            vec![col("a", "int", true), col("b", "int", false)],
            vec![idx("ua", true, &[0]), idx("ub", true, &[1])],
            0,
            &TypeOptions::default(),
        )
        .expect("plans");
        assert_eq!(t.key, vec![1], "the nullable unique key is not an identity");
        assert_eq!(t.key_source, KeySource::UniqueKey("ub".into()));
        assert_eq!(t.indexes.len(), 1);
    }

    #[test]
    fn no_key_makes_the_whole_row_the_identity() {
        let t = Table::plan(
            SourceName::new("shop", "logs"),
            "shop".into(),
            vec![col("a", "int", true), col("b", "text", false)],
            vec![idx("ia", false, &[0])],
            0,
            &TypeOptions::default(),
        )
        .expect("a table without a key is planned");
        assert_eq!(t.key_source, KeySource::FullRow);
        assert_eq!(t.key, vec![0, 1]);
        assert!(!t.has_key());
        assert!(t.key_index().is_none());
        // Columns keep their own nullability: nothing on the target is a key.
        assert!(!t.is_key_column(0));
        assert_eq!(t.all_indexes().len(), 1, "only the plain index");
    }

    #[test]
    fn zero_dates_as_null_make_non_key_date_columns_nullable() {
        let cols = vec![
            col("day", "date", false),
            col("seen", "datetime", false),
            col("n", "int", false),
        ];
        let options = TypeOptions {
            zero_date: ValuePolicy::Null,
            ..Default::default()
        };
        let t = Table::plan(
            SourceName::new("shop", "t"),
            "shop".into(),
            cols.clone(),
            vec![idx("PRIMARY", true, &[0])],
            0,
            &options,
        )
        .expect("plans");
        assert!(!t.columns[0].nullable, "the key stays NOT NULL");
        assert!(t.columns[1].nullable);
        assert!(!t.columns[2].nullable);
        assert_eq!(t.relaxed_not_null(), vec!["seen"]);
        let strict = Table::plan(
            SourceName::new("shop", "t"),
            "shop".into(),
            cols,
            vec![idx("PRIMARY", true, &[0])],
            0,
            &TypeOptions::default(),
        )
        .expect("plans");
        assert!(strict.relaxed_not_null().is_empty());
    }

    #[test]
    fn folded_name_collisions_are_refused() {
        let err = Table::plan(
            SourceName::new("shop", "t"),
            "shop".into(),
            vec![
                col("id", "int", false),
                col("Name", "int", true),
                col("name", "int", true),
            ],
            vec![idx("PRIMARY", true, &[0])],
            0,
            &TypeOptions::default(),
        )
        .expect_err("collision");
        assert!(err.to_string().contains("\"name\""), "{err}");
    }
}
