//! Reads the clauses of a schema change (`ALTER TABLE`, `CREATE/DROP INDEX`, `RENAME TABLE`)
//! far enough to know what it does to a replicated table: which columns it adds, drops, renames
//! or redefines, whether it touches indexes, constraints, the primary key or only storage
//! options, and whether it changes rows without logging them.
//!
//! ferry does not derive the PostgreSQL change from the clause text: the table's new definition
//! is read back from the source's catalog and mapped with the same rules as the initial copy
//! (`target_schema::evolve`). What this module gives is the statement's *intent*, used to check
//! that the catalog shows exactly this statement's effect, to tell a rename from a drop and an
//! add, and to refuse what cannot be carried exactly.
//!
//! Guarantees: conservative. A clause it does not recognise is [`Clause::Unknown`], which the
//! caller refuses; clauses that change stored rows without row events (partition drops,
//! tablespace imports) are [`Clause::RowsChanged`]. Comments are skipped, executable comments
//! (`/*!50100 ... */`) read as code, quoted identifiers and strings never split a clause.
//! Identifier case is kept; callers compare names case-insensitively, as MySQL does for columns.

/// One token of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A bare word (keyword, identifier or number), as written.
    Word(String),
    /// A back-quoted identifier, unquoted.
    Quoted(String),
    /// A string literal (its text is not needed).
    Str,
    /// Punctuation: `(`, `)`, `,`, `.`, `=`, ...
    Sym(char),
}

impl Tok {
    fn keyword(&self) -> Option<String> {
        match self {
            Tok::Word(w) => Some(w.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn name(&self) -> Option<String> {
        match self {
            Tok::Word(w) | Tok::Quoted(w) => Some(w.clone()),
            _ => None,
        }
    }
}

fn lex(sql: &str) -> Vec<Tok> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('*') {
            if chars.get(i + 2) == Some(&'!') || chars.get(i + 2) == Some(&'M') {
                // executable comment (`/*!50100`, MariaDB `/*M!100100`): read the body as code
                i += 3;
                if chars.get(i - 1) == Some(&'M') {
                    i += 1;
                }
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
        if c == '*' && next == Some('/') {
            i += 2;
            continue;
        }
        if (c == '-' && next == Some('-')) || c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c.is_whitespace() {
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
            out.push(Tok::Quoted(ident));
            continue;
        }
        if c == '\'' || c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                } else if chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c) {
                    // doubled quote inside the literal
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str);
            continue;
        }
        if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$')) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
            continue;
        }
        out.push(Tok::Sym(c));
        i += 1;
    }
    out
}

/// A table named by the statement: optional database, table.
pub type Name = (Option<String>, String);

/// What one clause of the statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    /// `ADD [COLUMN] name ...` (one entry per column of `ADD COLUMN (a ..., b ...)`).
    AddColumn { name: String, generated: bool },
    /// `DROP [COLUMN] name`.
    DropColumn(String),
    /// `RENAME COLUMN a TO b`, `CHANGE a b ...`.
    RenameColumn { from: String, to: String },
    /// `MODIFY`, `CHANGE a a ...`, `ALTER [COLUMN] a SET/DROP DEFAULT` (also after a rename).
    ModifyColumn(String),
    /// `FIRST` / `AFTER x` of an added, modified or changed column (its new position).
    Place { column: String, place: Place },
    /// `CONVERT TO CHARACTER SET`: every text column may change.
    ConvertCharset,
    /// Secondary indexes and unique keys: `ADD INDEX/KEY/UNIQUE`, `DROP INDEX`, `RENAME INDEX`,
    /// `CREATE/DROP INDEX`.
    Index,
    /// CHECK and FOREIGN KEY constraints, `DROP CONSTRAINT`.
    Constraint,
    /// `ADD/DROP PRIMARY KEY`.
    PrimaryKey,
    /// `COMMENT = '...'` on the table.
    TableComment,
    /// `RENAME [TO|AS] name`.
    RenameTable(Name),
    /// Storage and execution options with no PostgreSQL meaning (ENGINE, ROW_FORMAT,
    /// AUTO_INCREMENT=, ALGORITHM, LOCK, FORCE, default character set, partitioning that keeps
    /// the rows, ORDER BY, DISABLE/ENABLE KEYS, ...).
    Storage,
    /// Changes stored rows without row events: `DROP/TRUNCATE/EXCHANGE PARTITION`,
    /// `DISCARD/IMPORT TABLESPACE`.
    RowsChanged(String),
    /// Not understood: the caller refuses the statement.
    Unknown(String),
}

