//! Pure MySQL value → PostgreSQL value rules. No I/O lives here.
//!
//! Guarantees: every value either converts to the exact PostgreSQL text input form of the
//! column's mapped type ([`Cell`]), or yields a [`ValueProblem`] naming what is wrong; nothing is
//! rounded, truncated, re-encoded lossily or dropped. What happens to a problem is decided by the
//! configured [`ValuePolicy`] (refuse, substitute, dead-letter) through [`resolve`], never here
//! implicitly.
//!
//! - [`mapping`]: column metadata → PostgreSQL type and conversion kind (the type mapping table).
//! - [`convert`]: one value → [`Cell`].
//! - [`charset`], [`temporal`], [`json`]: the exact rules for text, time and JSON values.
//! - [`size`]: the largest row PostgreSQL can take, checked before a row is sent.

pub mod charset;
pub mod convert;
pub mod defaults;
pub mod json;
pub mod mapping;
pub mod size;
pub mod temporal;

use std::fmt;
use std::str::FromStr;

pub use convert::{convert, SourceValue};
pub use mapping::{
    plan_column, CiCollation, ColumnRule, MappingError, PgType, SourceColumn, ValueKind,
};

/// A converted value: `None` is SQL NULL, `Some(text)` the PostgreSQL text input form.
pub type Cell = Option<String>;

/// Options of the type mapping (`[types]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeOptions {
    /// TINYINT(1) → boolean (values other than 0/1 are then refused) instead of smallint.
    pub tinyint1_as_boolean: bool,
    /// Zero or partial-zero dates.
    pub zero_date: ValuePolicy,
    /// NUL (U+0000) in text or JSON strings, which PostgreSQL text cannot hold.
    pub nul_in_text: ValuePolicy,
    /// Bytes that are not valid in the column's character set.
    pub invalid_text: ValuePolicy,
    /// How spatial columns are carried (`types.spatial`).
    pub spatial: Spatial,
    /// Schema of the PostGIS extension in the target when spatial columns map to PostGIS
    /// `geometry`; `None` maps them to bytea. Decided at startup from [`Self::spatial`] and the
    /// target (`sink::postgis::resolve`), before any table is planned.
    pub postgis_schema: Option<String>,
    /// What text columns with a case-insensitive (`_ci`) MySQL collation become
    /// (`types.case_insensitive`).
    pub case_insensitive: CaseInsensitive,
    /// Schema of the `citext` extension in the target under [`CaseInsensitive::Citext`].
    /// Decided at startup (`sink::case_fold::resolve`), before any table is planned.
    pub citext_schema: Option<String>,
}

impl Default for TypeOptions {
    fn default() -> Self {
        Self {
            tinyint1_as_boolean: false,
            zero_date: ValuePolicy::Refuse,
            nul_in_text: ValuePolicy::Refuse,
            invalid_text: ValuePolicy::Refuse,
            spatial: Spatial::Auto,
            postgis_schema: None,
            case_insensitive: CaseInsensitive::Text,
            citext_schema: None,
        }
    }
}

/// What a text column with a case-insensitive MySQL collation (`utf8mb4_0900_ai_ci`,
/// `latin1_swedish_ci`, ...) becomes on the target (`types.case_insensitive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseInsensitive {
    /// Plain `varchar`/`text`: comparisons and unique keys are case-sensitive on PostgreSQL.
    Text,
    /// The `citext` extension's type (a length limit becomes a CHECK on `char_length`).
    Citext,
    /// `varchar`/`text` with a nondeterministic ICU collation that ignores case
    /// (`und-u-ks-level2`), created in each target schema as `ferry_ci`.
    Icu,
}

impl FromStr for CaseInsensitive {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(CaseInsensitive::Text),
            "citext" => Ok(CaseInsensitive::Citext),
            "icu" => Ok(CaseInsensitive::Icu),
            other => Err(format!(
                "{other:?} is not a case-insensitive mapping; use \"text\", \"citext\" or \"icu\""
            )),
        }
    }
}

/// Whether a MySQL collation name compares case-insensitively (`_ci`, including MariaDB's
/// `_nopad_ci` and `uca1400_ai_ci`). `_bin`, `_cs` and `binary` do not.
pub fn is_case_insensitive_collation(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with("_ci")
}

/// Where spatial columns go (`types.spatial`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spatial {
    /// PostGIS `geometry` when the extension is installed in the target database, else bytea.
    Auto,
    /// Always bytea (MySQL's internal form).
    Bytea,
    /// PostGIS `geometry`; a target without the extension fails preflight.
    PostGis,
}

impl FromStr for Spatial {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Spatial::Auto),
            "bytea" => Ok(Spatial::Bytea),
            "postgis" => Ok(Spatial::PostGis),
            other => Err(format!(
                "{other:?} is not a spatial mapping; use \"auto\", \"bytea\" or \"postgis\""
            )),
        }
    }
}

/// What to do with a value PostgreSQL cannot hold exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValuePolicy {
    /// Stop replication with a message naming table, column, position and fix (default).
    Refuse,
    /// Write NULL instead (counted in `ferry_values_substituted_total`).
    Null,
    /// Write this literal instead (counted).
    Value(String),
    /// Keep the whole row in the dead-letter table instead of applying it (counted).
    DeadLetter,
}

