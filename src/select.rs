//! Which source tables ferry replicates, and what they are called in PostgreSQL.
//!
//! Guarantees: selection is a pure function of `db.table` (include globs minus exclude globs);
//! target names are deterministic, at most 63 bytes (PostgreSQL's limit) and folded to lower case
//! so that the application's unquoted SQL keeps resolving (MySQL column names are
//! case-insensitive; PostgreSQL folds unquoted names to lower case). Names that would be cut are
//! shortened with a hash suffix so two long names never collide. Callers detect collisions of
//! folded names among a table's columns ([`fold_name`] is the one rule).

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};

/// PostgreSQL's NAMEDATALEN - 1.
pub const PG_MAX_IDENT: usize = 63;

#[derive(Debug, thiserror::Error)]
pub enum TableSelectorError {
    #[error("config key `tables.include` must list at least one pattern, e.g. [\"shop.*\"]")]
    NoInclude,
    #[error("table pattern {pattern:?} must be of the form db.table (globs allowed, e.g. shop.*)")]
    BadPattern { pattern: String },
    #[error("table pattern {pattern:?}: {message}")]
    Glob { pattern: String, message: String },
}

/// Include/exclude matcher plus the database → schema map.
#[derive(Debug, Clone)]
pub struct TableSelector {
    include: GlobSet,
    exclude: GlobSet,
    include_patterns: Vec<String>,
    schema_map: BTreeMap<String, String>,
    /// Names of online schema change tools' tables.
    tools: crate::source::tool_tables::Patterns,
}

impl TableSelector {
    /// Builds a selector from `db.table` glob patterns.
    ///
    /// # Errors
    /// No include pattern, or a pattern without a `.` or with invalid glob syntax.
    pub fn new(
        include: &[String],
        exclude: &[String],
        schema_map: BTreeMap<String, String>,
    ) -> Result<Self, TableSelectorError> {
        if include.is_empty() {
            return Err(TableSelectorError::NoInclude);
        }
        Ok(Self {
            include: build(include)?,
            exclude: build(exclude)?,
            include_patterns: include.to_vec(),
            schema_map,
            tools: crate::source::tool_tables::Patterns::default(),
        })
    }

    /// The selector with these online schema change tool patterns instead of the defaults.
    pub fn with_tool_patterns(mut self, tools: crate::source::tool_tables::Patterns) -> Self {
        self.tools = tools;
        self
    }

    /// True when `db.table` is selected by the patterns. (An online schema change tool's
    /// table beside a replicated table is selected but not replicated: see
    /// [`Self::tool_tables`].)
    pub fn matches(&self, db: &str, table: &str) -> bool {
        let name = format!("{db}.{table}");
        self.include.is_match(&name) && !self.exclude.is_match(&name)
    }

    /// The selected table `db.table` may belong to as an online schema change tool's table,
    /// and its role (whether that table exists is for the caller to know).
    pub fn tool_table(
        &self,
        db: &str,
        table: &str,
    ) -> Option<(crate::schema::SourceName, crate::source::tool_tables::Role)> {
        self.tool_tables(db, table).into_iter().next()
    }

    /// Every selected table `db.table` could belong to as a tool's table (`__t_new` may be
    /// `_t`'s or `t`'s), most literal first; only one that exists makes it a tool's table.
    pub fn tool_tables(
        &self,
        db: &str,
        table: &str,
    ) -> Vec<(crate::schema::SourceName, crate::source::tool_tables::Role)> {
        self.tools
            .candidates(table)
            .into_iter()
            .filter(|(base, _)| self.matches(db, base))
            .map(|(base, role)| (crate::schema::SourceName::new(db, &base), role))
            .collect()
    }

    /// Databases that some include pattern could match (for narrowing catalog queries); `None`
    /// when a pattern has a wildcard in its database part.
    pub fn databases(&self) -> Option<Vec<String>> {
        let mut dbs = Vec::new();
        for p in &self.include_patterns {
            let (db, _) = p.split_once('.')?;
            if db.contains(['*', '?', '[', '{']) {
                return None;
            }
            dbs.push(db.to_string());
        }
        dbs.sort();
        dbs.dedup();
        Some(dbs)
    }

    /// PostgreSQL schema for a MySQL database.
    pub fn target_schema(&self, db: &str) -> String {
        match self.schema_map.get(db) {
            Some(s) => s.clone(),
            None => fold_name(db),
        }
    }
}

