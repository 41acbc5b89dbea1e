//! Classifies the SQL text of binlog QUERY events: transaction control, schema changes, and
//! statement-logged data changes, with the tables each one names.
//!
//! Guarantees: conservative. A statement is [`Statement::Harmless`] only when its leading
//! keywords say so (accounts, views, routines, maintenance); anything else that names a selected
//! table is reported, so an unreplicated change can stop ferry but never slip past it. Executable
//! comments (`/*!40101 ... */`) are read as code, ordinary comments are skipped.

/// A table reference: optional database, table.
pub type TableRef = (Option<String>, String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Begin,
    Commit,
    Rollback,
    /// Cannot change replicated data or table definitions.
    Harmless,
    /// `CREATE [OR REPLACE] TABLE` (not temporary) of these tables.
    CreateTable {
        tables: Vec<TableRef>,
        or_replace: bool,
    },
    /// `TRUNCATE TABLE`.
    Truncate(Vec<TableRef>),
    /// Any other schema change (ALTER, DROP, RENAME, CREATE/DROP INDEX...), naming tables.
    SchemaChange {
        verb: String,
        tables: Vec<TableRef>,
    },
    /// `DROP DATABASE` / `DROP SCHEMA`.
    DropDatabase(String),
    /// Statement-logged DML or anything unknown: every identifier it contains, for a
    /// conservative "does it name a selected table" check.
    Other {
        verb: String,
        identifiers: Vec<TableRef>,
    },
}