/// Where a column goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    First,
    After(String),
}

/// `FIRST` or `AFTER name` at the top level of a column definition.
fn place_of(def: &[Tok]) -> Option<Place> {
    let mut depth = 0i32;
    for (i, t) in def.iter().enumerate() {
        match t {
            Tok::Sym('(') => depth += 1,
            Tok::Sym(')') => depth -= 1,
            Tok::Word(_) if depth == 0 => match t.keyword().as_deref() {
                Some("FIRST") if i + 1 == def.len() => return Some(Place::First),
                Some("AFTER") => return def.get(i + 1).and_then(Tok::name).map(Place::After),
                _ => {}
            },
            _ => {}
        }
    }
    None
}

/// Adds the [`Clause::Place`] of `column` when its definition says where it goes.
fn placed(mut clauses: Vec<Clause>, column: &str, def: &[Tok]) -> Vec<Clause> {
    if let Some(place) = place_of(def) {
        clauses.push(Clause::Place {
            column: column.to_string(),
            place,
        });
    }
    clauses
}

/// Options ferry has nothing to do for: they change how MySQL stores or builds the table.
const STORAGE_WORDS: &[&str] = &[
    "ENGINE",
    "ROW_FORMAT",
    "AUTO_INCREMENT",
    "AVG_ROW_LENGTH",
    "CHECKSUM",
    "TABLE_CHECKSUM",
    "COMPRESSION",
    "CONNECTION",
    "DATA",
    "INDEX",
    "DELAY_KEY_WRITE",
    "ENCRYPTION",
    "ENCRYPTED",
    "ENCRYPTION_KEY_ID",
    "INSERT_METHOD",
    "KEY_BLOCK_SIZE",
    "MAX_ROWS",
    "MIN_ROWS",
    "PACK_KEYS",
    "PASSWORD",
    "STATS_AUTO_RECALC",
    "STATS_PERSISTENT",
    "STATS_SAMPLE_PAGES",
    "TABLESPACE",
    "ALGORITHM",
    "LOCK",
    "FORCE",
    "ORDER",
    "DISABLE",
    "ENABLE",
    "PAGE_CHECKSUM",
    "PAGE_COMPRESSED",
    "PAGE_COMPRESSION_LEVEL",
    "TRANSACTIONAL",
    "SECONDARY_ENGINE",
    "SECONDARY_ENGINE_ATTRIBUTE",
    "ENGINE_ATTRIBUTE",
    "AUTOEXTEND_SIZE",
    "WITH",
    "WITHOUT",
    "UNION",
    "CHARACTER",
    "CHARSET",
    "COLLATE",
    "DEFAULT",
    "IETF_QUOTES",
    "SEQUENCE",
    "REMOVE",
    "UPGRADE",
];

/// Partition maintenance that keeps every row where it was.
const KEEPING_PARTITION_WORDS: &[&str] = &[
    "REORGANIZE",
    "COALESCE",
    "ANALYZE",
    "CHECK",
    "OPTIMIZE",
    "REBUILD",
    "REPAIR",
];

/// A parsed schema change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alter {
    pub table: Name,
    pub clauses: Vec<Clause>,
}

