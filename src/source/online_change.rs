//! Statements of online schema change tools (gh-ost, pt-online-schema-change) on their own
//! tables beside a replicated table ([`super::tool_tables`]): what each asks of the stream.
//!
//! Guarantees: a tool's tables are never created or written on the target; the ALTER the tool
//! runs on its shadow is checked as strictly as one run on the real table, then recorded; the
//! tool's atomic cut-over (`RENAME TABLE t TO _t_del, _t_gho TO t`) applies what was recorded to
//! the real table, which keeps its name and rows on the target; the shadow dropped without a
//! cut-over discards what was recorded. A cut-over ferry cannot carry exactly (two separate
//! RENAMEs, other tables in the same RENAME) is refused with the reason, never guessed.

use super::alter::{self, Clause};
use super::decode::{ChangeKind, Registry};
use super::tool_tables::Role;
use crate::schema::SourceName;
use crate::select::TableSelector;

/// What a statement touching a tool's table asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The statement touches no tool table of a replicated table: the usual rules apply.
    NotOurs,
    /// Nothing to carry (the tool's helper tables, storage options of the shadow).
    Ignore,
    Carry(ChangeKind),
}

/// The tool table `n` belongs to, when that table is replicated.
pub fn tool_of(
    selector: &TableSelector,
    registry: &Registry,
    n: &SourceName,
) -> Option<(SourceName, Role)> {
    selector
        .tool_tables(&n.db, &n.table)
        .into_iter()
        .find(|(base, _)| registry.get(base).is_some())
}