impl FromStr for ValuePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "refuse" => Ok(ValuePolicy::Refuse),
            "null" => Ok(ValuePolicy::Null),
            "dead_letter" => Ok(ValuePolicy::DeadLetter),
            other => match other.strip_prefix("value:") {
                Some(v) => Ok(ValuePolicy::Value(v.to_string())),
                None => Err(format!(
                    "{other:?} is not a policy; use \"refuse\", \"null\", \"dead_letter\" or \"value:<literal>\""
                )),
            },
        }
    }
}

/// The class of a value that cannot be converted exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// `0000-00-00`, `2022-11-00`, zero TIMESTAMP.
    ZeroDate,
    /// U+0000 in a text value.
    NulInText,
    /// Bytes invalid in the column's character set.
    InvalidText,
    /// A value outside what the mapped type can hold (e.g. TINYINT(1)=2 mapped to boolean).
    OutOfRange,
    /// A value of a shape the column's type never produces (a decoder or schema mismatch).
    Unexpected,
}

impl ProblemKind {
    /// Stable label for metrics and the dead-letter table.
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::ZeroDate => "zero_date",
            ProblemKind::NulInText => "nul_in_text",
            ProblemKind::InvalidText => "invalid_text",
            ProblemKind::OutOfRange => "out_of_range",
            ProblemKind::Unexpected => "unexpected",
        }
    }
}

/// Why one value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueProblem {
    pub kind: ProblemKind,
    /// Human detail without the value itself (values are never logged above TRACE).
    pub detail: String,
}

impl ValueProblem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.detail, self.kind.label())
    }
}

/// The decision for one problem value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Use this cell instead (NULL or the configured literal).
    Substitute(Cell),
    /// Send the whole row to the dead-letter table.
    DeadLetter,
    /// Stop with a definite error.
    Refuse,
}

/// Applies the configured policy to a problem. `Unexpected` and `OutOfRange` are always refused:
/// they mean the mapping itself is wrong for this data, which no substitution can hide.
pub fn resolve(options: &TypeOptions, problem: &ValueProblem, nullable: bool) -> Resolution {
    let policy = match problem.kind {
        ProblemKind::ZeroDate => &options.zero_date,
        ProblemKind::NulInText => &options.nul_in_text,
        ProblemKind::InvalidText => &options.invalid_text,
        ProblemKind::OutOfRange | ProblemKind::Unexpected => return Resolution::Refuse,
    };
    match policy {
        ValuePolicy::Refuse => Resolution::Refuse,
        ValuePolicy::DeadLetter => Resolution::DeadLetter,
        ValuePolicy::Null if nullable => Resolution::Substitute(None),
        // A NOT NULL column cannot take the NULL substitute: keep the row whole instead of
        // failing inside PostgreSQL.
        ValuePolicy::Null => Resolution::DeadLetter,
        ValuePolicy::Value(v) => Resolution::Substitute(Some(v.clone())),
    }
}

/// The fix to suggest for a refused value of this kind.
pub fn suggested_fix(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::ZeroDate => {
            "fix the row on the source, or set `types.zero_date` to \"null\", \"value:<date>\" or \"dead_letter\""
        }
        ProblemKind::NulInText => {
            "fix the row on the source, or set `types.nul_in_text` to \"null\", \"value:<text>\" or \"dead_letter\""
        }
        ProblemKind::InvalidText => {
            "fix the row or the column's character set on the source, or set `types.invalid_text` to \"null\" or \"dead_letter\""
        }
        ProblemKind::OutOfRange => {
            "the mapped PostgreSQL type cannot hold this value; change the mapping option (e.g. `types.tinyint1_as_boolean = false`)"
        }
        ProblemKind::Unexpected => {
            "the source schema no longer matches what ferry loaded; check for an unreplicated schema change and restart"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse() {
        assert_eq!("refuse".parse::<ValuePolicy>(), Ok(ValuePolicy::Refuse));
        assert_eq!("null".parse::<ValuePolicy>(), Ok(ValuePolicy::Null));
        assert_eq!(
            "dead_letter".parse::<ValuePolicy>(),
            Ok(ValuePolicy::DeadLetter)
        );
        assert_eq!(
            "value:1970-01-01".parse::<ValuePolicy>(),
            Ok(ValuePolicy::Value("1970-01-01".into()))
        );
        assert!("ignore".parse::<ValuePolicy>().is_err());
    }

    #[test]
    fn resolve_follows_policy_and_never_substitutes_unexpected() {
        let mut o = TypeOptions::default();
        let zd = ValueProblem::new(ProblemKind::ZeroDate, "zero date");
        assert_eq!(resolve(&o, &zd, true), Resolution::Refuse);
        o.zero_date = ValuePolicy::Null;
        assert_eq!(resolve(&o, &zd, true), Resolution::Substitute(None));
        assert_eq!(
            resolve(&o, &zd, false),
            Resolution::DeadLetter,
            "NOT NULL column"
        );
        o.zero_date = ValuePolicy::Value("1970-01-01".into());
        assert_eq!(
            resolve(&o, &zd, false),
            Resolution::Substitute(Some("1970-01-01".into()))
        );
        let un = ValueProblem::new(ProblemKind::Unexpected, "x");
        o.invalid_text = ValuePolicy::Null;
        assert_eq!(resolve(&o, &un, true), Resolution::Refuse);
    }
}