impl Alter {
    /// Columns the statement adds (by source name).
    pub fn added(&self) -> Vec<&str> {
        self.clauses
            .iter()
            .filter_map(|c| match c {
                Clause::AddColumn { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn dropped(&self) -> Vec<&str> {
        self.clauses
            .iter()
            .filter_map(|c| match c {
                Clause::DropColumn(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn renamed(&self) -> Vec<(&str, &str)> {
        self.clauses
            .iter()
            .filter_map(|c| match c {
                Clause::RenameColumn { from, to } => Some((from.as_str(), to.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Columns whose definition may change (by their name after the statement).
    pub fn modified(&self) -> Vec<&str> {
        self.clauses
            .iter()
            .filter_map(|c| match c {
                Clause::ModifyColumn(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn has(&self, f: impl Fn(&Clause) -> bool) -> bool {
        self.clauses.iter().any(f)
    }

    /// Only storage options: nothing to carry, and nothing to read back.
    pub fn is_storage_only(&self) -> bool {
        self.clauses.iter().all(|c| matches!(c, Clause::Storage))
    }

    /// The new name of a `RENAME TO` clause.
    pub fn rename_to(&self) -> Option<&Name> {
        self.clauses.iter().find_map(|c| match c {
            Clause::RenameTable(n) => Some(n),
            _ => None,
        })
    }
}

struct Cursor<'a> {
    toks: &'a [Tok],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek_kw(&self, ahead: usize) -> String {
        self.toks
            .get(self.i + ahead)
            .and_then(Tok::keyword)
            .unwrap_or_default()
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.peek_kw(0) == word {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_all(&mut self, words: &[&str]) {
        while words.contains(&self.peek_kw(0).as_str()) {
            self.i += 1;
        }
    }

    fn name(&mut self) -> Option<String> {
        let n = self.toks.get(self.i)?.name()?;
        self.i += 1;
        Some(n)
    }

    /// `name` or `db.name`.
    fn table(&mut self) -> Option<Name> {
        let first = self.name()?;
        if self.toks.get(self.i) == Some(&Tok::Sym('.')) {
            self.i += 1;
            let second = self.name()?;
            return Some((Some(first), second));
        }
        Some((None, first))
    }
}

/// Splits the tokens at commas outside parentheses.
fn split_clauses(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Sym('(') => depth += 1,
            Tok::Sym(')') => depth -= 1,
            Tok::Sym(',') if depth == 0 => {
                out.push(&toks[start..i]);
                start = i + 1;
            }
            Tok::Sym(';') if depth == 0 => {
                out.push(&toks[start..i]);
                start = toks.len();
                break;
            }
            _ => {}
        }
    }
    if start < toks.len() {
        out.push(&toks[start..]);
    }
    out.into_iter().filter(|c| !c.is_empty()).collect()
}

fn text(toks: &[Tok]) -> String {
    toks.iter()
        .map(|t| match t {
            Tok::Word(w) => w.clone(),
            Tok::Quoted(q) => format!("`{q}`"),
            Tok::Str => "'…'".into(),
            Tok::Sym(c) => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a column definition declares a generated column (`[GENERATED ALWAYS] AS (expr)`).
fn is_generated(def: &[Tok]) -> bool {
    def.iter().enumerate().any(|(i, t)| {
        t.keyword().as_deref() == Some("AS") && def.get(i + 1) == Some(&Tok::Sym('('))
    }) || def
        .iter()
        .any(|t| t.keyword().as_deref() == Some("GENERATED"))
}

fn clause(toks: &[Tok]) -> Vec<Clause> {
    let mut c = Cursor { toks, i: 0 };
    let unknown = || vec![Clause::Unknown(text(toks))];
    let first = c.peek_kw(0);
    match first.as_str() {
        "ADD" => {
            c.i += 1;
            let what = c.peek_kw(0);
            match what.as_str() {
                "INDEX" | "KEY" | "UNIQUE" | "FULLTEXT" | "SPATIAL" | "VECTOR" => {
                    vec![Clause::Index]
                }
                "PRIMARY" => vec![Clause::PrimaryKey],
                "FOREIGN" | "CHECK" => vec![Clause::Constraint],
                "CONSTRAINT" => {
                    // ADD CONSTRAINT [name] {PRIMARY KEY | UNIQUE | FOREIGN KEY | CHECK}
                    let rest: Vec<String> = (1..4).map(|k| c.peek_kw(k)).collect();
                    if rest.iter().any(|w| w == "PRIMARY") {
                        vec![Clause::PrimaryKey]
                    } else if rest.iter().any(|w| w == "UNIQUE") {
                        vec![Clause::Index]
                    } else {
                        vec![Clause::Constraint]
                    }
                }
                "PARTITION" => vec![Clause::Storage],
                "PERIOD" | "SYSTEM" => unknown(),
                _ => {
                    c.eat("COLUMN");
                    if c.eat("IF") {
                        c.eat_all(&["NOT", "EXISTS"]);
                    }
                    if toks.get(c.i) == Some(&Tok::Sym('(')) {
                        // ADD COLUMN (a int, b int)
                        let inner = &toks[c.i + 1..toks.len().saturating_sub(1)];
                        let mut out = Vec::new();
                        for def in split_clauses(inner) {
                            let mut d = Cursor { toks: def, i: 0 };
                            match d.name() {
                                Some(name) => out.push(Clause::AddColumn {
                                    name,
                                    generated: is_generated(def),
                                }),
                                None => return unknown(),
                            }
                        }
                        return out;
                    }
                    match c.name() {
                        Some(name) => placed(
                            vec![Clause::AddColumn {
                                name: name.clone(),
                                generated: is_generated(&toks[c.i..]),
                            }],
                            &name,
                            &toks[c.i..],
                        ),
                        None => unknown(),
                    }
                }
            }
        }
        "DROP" => {
            c.i += 1;
            match c.peek_kw(0).as_str() {
                "PRIMARY" => vec![Clause::PrimaryKey],
                "INDEX" | "KEY" => vec![Clause::Index],
                "FOREIGN" | "CHECK" | "CONSTRAINT" => vec![Clause::Constraint],
                "PARTITION" => vec![Clause::RowsChanged("DROP PARTITION".into())],
                "PERIOD" | "SYSTEM" => unknown(),
                _ => {
                    c.eat("COLUMN");
                    if c.eat("IF") {
                        c.eat("EXISTS");
                    }
                    match c.name() {
                        Some(n) => vec![Clause::DropColumn(n)],
                        None => unknown(),
                    }
                }
            }
        }
        "MODIFY" => {
            c.i += 1;
            c.eat("COLUMN");
            if c.eat("IF") {
                c.eat("EXISTS");
            }
            match c.name() {
                Some(n) => placed(vec![Clause::ModifyColumn(n.clone())], &n, &toks[c.i..]),
                None => unknown(),
            }
        }
        "CHANGE" => {
            c.i += 1;
            c.eat("COLUMN");
            if c.eat("IF") {
                c.eat("EXISTS");
            }
            let names = (c.name(), c.name());
            let def = &toks[c.i..];
            match names {
                (Some(from), Some(to)) if from.eq_ignore_ascii_case(&to) => {
                    placed(vec![Clause::ModifyColumn(to.clone())], &to, def)
                }
                (Some(from), Some(to)) => placed(
                    vec![
                        Clause::RenameColumn {
                            from,
                            to: to.clone(),
                        },
                        Clause::ModifyColumn(to.clone()),
                    ],
                    &to,
                    def,
                ),
                _ => unknown(),
            }
        }
        "RENAME" => {
            c.i += 1;
            match c.peek_kw(0).as_str() {
                "COLUMN" => {
                    c.i += 1;
                    let from = c.name();
                    c.eat("TO");
                    match (from, c.name()) {
                        (Some(from), Some(to)) => vec![Clause::RenameColumn { from, to }],
                        _ => unknown(),
                    }
                }
                "INDEX" | "KEY" => vec![Clause::Index],
                _ => {
                    c.eat_all(&["TO", "AS"]);
                    match c.table() {
                        Some(n) => vec![Clause::RenameTable(n)],
                        None => unknown(),
                    }
                }
            }
        }
        "ALTER" => {
            c.i += 1;
            match c.peek_kw(0).as_str() {
                "INDEX" | "KEY" => vec![Clause::Storage], // visibility only
                "CHECK" | "CONSTRAINT" => vec![Clause::Constraint],
                _ => {
                    c.eat("COLUMN");
                    if c.eat("IF") {
                        c.eat("EXISTS");
                    }
                    match c.name() {
                        Some(n) => vec![Clause::ModifyColumn(n)],
                        None => unknown(),
                    }
                }
            }
        }
        "CONVERT" => vec![Clause::ConvertCharset],
        "COMMENT" => vec![Clause::TableComment],
        "TRUNCATE" | "EXCHANGE" if c.peek_kw(1) == "PARTITION" => {
            vec![Clause::RowsChanged(format!("{first} PARTITION"))]
        }
        "DISCARD" | "IMPORT" => vec![Clause::RowsChanged(format!("{first} TABLESPACE"))],
        "PARTITION" => vec![Clause::Storage],
        w if KEEPING_PARTITION_WORDS.contains(&w) && c.peek_kw(1) == "PARTITION" => {
            vec![Clause::Storage]
        }
        w if STORAGE_WORDS.contains(&w) => {
            // A run of table options: one of them may be COMMENT.
            if toks
                .iter()
                .any(|t| t.keyword().as_deref() == Some("COMMENT"))
            {
                vec![Clause::TableComment]
            } else {
                vec![Clause::Storage]
            }
        }
        _ => unknown(),
    }
}

/// Parses `ALTER [ONLINE|OFFLINE] [IGNORE] TABLE [IF EXISTS] name [WAIT n|NOWAIT] clauses`.
/// `None` when the text is not an ALTER TABLE.
pub fn parse_alter_table(sql: &str) -> Option<Alter> {
    let toks = lex(sql);
    let mut c = Cursor { toks: &toks, i: 0 };
    if !c.eat("ALTER") {
        return None;
    }
    c.eat_all(&["ONLINE", "OFFLINE", "IGNORE"]);
    if !c.eat("TABLE") {
        return None;
    }
    if c.eat("IF") {
        c.eat("EXISTS");
    }
    let table = c.table()?;
    if c.eat("WAIT") {
        c.i += 1;
    }
    c.eat("NOWAIT");
    let clauses = split_clauses(&toks[c.i..])
        .into_iter()
        .flat_map(clause)
        .collect();
    Some(Alter { table, clauses })
}

/// `RENAME TABLE a TO b [, c TO d ...]`: the pairs.
pub fn parse_rename_tables(sql: &str) -> Option<Vec<(Name, Name)>> {
    let toks = lex(sql);
    let mut c = Cursor { toks: &toks, i: 0 };
    if !c.eat("RENAME") || !(c.eat("TABLE") || c.eat("TABLES")) {
        return None;
    }
    let mut out = Vec::new();
    for part in split_clauses(&toks[c.i..]) {
        let mut p = Cursor { toks: part, i: 0 };
        let from = p.table()?;
        if p.eat("WAIT") {
            p.i += 1;
        }
        p.eat("NOWAIT");
        if !p.eat("TO") {
            return None;
        }
        out.push((from, p.table()?));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clauses(sql: &str) -> Vec<Clause> {
        parse_alter_table(sql).expect(sql).clauses
    }

    #[test]
    fn columns_are_named_with_their_intent() {
        assert_eq!(
            clauses("ALTER TABLE t ADD COLUMN note varchar(20) NOT NULL DEFAULT 'a,b', DROP COLUMN `old`, MODIFY price decimal(12,2)"),
            vec![
                Clause::AddColumn { name: "note".into(), generated: false },
                Clause::DropColumn("old".into()),
                Clause::ModifyColumn("price".into()),
            ]
        );
        assert_eq!(
            clauses("alter table t change `a` `b` int, rename column c to d, alter column e set default 3"),
            vec![
                Clause::RenameColumn { from: "a".into(), to: "b".into() },
                Clause::ModifyColumn("b".into()),
                Clause::RenameColumn { from: "c".into(), to: "d".into() },
                Clause::ModifyColumn("e".into()),
            ]
        );
        assert_eq!(
            clauses("ALTER TABLE t ADD (x int, y enum('a','b') AS (1) VIRTUAL)"),
            vec![
                Clause::AddColumn {
                    name: "x".into(),
                    generated: false
                },
                Clause::AddColumn {
                    name: "y".into(),
                    generated: true
                },
            ]
        );
        assert_eq!(
            clauses("ALTER TABLE t ADD COLUMN IF NOT EXISTS z int, DROP COLUMN IF EXISTS w"),
            vec![
                Clause::AddColumn {
                    name: "z".into(),
                    generated: false
                },
                Clause::DropColumn("w".into()),
            ]
        );
        assert_eq!(
            clauses("ALTER TABLE t CHANGE COLUMN a a bigint"),
            vec![Clause::ModifyColumn("a".into())]
        );
        assert_eq!(
            clauses("ALTER TABLE t ADD c int DEFAULT 1 AFTER `b`, MODIFY d int FIRST"),
            vec![
                Clause::AddColumn {
                    name: "c".into(),
                    generated: false
                },
                Clause::Place {
                    column: "c".into(),
                    place: Place::After("b".into())
                },
                Clause::ModifyColumn("d".into()),
                Clause::Place {
                    column: "d".into(),
                    place: Place::First
                },
            ]
        );
    }

    #[test]
    fn options_indexes_keys_and_partitions() {
        for sql in [
            "ALTER TABLE film_text ENGINE=InnoDB",
            "ALTER TABLE t ENGINE = InnoDB ROW_FORMAT=DYNAMIC, ALGORITHM=INPLACE, LOCK=NONE",
            "ALTER TABLE t AUTO_INCREMENT = 1000",
            "ALTER TABLE t FORCE",
            "ALTER TABLE t DEFAULT CHARACTER SET utf8mb4",
            "ALTER TABLE t REORGANIZE PARTITION p0 INTO (PARTITION a VALUES LESS THAN (5))",
            "ALTER TABLE t PARTITION BY HASH(id) PARTITIONS 4",
            "ALTER TABLE t ALTER INDEX ix INVISIBLE",
            "/* gh-ost */ ALTER ONLINE IGNORE TABLE `db`.`t` WAIT 5 ENGINE=InnoDB",
        ] {
            let a = parse_alter_table(sql).expect(sql);
            assert!(a.is_storage_only(), "{sql}: {:?}", a.clauses);
        }
        assert_eq!(
            clauses("ALTER TABLE t ADD UNIQUE KEY ux (a), DROP INDEX ix, RENAME INDEX a TO b, ADD CONSTRAINT u UNIQUE (b)"),
            vec![Clause::Index, Clause::Index, Clause::Index, Clause::Index]
        );
        assert_eq!(
            clauses("ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (a, b)"),
            vec![Clause::PrimaryKey, Clause::PrimaryKey]
        );
        assert_eq!(
            clauses("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES p (id), DROP FOREIGN KEY fk2, ADD CHECK (a > 0)"),
            vec![Clause::Constraint, Clause::Constraint, Clause::Constraint]
        );
        assert_eq!(
            clauses("ALTER TABLE t DROP PARTITION p0"),
            vec![Clause::RowsChanged("DROP PARTITION".into())]
        );
        assert_eq!(
            clauses("ALTER TABLE t TRUNCATE PARTITION p0"),
            vec![Clause::RowsChanged("TRUNCATE PARTITION".into())]
        );
        assert_eq!(
            clauses("ALTER TABLE t COMMENT = 'films', ENGINE=InnoDB"),
            vec![Clause::TableComment, Clause::Storage]
        );
        assert_eq!(
            clauses("ALTER TABLE t CONVERT TO CHARACTER SET utf8mb4"),
            vec![Clause::ConvertCharset]
        );
        assert_eq!(
            clauses("ALTER TABLE t RENAME TO shop.t2"),
            vec![Clause::RenameTable((Some("shop".into()), "t2".into()))]
        );
        assert!(matches!(
            clauses("ALTER TABLE t ADD PERIOD FOR p(a, b)")[0],
            Clause::Unknown(_)
        ));
    }

    #[test]
    fn executable_comments_and_other_statements() {
        let a = parse_alter_table("/*!40000 ALTER TABLE `t` DISABLE KEYS */").expect("alter");
        assert!(a.is_storage_only());
        assert_eq!(a.table, (None, "t".into()));
        assert!(parse_alter_table("CREATE TABLE t (a int)").is_none());
        assert_eq!(
            parse_rename_tables("RENAME TABLE a TO b, shop.c TO shop.d"),
            Some(vec![
                ((None, "a".into()), (None, "b".into())),
                (
                    (Some("shop".into()), "c".into()),
                    (Some("shop".into()), "d".into())
                )
            ])
        );
    }
}