/// Splits SQL into upper-cased keywords / identifiers (backticks removed), keeping `.` and `,`.
fn tokens(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            if chars.get(i + 2) == Some(&'!') {
                // executable comment: skip the marker and version digits, keep the body
                i += 3;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            } else {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            continue;
        }
        if c == '*' && chars.get(i + 1) == Some(&'/') {
            i += 2; // end of an executable comment
            continue;
        }
        if (c == '-' && chars.get(i + 1) == Some(&'-')) || c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c.is_whitespace() || c == ';' || c == '(' || c == ')' {
            i += 1;
            continue;
        }
        if c == '`' {
            let mut ident = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '`' {
                    if chars.get(i + 1) == Some(&'`') {
                        ident.push('`');
                        i += 2;
                        continue;
                    }
                    break;
                }
                ident.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(format!("`{ident}"));
            continue;
        }
        if c == '\'' || c == '"' {
            let q = c;
            i += 1;
            while i < chars.len() && chars[i] != q {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push("'".into());
            continue;
        }
        if c == '.' || c == ',' {
            out.push(c.to_string());
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && !chars[i].is_whitespace()
            && !matches!(chars[i], '.' | ',' | ';' | '(' | ')' | '`' | '\'' | '"')
        {
            i += 1;
        }
        if start == i {
            i += 1;
            continue;
        }
        out.push(chars[start..i].iter().collect());
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.starts_with('`')
        || t.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

fn ident_text(t: &str) -> String {
    t.strip_prefix('`')
        .map(str::to_string)
        .unwrap_or_else(|| t.to_string())
}

fn upper(t: &str) -> String {
    if t.starts_with('`') {
        String::new()
    } else {
        t.to_ascii_uppercase()
    }
}

/// Reads `name` or `db.name` at `*i`.
fn table_ref(toks: &[String], i: &mut usize) -> Option<TableRef> {
    let first = toks.get(*i)?;
    if !is_ident(first) {
        return None;
    }
    *i += 1;
    if toks.get(*i).map(String::as_str) == Some(".") {
        let second = toks.get(*i + 1)?;
        *i += 2;
        return Some((Some(ident_text(first)), ident_text(second)));
    }
    Some((None, ident_text(first)))
}

fn skip_words(toks: &[String], i: &mut usize, words: &[&str]) {
    while let Some(t) = toks.get(*i) {
        if words.contains(&upper(t).as_str()) {
            *i += 1;
        } else {
            break;
        }
    }
}

/// Comma-separated table list (DROP TABLE a, b).
fn table_list(toks: &[String], i: &mut usize) -> Vec<TableRef> {
    let mut out = Vec::new();
    while let Some(r) = table_ref(toks, i) {
        out.push(r);
        if toks.get(*i).map(String::as_str) == Some(",") {
            *i += 1;
        } else {
            break;
        }
    }
    out
}

fn all_identifiers(toks: &[String]) -> Vec<TableRef> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if is_ident(&toks[i]) {
            if let Some(r) = table_ref(toks, &mut i) {
                out.push(r);
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Classifies one statement.
pub fn classify(sql: &str) -> Statement {
    let toks = tokens(sql);
    let kw: Vec<String> = toks.iter().take(6).map(|t| upper(t)).collect();
    let k = |n: usize| kw.get(n).map(String::as_str).unwrap_or("");
    match k(0) {
        "BEGIN" => return Statement::Begin,
        "COMMIT" => return Statement::Commit,
        "ROLLBACK" if k(1) != "TO" => return Statement::Rollback,
        "XA" | "SAVEPOINT" | "RELEASE" | "ROLLBACK" => return Statement::Harmless,
        "GRANT" | "REVOKE" | "FLUSH" | "ANALYZE" | "OPTIMIZE" | "REPAIR" | "CHECK" | "SET"
        | "INSTALL" | "UNINSTALL" | "DO" => return Statement::Harmless,
        _ => {}
    }
    let mut i = 1;
    match k(0) {
        "CREATE" | "ALTER" | "DROP" => {
            let or_replace = k(1) == "OR" && k(2) == "REPLACE";
            skip_words(
                &toks,
                &mut i,
                &["OR", "REPLACE", "DEFINER", "ONLINE", "OFFLINE", "IGNORE"],
            );
            let object = toks.get(i).map(|t| upper(t)).unwrap_or_default();
            let harmless_objects = [
                "USER",
                "ROLE",
                "VIEW",
                "TRIGGER",
                "PROCEDURE",
                "FUNCTION",
                "EVENT",
                "SERVER",
                "SEQUENCE",
                "TABLESPACE",
                "LOGFILE",
                "RESOURCE",
                "ALGORITHM",
                "SQL",
            ];
            if harmless_objects.contains(&object.as_str()) {
                return Statement::Harmless;
            }
            if k(0) == "CREATE" && object.starts_with("DEFINER") {
                return Statement::Harmless;
            }
            if object == "DATABASE" || object == "SCHEMA" {
                i += 1;
                skip_words(&toks, &mut i, &["IF", "EXISTS", "NOT"]);
                return if k(0) == "DROP" {
                    Statement::DropDatabase(toks.get(i).map(|t| ident_text(t)).unwrap_or_default())
                } else {
                    Statement::Harmless
                };
            }
            if object == "TEMPORARY" {
                // temporary tables are never row-logged; their DDL changes nothing replicated
                return Statement::Harmless;
            }
            if object == "TABLE" {
                i += 1;
                skip_words(&toks, &mut i, &["IF", "NOT", "EXISTS"]);
                let tables = if k(0) == "DROP" {
                    table_list(&toks, &mut i)
                } else {
                    table_ref(&toks, &mut i).into_iter().collect()
                };
                return if k(0) == "CREATE" {
                    Statement::CreateTable { tables, or_replace }
                } else {
                    Statement::SchemaChange {
                        verb: format!("{} TABLE", k(0)),
                        tables,
                    }
                };
            }
            // CREATE [UNIQUE|FULLTEXT|SPATIAL] INDEX name ON table / DROP INDEX name ON table
            let mut j = i;
            skip_words(&toks, &mut j, &["UNIQUE", "FULLTEXT", "SPATIAL"]);
            if toks.get(j).map(|t| upper(t)).as_deref() == Some("INDEX") {
                while j < toks.len() && upper(&toks[j]) != "ON" {
                    j += 1;
                }
                j += 1;
                return Statement::SchemaChange {
                    verb: format!("{} INDEX", k(0)),
                    tables: table_ref(&toks, &mut j).into_iter().collect(),
                };
            }
        }
        "RENAME" if k(1) == "TABLE" || k(1) == "TABLES" => {
            let mut tables = Vec::new();
            let mut j = 2;
            while j < toks.len() {
                if is_ident(&toks[j]) && upper(&toks[j]) != "TO" {
                    if let Some(r) = table_ref(&toks, &mut j) {
                        tables.push(r);
                        continue;
                    }
                }
                j += 1;
            }
            return Statement::SchemaChange {
                verb: "RENAME TABLE".into(),
                tables,
            };
        }
        "TRUNCATE" => {
            skip_words(&toks, &mut i, &["TABLE"]);
            return Statement::Truncate(table_ref(&toks, &mut i).into_iter().collect());
        }
        _ => {}
    }
    Statement::Other {
        verb: k(0).to_string(),
        identifiers: all_identifiers(&toks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(db: Option<&str>, t: &str) -> TableRef {
        (db.map(str::to_string), t.to_string())
    }

    #[test]
    fn transaction_control() {
        assert_eq!(classify("BEGIN"), Statement::Begin);
        assert_eq!(classify("COMMIT"), Statement::Commit);
        assert_eq!(classify("ROLLBACK"), Statement::Rollback);
        assert_eq!(classify("SAVEPOINT a"), Statement::Harmless);
    }

    #[test]
    fn alter_and_drop_name_their_tables() {
        assert_eq!(
            classify("ALTER TABLE `shop`.`users` ADD COLUMN x int"),
            Statement::SchemaChange {
                verb: "ALTER TABLE".into(),
                tables: vec![r(Some("shop"), "users")]
            }
        );
        assert_eq!(
            classify("DROP TABLE IF EXISTS `a`,b.c /* generated by server */"),
            Statement::SchemaChange {
                verb: "DROP TABLE".into(),
                tables: vec![r(None, "a"), r(Some("b"), "c")]
            }
        );
        assert_eq!(
            classify("alter online ignore table users engine=InnoDB"),
            Statement::SchemaChange {
                verb: "ALTER TABLE".into(),
                tables: vec![r(None, "users")]
            }
        );
    }

    #[test]
    fn create_truncate_rename_index() {
        assert_eq!(
            classify("CREATE TABLE IF NOT EXISTS t2 (id int primary key)"),
            Statement::CreateTable {
                tables: vec![r(None, "t2")],
                or_replace: false
            }
        );
        assert_eq!(
            classify("CREATE OR REPLACE TABLE t2 (id int primary key)"),
            Statement::CreateTable {
                tables: vec![r(None, "t2")],
                or_replace: true
            }
        );
        assert_eq!(
            classify("CREATE TEMPORARY TABLE x (a int)"),
            Statement::Harmless
        );
        assert_eq!(
            classify("TRUNCATE TABLE shop.orders"),
            Statement::Truncate(vec![r(Some("shop"), "orders")])
        );
        assert_eq!(
            classify("truncate orders"),
            Statement::Truncate(vec![r(None, "orders")])
        );
        assert_eq!(
            classify("RENAME TABLE a TO b, shop.c TO shop.d"),
            Statement::SchemaChange {
                verb: "RENAME TABLE".into(),
                tables: vec![
                    r(None, "a"),
                    r(None, "b"),
                    r(Some("shop"), "c"),
                    r(Some("shop"), "d")
                ]
            }
        );
        assert_eq!(
            classify("CREATE UNIQUE INDEX ux ON users (email)"),
            Statement::SchemaChange {
                verb: "CREATE INDEX".into(),
                tables: vec![r(None, "users")]
            }
        );
        assert_eq!(
            classify("DROP DATABASE shop"),
            Statement::DropDatabase("shop".into())
        );
    }

    #[test]
    fn harmless_statements() {
        for sql in [
            "GRANT SELECT ON *.* TO x",
            "CREATE USER 'a'@'%'",
            "CREATE DEFINER=`root`@`localhost` TRIGGER t BEFORE INSERT ON users FOR EACH ROW SET NEW.a = 1",
            "CREATE OR REPLACE VIEW v AS SELECT * FROM users",
            "FLUSH PRIVILEGES",
            "CREATE DATABASE IF NOT EXISTS x",
        ] {
            assert_eq!(classify(sql), Statement::Harmless, "{sql}");
        }
    }

    #[test]
    fn statement_logged_dml_lists_identifiers() {
        match classify("INSERT INTO shop.users (id) VALUES (1)") {
            Statement::Other { verb, identifiers } => {
                assert_eq!(verb, "INSERT");
                assert!(identifiers.contains(&r(Some("shop"), "users")));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn executable_comments_are_code() {
        assert_eq!(
            classify("/*!40000 ALTER TABLE `t` DISABLE KEYS */"),
            Statement::SchemaChange {
                verb: "ALTER TABLE".into(),
                tables: vec![r(None, "t")]
            }
        );
    }
}