/// Classifies schema-change statement `verb` (`sql`, naming `names`); `Err` is the reason to
/// refuse it, `table` the replicated table it concerns.
pub fn classify(
    selector: &TableSelector,
    registry: &Registry,
    allow_key_change: bool,
    verb: &str,
    sql: &str,
    names: &[SourceName],
    resolve: &dyn Fn(&alter::Name) -> SourceName,
) -> Result<Step, (SourceName, String)> {
    let tool = |n: &SourceName| tool_of(selector, registry, n);
    let Some((first_base, _)) = names.iter().find_map(tool) else {
        return Ok(Step::NotOurs);
    };
    let refuse = |base: &SourceName, reason: &str| Err((base.clone(), reason.to_string()));
    match verb {
        "ALTER TABLE" => {
            let Some(parsed) = alter::parse_alter_table(sql) else {
                return refuse(&first_base, "ferry cannot read the statement, which an online schema change tool's cut-over would apply to the table");
            };
            let name = resolve(&parsed.table);
            let Some((base, role)) = tool(&name) else {
                return Ok(Step::NotOurs);
            };
            if role == Role::Helper {
                return Ok(Step::Ignore);
            }
            for c in &parsed.clauses {
                match c {
                    Clause::Unknown(text) => {
                        return refuse(&base, &format!("ferry cannot read the clause `{text}`"))
                    }
                    Clause::RowsChanged(what) => {
                        return refuse(&base, &format!("{what} changes rows without row events"))
                    }
                    Clause::PrimaryKey if !allow_key_change => {
                        return refuse(&base, "the primary key changes, and with it the row identity ferry upserts and deletes by; set ddl.allow_key_change = true to re-key the PostgreSQL table in the same transaction")
                    }
                    Clause::RenameTable(_) => {
                        return refuse(&base, "the tool's shadow table is renamed by ALTER TABLE, not by its cut-over RENAME TABLE")
                    }
                    _ => {}
                }
            }
            if parsed.is_storage_only() {
                return Ok(Step::Ignore);
            }
            Ok(Step::Carry(ChangeKind::ShadowAlter { base, shadow: name }))
        }
        "CREATE INDEX" | "DROP INDEX" => {
            match names.first().and_then(|n| tool(n).map(|t| (n, t))) {
                Some((shadow, (base, Role::Shadow))) => Ok(Step::Carry(ChangeKind::ShadowAlter {
                    base,
                    shadow: shadow.clone(),
                })),
                _ => Ok(Step::Ignore),
            }
        }
        "RENAME TABLE" => {
            let Some(pairs) = alter::parse_rename_tables(sql) else {
                return refuse(&first_base, "ferry cannot read the statement");
            };
            let pairs: Vec<(SourceName, SourceName)> = pairs
                .iter()
                .map(|(a, b)| (resolve(a), resolve(b)))
                .collect();
            let mut swap = None;
            for (i, (from, to)) in pairs.iter().enumerate() {
                if registry.get(from).is_none() {
                    continue;
                }
                let parked = tool(to).is_some_and(|(base, _)| &base == from);
                if !parked {
                    return refuse(from, "an online schema change tool's cut-over RENAME also renames other replicated tables; rename them in a separate statement");
                }
                let shadow = pairs[i + 1..].iter().find_map(|(s, t)| {
                    (t == from && tool(s) == Some((from.clone(), Role::Shadow))).then(|| s.clone())
                });
                let Some(shadow) = shadow else {
                    return refuse(from, &format!("the table is renamed to {to}, an online schema change tool's name, without the tool's shadow taking its place in the same statement (a two-step cut-over); ferry carries the atomic cut-over only (gh-ost's default `--cut-over=atomic`, pt-online-schema-change's swap)"));
                };
                if swap.is_some() {
                    return refuse(
                        from,
                        "one RENAME swaps several tables' shadows; run one cut-over per statement",
                    );
                }
                swap = Some(ChangeKind::Swap {
                    base: from.clone(),
                    shadow,
                });
            }
            Ok(swap.map_or(Step::Ignore, Step::Carry))
        }
        "DROP TABLE" => {
            if names.iter().any(|n| registry.get(n).is_some()) {
                // Replicated tables are dropped too: the usual rules (tool tables are not
                // replicated, so they are skipped there).
                return Ok(Step::NotOurs);
            }
            let shadow = names.iter().find_map(|n| match tool(n) {
                Some((base, Role::Shadow)) => Some(ChangeKind::ShadowDropped {
                    base,
                    shadow: n.clone(),
                }),
                _ => None,
            });
            Ok(shadow.map_or(Step::Ignore, Step::Carry))
        }
        _ => Ok(Step::Ignore),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Table;
    use crate::transform::{SourceColumn, TypeOptions};
    use std::collections::BTreeMap;

    fn registry() -> Registry {
        let col = SourceColumn {
            name: "id".into(),
            data_type: "int".into(),
            column_type: "int".into(),
            ..Default::default()
        };
        Registry::new(vec![Table::plan(
            SourceName::new("shop", "items"),
            "shop".into(),
            vec![col],
            vec![crate::schema::Index {
                name: "PRIMARY".into(),
                unique: true,
                columns: vec![(0, None)],
            }],
            0,
            &TypeOptions::default(),
        )
        .expect("plan")])
    }

    fn step(sql: &str) -> Result<Step, (SourceName, String)> {
        let selector =
            TableSelector::new(&["shop.*".into()], &[], BTreeMap::new()).expect("selector");
        let resolve = |n: &alter::Name| {
            SourceName::new(n.0.clone().unwrap_or_else(|| "shop".into()), n.1.clone())
        };
        let names: Vec<SourceName> = match super::super::ddl::classify(sql) {
            super::super::ddl::Statement::SchemaChange { tables, .. } => {
                tables.iter().map(resolve).collect()
            }
            other => panic!("{sql}: {other:?}"),
        };
        let verb = match super::super::ddl::classify(sql) {
            super::super::ddl::Statement::SchemaChange { verb, .. } => verb,
            _ => unreachable!(),
        };
        classify(&selector, &registry(), false, &verb, sql, &names, &resolve)
    }

    fn shop(t: &str) -> SourceName {
        SourceName::new("shop", t)
    }

    #[test]
    fn the_tools_statements() {
        assert_eq!(
            step("ALTER TABLE `_items_gho` ADD COLUMN extra INT NOT NULL DEFAULT 3"),
            Ok(Step::Carry(ChangeKind::ShadowAlter {
                base: shop("items"),
                shadow: shop("_items_gho")
            }))
        );
        assert_eq!(
            step("ALTER TABLE `shop`.`__items_new` ADD COLUMN extra INT"),
            Ok(Step::Carry(ChangeKind::ShadowAlter {
                base: shop("items"),
                shadow: shop("__items_new")
            })),
            "pt-online-schema-change's name when `_items_new` is taken"
        );
        assert_eq!(
            step("ALTER TABLE `_items_ghc` ADD COLUMN x INT"),
            Ok(Step::Ignore)
        );
        assert_eq!(
            step("ALTER TABLE `_items_gho` ENGINE=InnoDB"),
            Ok(Step::Ignore)
        );
        assert_eq!(
            step("ALTER TABLE `_other_gho` ADD COLUMN x INT"),
            Ok(Step::NotOurs)
        );
        assert_eq!(
            step("ALTER TABLE items ADD COLUMN x INT"),
            Ok(Step::NotOurs)
        );
        assert!(step("ALTER TABLE `_items_gho` DROP PRIMARY KEY, ADD PRIMARY KEY (id)").is_err());
        assert_eq!(
            step("RENAME /* gh-ost */ TABLE `items` TO `_items_del`, `_items_gho` TO `items`"),
            Ok(Step::Carry(ChangeKind::Swap {
                base: shop("items"),
                shadow: shop("_items_gho")
            }))
        );
        assert_eq!(
            step("RENAME TABLE `shop`.`items` TO `shop`.`_items_old`, `shop`.`_items_new` TO `shop`.`items`"),
            Ok(Step::Carry(ChangeKind::Swap {
                base: shop("items"),
                shadow: shop("_items_new")
            }))
        );
        let (table, why) = step("RENAME TABLE `items` TO `_items_del`").expect_err("two-step");
        assert_eq!(table, shop("items"));
        assert!(why.contains("two-step"), "{why}");
        assert_eq!(step("DROP TABLE IF EXISTS `_items_old`"), Ok(Step::Ignore));
        assert_eq!(
            step("DROP TABLE IF EXISTS `_items_gho`"),
            Ok(Step::Carry(ChangeKind::ShadowDropped {
                base: shop("items"),
                shadow: shop("_items_gho")
            }))
        );
        assert_eq!(step("DROP TABLE items, `_items_gho`"), Ok(Step::NotOurs));
    }
}