fn build(patterns: &[String]) -> Result<GlobSet, TableSelectorError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        if !p.contains('.') {
            return Err(TableSelectorError::BadPattern { pattern: p.clone() });
        }
        let glob = globset::GlobBuilder::new(p)
            .literal_separator(false)
            .build()
            .or_else(|_| Glob::new(p))
            .map_err(|e| TableSelectorError::Glob {
                pattern: p.clone(),
                message: e.to_string(),
            })?;
        b.add(glob);
    }
    b.build().map_err(|e| TableSelectorError::Glob {
        pattern: patterns.join(", "),
        message: e.to_string(),
    })
}

/// The target name for a MySQL identifier: lower case, at most 63 bytes.
pub fn fold_name(name: &str) -> String {
    fit_identifier(&name.to_lowercase())
}

/// Cuts an identifier to 63 bytes deterministically: long names keep a prefix and gain an
/// 8-hex-digit hash of the whole name, so distinct long names stay distinct.
pub fn fit_identifier(name: &str) -> String {
    if name.len() <= PG_MAX_IDENT {
        return name.to_string();
    }
    let hash = fnv1a(name.as_bytes());
    let mut cut = PG_MAX_IDENT - 9;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:08x}", &name[..cut], hash as u32)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Quotes a PostgreSQL identifier (always: ferry never relies on case folding of its own SQL).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a MySQL identifier with backticks.
pub fn quote_mysql_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(include: &[&str], exclude: &[&str]) -> TableSelector {
        let inc: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        let exc: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
        TableSelector::new(&inc, &exc, BTreeMap::new()).expect("valid patterns")
    }

    #[test]
    fn include_and_exclude_globs() {
        let s = sel(&["shop.*", "crm.contacts"], &["shop.tmp_*"]);
        assert!(s.matches("shop", "users"));
        assert!(s.matches("crm", "contacts"));
        assert!(!s.matches("crm", "leads"));
        assert!(!s.matches("shop", "tmp_import"));
        assert!(!s.matches("shopx", "users"));
    }

    #[test]
    fn star_matches_dots_in_table_part_only_via_pattern() {
        let s = sel(&["*.orders"], &[]);
        assert!(s.matches("a", "orders"));
        assert!(s.matches("b", "orders"));
        assert!(!s.matches("b", "orders2"));
        assert_eq!(s.databases(), None);
        assert_eq!(
            sel(&["shop.*", "crm.x"], &[]).databases(),
            Some(vec!["crm".into(), "shop".into()])
        );
    }

    #[test]
    fn tool_tables_name_the_table_they_belong_to_and_stay_selected() {
        let s = sel(&["shop.*"], &["shop.tmp_*"]);
        assert!(
            s.matches("shop", "_items_gho"),
            "selected: only an existing items makes it a tool's table"
        );
        assert_eq!(
            s.tool_table("shop", "_items_gho"),
            Some((
                crate::schema::SourceName::new("shop", "items"),
                crate::source::tool_tables::Role::Shadow
            ))
        );
        assert_eq!(
            s.tool_table("shop", "_tmp_x_new"),
            None,
            "its table is excluded"
        );
        assert_eq!(s.tool_table("crm", "_items_gho"), None, "another database");
        let none =
            sel(&["shop.*"], &[]).with_tool_patterns(crate::source::tool_tables::Patterns::none());
        assert_eq!(none.tool_table("shop", "_items_gho"), None);
    }

    #[test]
    fn patterns_need_a_dot() {
        let err = TableSelector::new(&["users".into()], &[], BTreeMap::new()).expect_err("bad");
        assert!(err.to_string().contains("db.table"));
        assert!(TableSelector::new(&[], &[], BTreeMap::new()).is_err());
    }

    #[test]
    fn schema_map_and_folding() {
        let mut m = BTreeMap::new();
        m.insert("shop".to_string(), "public".to_string());
        let s = TableSelector::new(&["*.*".into()], &[], m).expect("valid");
        assert_eq!(s.target_schema("shop"), "public");
        assert_eq!(s.target_schema("Billing"), "billing");
    }

    #[test]
    fn long_names_are_cut_deterministically_and_uniquely() {
        let a = "a".repeat(70);
        let b = format!("{}b", "a".repeat(69));
        let fa = fit_identifier(&a);
        let fb = fit_identifier(&b);
        assert!(fa.len() <= PG_MAX_IDENT && fb.len() <= PG_MAX_IDENT);
        assert_ne!(fa, fb);
        assert_eq!(fa, fit_identifier(&a));
        let multibyte = "é".repeat(40);
        assert!(fit_identifier(&multibyte).len() <= PG_MAX_IDENT);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_mysql_ident("a`b"), "`a``b`");
    }
}
