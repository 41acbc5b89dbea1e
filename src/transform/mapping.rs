//! The type mapping: a MySQL/MariaDB column (as `information_schema` describes it) → the
//! PostgreSQL column type and the conversion that carries its values exactly.
//!
//! Guarantees: every mapping is lossless for every value the MySQL type can hold (the README's
//! table is this file in prose); a column type ferry cannot carry exactly is a [`MappingError`] at
//! schema load, before any row is read, never a surprise mid-stream.

use super::charset::Charset;
use super::{CaseInsensitive, TypeOptions};
use crate::select::{fold_name, quote_ident};

/// A source column, as read from `information_schema.COLUMNS` (plus MariaDB's JSON check).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SourceColumn {
    pub name: String,
    /// Lower-case base type: `int`, `varchar`, `decimal`, `enum`...
    pub data_type: String,
    /// Full declaration: `int(10) unsigned`, `enum('a','b')`, `tinyint(1)`.
    pub column_type: String,
    pub nullable: bool,
    pub unsigned: bool,
    /// CHARACTER_MAXIMUM_LENGTH (characters for text, bytes for binary types).
    pub char_max_length: Option<u64>,
    pub numeric_precision: Option<u32>,
    pub numeric_scale: Option<u32>,
    pub datetime_precision: Option<u32>,
    /// CHARACTER_SET_NAME; `None` for non-text columns.
    pub charset: Option<String>,
    /// COLLATION_NAME; `None` for non-text columns (and where the source does not say, as in
    /// definitions stored by a ferry before it read collations).
    #[serde(default)]
    pub collation: Option<String>,
    /// MySQL JSON, or MariaDB LONGTEXT with a `json_valid()` check.
    pub is_json: bool,
    /// ENUM/SET member names in definition order.
    pub members: Vec<String>,
    /// VIRTUAL or STORED generated column (its computed value is replicated as data).
    pub generated: bool,
    /// MySQL INVISIBLE column (replicated like any other).
    pub invisible: bool,
    /// AUTO_INCREMENT: the target column gets an identity (or an owned sequence) so inserts
    /// without a value work after the switch.
    pub auto_increment: bool,
    /// The default in MariaDB's spelling (an SQL expression, string literals quoted); `None`
    /// for none or NULL. See `transform::defaults`.
    pub default: Option<String>,
    /// `ON UPDATE CURRENT_TIMESTAMP`: carried as a trigger that skips ferry's own writes.
    pub on_update_now: bool,
    /// COLUMN_COMMENT (empty for none).
    pub comment: String,
}

/// A PostgreSQL column type ferry creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    SmallInt,
    Integer,
    BigInt,
    /// `numeric(p,s)`; `None` for unconstrained.
    Numeric(Option<(u32, u32)>),
    Real,
    Double,
    Boolean,
    /// `bit(n)`.
    Bit(u32),
    Date,
    /// `timestamp(p)` without time zone.
    Timestamp(u32),
    /// `timestamptz(p)`.
    TimestampTz(u32),
    /// `interval` (MySQL TIME spans -838:59:59..838:59:59, beyond PostgreSQL `time`).
    Interval(u32),
    /// `varchar(n)` (character semantics, like MySQL).
    Varchar(u64),
    Text,
    Bytea,
    Jsonb,
    /// `real[]` for MySQL 9 VECTOR.
    RealArray,
    /// PostGIS `geometry`, qualified by the extension's schema.
    Geometry {
        schema: String,
    },
    /// MariaDB UUID.
    Uuid,
    /// MariaDB INET4 / INET6 (a CHECK keeps the column to one family without a netmask).
    Inet,
    /// The `citext` extension's type, qualified by its schema, for a case-insensitive text
    /// column under `types.case_insensitive = "citext"`; `max_chars` is the source's length
    /// limit (kept by a CHECK, since citext has none).
    Citext {
        schema: String,
        max_chars: Option<u64>,
    },
}

impl PgType {
    /// Whole numbers only (integer types and `numeric(p,0)`).
    pub fn is_integer(&self) -> bool {
        matches!(
            self,
            PgType::SmallInt | PgType::Integer | PgType::BigInt | PgType::Numeric(Some((_, 0)))
        )
    }

    /// The type as written in DDL and casts.
    pub fn sql(&self) -> String {
        match self {
            PgType::SmallInt => "smallint".into(),
            PgType::Integer => "integer".into(),
            PgType::BigInt => "bigint".into(),
            PgType::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
            PgType::Numeric(None) => "numeric".into(),
            PgType::Real => "real".into(),
            PgType::Double => "double precision".into(),
            PgType::Boolean => "boolean".into(),
            PgType::Bit(n) => format!("bit({n})"),
            PgType::Date => "date".into(),
            PgType::Timestamp(p) => format!("timestamp({p})"),
            PgType::TimestampTz(p) => format!("timestamptz({p})"),
            PgType::Interval(p) => format!("interval({p})"),
            PgType::Varchar(n) => format!("varchar({n})"),
            PgType::Text => "text".into(),
            PgType::Bytea => "bytea".into(),
            PgType::Jsonb => "jsonb".into(),
            PgType::RealArray => "real[]".into(),
            PgType::Geometry { schema } => format!("{}.geometry", quote_ident(schema)),
            PgType::Uuid => "uuid".into(),
            PgType::Inet => "inet".into(),
            PgType::Citext { schema, .. } => format!("{}.citext", quote_ident(schema)),
        }
    }

    /// Character data (whatever the collation).
    pub fn is_text(&self) -> bool {
        matches!(
            self,
            PgType::Varchar(_) | PgType::Text | PgType::Citext { .. }
        )
    }
}

/// The collation a case-insensitive text column gets under `types.case_insensitive = "icu"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiCollation {
    /// The database's default collation.
    Default,
    /// `<target schema>.ferry_ci`: ICU, `und-u-ks-level2`, nondeterministic.
    Icu,
}

/// Name of the case-insensitive ICU collation ferry creates in a target schema.
pub const ICU_CI_COLLATION: &str = "ferry_ci";

/// `CREATE COLLATION` for [`CiCollation::Icu`] in `schema` (idempotent).
pub fn create_icu_collation_sql(schema: &str) -> String {
    format!(
        "CREATE COLLATION IF NOT EXISTS {}.{} (provider = icu, locale = 'und-u-ks-level2', \
         deterministic = false)",
        quote_ident(schema),
        quote_ident(ICU_CI_COLLATION)
    )
}

/// How a value of the column converts (see `convert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// Signed integer of `bits` width.
    Int {
        bits: u32,
    },
    /// Unsigned integer of `bits` width (negative binlog values are reinterpreted).
    UInt {
        bits: u32,
    },
    /// TINYINT(1) as boolean.
    Bool,
    Decimal,
    Float,
    Double,
    /// BIT(n), as PostgreSQL bit-string text.
    Bit {
        bits: u32,
    },
    Year,
    Date,
    DateTime,
    /// TIMESTAMP: instants, written as UTC.
    Timestamp,
    Time,
    /// Character data decoded from the column charset.
    Text {
        charset: Charset,
    },
    /// Binary strings; `pad_to` for BINARY(n), which MySQL right-pads with 0x00.
    Bytes {
        pad_to: Option<usize>,
    },
    /// `charset`: how query results spell the names (sessions read raw column bytes).
    Enum {
        members: Vec<String>,
        charset: Charset,
    },
    Set {
        members: Vec<String>,
        charset: Charset,
    },
    Json,
    /// MySQL internal geometry (4-byte little-endian SRID + WKB): byte for byte into bytea, or
    /// as EWKB (the same WKB with the SRID inside) when the target type is PostGIS `geometry`.
    Geometry,
    /// MySQL 9 VECTOR: little-endian float32 values.
    Vector,
    /// MariaDB UUID: 16 bytes in the binlog (in text order), its text from a query. MariaDB
    /// orders UUIDs of versions 1-5 by their segments in reverse, PostgreSQL by their bytes.
    Uuid,
    /// MariaDB INET4 (`v6: false`, 4 bytes) or INET6 (16 bytes, IPv4-mapped addresses
    /// included), in network byte order in the binlog, as text from a query.
    Inet {
        v6: bool,
    },
}

impl ValueKind {
    /// The CHECK that keeps a PostgreSQL column to the values of its MySQL type, for types
    /// whose PostgreSQL type holds more (an `inet` also holds the other family and netmasks).
    pub fn domain_check(&self, quoted: &str) -> Option<String> {
        match self {
            ValueKind::Inet { v6: false } => {
                Some(format!("family({quoted}) = 4 AND masklen({quoted}) = 32"))
            }
            ValueKind::Inet { v6: true } => {
                Some(format!("family({quoted}) = 6 AND masklen({quoted}) = 128"))
            }
            _ => None,
        }
    }
}

/// One column's full plan: names, target type and conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRule {
    /// Source column name (as MySQL spells it).
    pub source_name: String,
    /// Target column name (folded; see `select`).
    pub target_name: String,
    /// Pre-quoted target name for SQL generation.
    pub quoted: String,
    pub pg_type: PgType,
    pub kind: ValueKind,
    pub nullable: bool,
    /// Collation of a text column on the target (see [`CiCollation`]).
    pub collation: CiCollation,
}

impl ColumnRule {
    /// The column's type as written in `CREATE TABLE`/`ADD COLUMN`/`ALTER COLUMN TYPE`
    /// of a table in `schema`: the type plus its collation, if any.
    pub fn type_in(&self, schema: &str) -> String {
        match self.collation {
            CiCollation::Default => self.pg_type.sql(),
            CiCollation::Icu => format!(
                "{} COLLATE {}.{}",
                self.pg_type.sql(),
                quote_ident(schema),
                quote_ident(ICU_CI_COLLATION)
            ),
        }
    }

    /// The CHECK that keeps the column to its MySQL type's values, when its PostgreSQL type
    /// holds more (an `inet`'s other family, a `citext` longer than the source's limit).
    pub fn domain_check(&self) -> Option<String> {
        if let PgType::Citext {
            max_chars: Some(n), ..
        } = self.pg_type
        {
            return Some(format!("char_length({}) <= {n}", self.quoted));
        }
        self.kind.domain_check(&self.quoted)
    }
}

/// A source column ferry cannot map exactly.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("column `{column}` of type {column_type}: {reason}")]
pub struct MappingError {
    pub column: String,
    pub column_type: String,
    pub reason: String,
}

/// Maps one source column.
///
/// # Errors
/// Unknown data types and character sets ferry cannot decode exactly.
pub fn plan_column(col: &SourceColumn, opts: &TypeOptions) -> Result<ColumnRule, MappingError> {
    let err = |reason: &str| MappingError {
        column: col.name.clone(),
        column_type: col.column_type.clone(),
        reason: reason.to_string(),
    };
    let dt = col.data_type.as_str();
    let (pg_type, kind) = match dt {
        "tinyint" if is_tinyint1(&col.column_type) && opts.tinyint1_as_boolean => {
            (PgType::Boolean, ValueKind::Bool)
        }
        "tinyint" => (PgType::SmallInt, int_kind(8, col.unsigned)),
        "smallint" if col.unsigned => (PgType::Integer, int_kind(16, true)),
        "smallint" => (PgType::SmallInt, int_kind(16, false)),
        "mediumint" => (PgType::Integer, int_kind(24, col.unsigned)),
        "int" | "integer" if col.unsigned => (PgType::BigInt, int_kind(32, true)),
        "int" | "integer" => (PgType::Integer, int_kind(32, false)),
        "bigint" if col.unsigned => (PgType::Numeric(Some((20, 0))), int_kind(64, true)),
        "bigint" => (PgType::BigInt, int_kind(64, false)),
        "decimal" | "numeric" => {
            let p = col.numeric_precision.unwrap_or(10);
            let s = col.numeric_scale.unwrap_or(0);
            (PgType::Numeric(Some((p.max(1), s))), ValueKind::Decimal)
        }
        "float" => (PgType::Real, ValueKind::Float),
        "double" | "real" | "double precision" => (PgType::Double, ValueKind::Double),
        "bit" => {
            let n = col.numeric_precision.unwrap_or(1).max(1);
            (PgType::Bit(n), ValueKind::Bit { bits: n })
        }
        "year" => (PgType::SmallInt, ValueKind::Year),
        "date" => (PgType::Date, ValueKind::Date),
        "datetime" => (
            PgType::Timestamp(col.datetime_precision.unwrap_or(0)),
            ValueKind::DateTime,
        ),
        "timestamp" => (
            PgType::TimestampTz(col.datetime_precision.unwrap_or(0)),
            ValueKind::Timestamp,
        ),
        "time" => (
            PgType::Interval(col.datetime_precision.unwrap_or(0)),
            ValueKind::Time,
        ),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" if col.is_json => {
            (PgType::Jsonb, ValueKind::Json)
        }
        "json" => (PgType::Jsonb, ValueKind::Json),
        "char" | "varchar" => {
            let charset = text_charset(col).map_err(|r| err(&r))?;
            let n = col.char_max_length.unwrap_or(0);
            let t = if n == 0 {
                PgType::Text
            } else {
                PgType::Varchar(n)
            };
            (t, ValueKind::Text { charset })
        }
        "tinytext" | "text" | "mediumtext" | "longtext" => {
            let charset = text_charset(col).map_err(|r| err(&r))?;
            (PgType::Text, ValueKind::Text { charset })
        }
        "binary" => {
            let n = col.char_max_length.unwrap_or(0) as usize;
            (
                PgType::Bytea,
                ValueKind::Bytes {
                    pad_to: (n > 0).then_some(n),
                },
            )
        }
        "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            (PgType::Bytea, ValueKind::Bytes { pad_to: None })
        }
        "enum" => (
            PgType::Text,
            ValueKind::Enum {
                members: col.members.clone(),
                charset: text_charset(col).map_err(|r| err(&r))?,
            },
        ),
        "set" => (
            PgType::Text,
            ValueKind::Set {
                members: col.members.clone(),
                charset: text_charset(col).map_err(|r| err(&r))?,
            },
        ),
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => match &opts.postgis_schema {
            Some(schema) => (
                PgType::Geometry {
                    schema: schema.clone(),
                },
                ValueKind::Geometry,
            ),
            None => (PgType::Bytea, ValueKind::Geometry),
        },
        "vector" => (PgType::RealArray, ValueKind::Vector),
        "uuid" => (PgType::Uuid, ValueKind::Uuid),
        "inet4" => (PgType::Inet, ValueKind::Inet { v6: false }),
        "inet6" => (PgType::Inet, ValueKind::Inet { v6: true }),
        other => {
            return Err(err(&format!(
                "MySQL type `{other}` has no exact mapping in ferry"
            )))
        }
    };
    let (pg_type, collation) = case_insensitive(col, pg_type, &kind, opts).map_err(|r| err(&r))?;
    let target_name = fold_name(&col.name);
    Ok(ColumnRule {
        source_name: col.name.clone(),
        quoted: quote_ident(&target_name),
        target_name,
        pg_type,
        kind,
        nullable: col.nullable,
        collation,
    })
}

/// Applies `types.case_insensitive` to a character column whose MySQL collation ignores case.
/// ENUM/SET (whose values are always the members' spelling) and JSON are left alone.
fn case_insensitive(
    col: &SourceColumn,
    pg_type: PgType,
    kind: &ValueKind,
    opts: &TypeOptions,
) -> Result<(PgType, CiCollation), String> {
    let ci = matches!(kind, ValueKind::Text { .. })
        && col
            .collation
            .as_deref()
            .is_some_and(super::is_case_insensitive_collation);
    if !ci {
        return Ok((pg_type, CiCollation::Default));
    }
    match opts.case_insensitive {
        CaseInsensitive::Text => Ok((pg_type, CiCollation::Default)),
        CaseInsensitive::Icu => Ok((pg_type, CiCollation::Icu)),
        CaseInsensitive::Citext => {
            let Some(schema) = opts.citext_schema.clone() else {
                return Err("types.case_insensitive = \"citext\" but the citext extension's schema is unknown (not resolved against the target)".into());
            };
            let max_chars = match pg_type {
                PgType::Varchar(n) => Some(n),
                _ => None,
            };
            Ok((PgType::Citext { schema, max_chars }, CiCollation::Default))
        }
    }
}

fn int_kind(bits: u32, unsigned: bool) -> ValueKind {
    if unsigned {
        ValueKind::UInt { bits }
    } else {
        ValueKind::Int { bits }
    }
}

fn is_tinyint1(column_type: &str) -> bool {
    let t = column_type.to_ascii_lowercase();
    t == "tinyint(1)" || t == "tinyint(1) unsigned"
}

fn text_charset(col: &SourceColumn) -> Result<Charset, String> {
    let name = col.charset.as_deref().unwrap_or("utf8mb4");
    Charset::from_mysql(name).ok_or_else(|| {
        format!("character set `{name}` is not one ferry decodes exactly; convert the column to utf8mb4")
    })
}

/// A nullable column of `data_type` / `column_type` as the catalog would describe it, for
/// tests: text kinds in `charset`, ENUM members `a, b`, SET members `a, b, c`.
#[cfg(test)]
pub(crate) fn sample_column(data_type: &str, column_type: &str, charset: &str) -> SourceColumn {
    let text = ["varchar", "char", "text", "enum", "set"].contains(&data_type);
    SourceColumn {
        name: "c".into(),
        data_type: data_type.into(),
        column_type: column_type.into(),
        nullable: true,
        unsigned: column_type.contains("unsigned"),
        charset: text.then(|| charset.into()),
        is_json: data_type == "json",
        members: match data_type {
            "enum" => vec!["a".into(), "b".into()],
            "set" => vec!["a".into(), "b".into(), "c".into()],
            _ => Vec::new(),
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(data_type: &str, column_type: &str) -> SourceColumn {
        SourceColumn {
            name: "C".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            nullable: true,
            unsigned: column_type.contains("unsigned"),
            ..Default::default()
        }
    }

    fn pg(c: &SourceColumn) -> String {
        plan_column(c, &TypeOptions::default())
            .expect("maps")
            .pg_type
            .sql()
    }

    #[test]
    fn integers_widen_only_where_unsigned_needs_it() {
        assert_eq!(pg(&col("tinyint", "tinyint(4)")), "smallint");
        assert_eq!(pg(&col("tinyint", "tinyint(3) unsigned")), "smallint");
        assert_eq!(pg(&col("smallint", "smallint(5) unsigned")), "integer");
        assert_eq!(pg(&col("mediumint", "mediumint(8) unsigned")), "integer");
        assert_eq!(pg(&col("int", "int(10) unsigned")), "bigint");
        assert_eq!(pg(&col("int", "int(11)")), "integer");
        assert_eq!(pg(&col("bigint", "bigint(20) unsigned")), "numeric(20,0)");
        assert_eq!(pg(&col("bigint", "bigint(20)")), "bigint");
    }

    #[test]
    fn tinyint1_is_smallint_unless_asked() {
        assert_eq!(pg(&col("tinyint", "tinyint(1)")), "smallint");
        let opts = TypeOptions {
            tinyint1_as_boolean: true,
            ..Default::default()
        };
        let r = plan_column(&col("tinyint", "tinyint(1)"), &opts).expect("maps");
        assert_eq!(r.pg_type, PgType::Boolean);
    }

    #[test]
    fn decimals_keep_precision_and_scale() {
        let mut c = col("decimal", "decimal(65,30)");
        c.numeric_precision = Some(65);
        c.numeric_scale = Some(30);
        assert_eq!(pg(&c), "numeric(65,30)");
    }

    #[test]
    fn case_insensitive_collations_follow_types_case_insensitive() {
        let text = |collation: &str, data_type: &str, column_type: &str| {
            let mut c = col(data_type, column_type);
            c.char_max_length = Some(20);
            c.collation = Some(collation.into());
            c
        };
        let ci = text("utf8mb4_0900_ai_ci", "varchar", "varchar(20)");
        let bin = text("utf8mb4_bin", "varchar", "varchar(20)");
        let mut en = text("utf8mb4_general_ci", "enum", "enum('a','B')");
        en.members = vec!["a".into(), "B".into()];
        let plan = |c: &SourceColumn, mode: CaseInsensitive| {
            let opts = TypeOptions {
                case_insensitive: mode,
                citext_schema: Some("ext".into()),
                ..Default::default()
            };
            plan_column(c, &opts).expect("maps")
        };
        // text: as before.
        assert_eq!(plan(&ci, CaseInsensitive::Text).type_in("s"), "varchar(20)");
        // icu: the type keeps its limit, the collation is the schema's ferry_ci.
        let icu = plan(&ci, CaseInsensitive::Icu);
        assert_eq!(icu.type_in("s"), "varchar(20) COLLATE \"s\".\"ferry_ci\"");
        assert_eq!(icu.pg_type.sql(), "varchar(20)", "casts carry no collation");
        assert_eq!(icu.domain_check(), None);
        // citext: the extension's type, the limit as a CHECK.
        let cit = plan(&ci, CaseInsensitive::Citext);
        assert_eq!(cit.type_in("s"), "\"ext\".citext");
        assert_eq!(
            cit.domain_check().as_deref(),
            Some("char_length(\"c\") <= 20")
        );
        let long = text("latin1_swedish_ci", "text", "text");
        assert_eq!(
            plan(&long, CaseInsensitive::Citext).domain_check(),
            None,
            "TEXT has no limit to keep"
        );
        // _bin columns and ENUMs are never changed.
        for mode in [CaseInsensitive::Icu, CaseInsensitive::Citext] {
            assert_eq!(plan(&bin, mode).type_in("s"), "varchar(20)");
            assert_eq!(plan(&en, mode).type_in("s"), "text");
        }
        // citext without the resolved schema is an error, not a silent fallback.
        let opts = TypeOptions {
            case_insensitive: CaseInsensitive::Citext,
            ..Default::default()
        };
        assert!(plan_column(&ci, &opts).is_err());
        assert!(crate::transform::is_case_insensitive_collation(
            "utf8mb4_general_nopad_ci"
        ));
        assert!(crate::transform::is_case_insensitive_collation(
            "uca1400_ai_ci"
        ));
        assert!(!crate::transform::is_case_insensitive_collation(
            "utf8mb4_0900_as_cs"
        ));
        assert!(!crate::transform::is_case_insensitive_collation("binary"));
    }

    #[test]
    fn temporal_types() {
        let mut c = col("datetime", "datetime(6)");
        c.datetime_precision = Some(6);
        assert_eq!(pg(&c), "timestamp(6)");
        let mut c = col("timestamp", "timestamp(3)");
        c.datetime_precision = Some(3);
        assert_eq!(pg(&c), "timestamptz(3)");
        assert_eq!(pg(&col("time", "time")), "interval(0)");
        assert_eq!(pg(&col("year", "year(4)")), "smallint");
        assert_eq!(pg(&col("date", "date")), "date");
    }

    #[test]
    fn strings_binary_json_enum_set() {
        let mut c = col("varchar", "varchar(255)");
        c.char_max_length = Some(255);
        c.charset = Some("utf8mb4".into());
        assert_eq!(pg(&c), "varchar(255)");
        let mut c = col("longtext", "longtext");
        c.is_json = true;
        assert_eq!(pg(&c), "jsonb");
        let mut b = col("binary", "binary(16)");
        b.char_max_length = Some(16);
        let r = plan_column(&b, &TypeOptions::default()).expect("maps");
        assert_eq!(r.kind, ValueKind::Bytes { pad_to: Some(16) });
        assert_eq!(pg(&col("enum", "enum('a','b')")), "text");
        assert_eq!(pg(&col("set", "set('a','b')")), "text");
        assert_eq!(pg(&col("json", "json")), "jsonb");
        assert_eq!(pg(&col("point", "point")), "bytea");
        assert_eq!(pg(&col("vector", "vector(3)")), "real[]");
    }

    #[test]
    fn mariadb_uuid_and_inet_types() {
        assert_eq!(pg(&col("uuid", "uuid")), "uuid");
        assert_eq!(pg(&col("inet4", "inet4")), "inet");
        assert_eq!(pg(&col("inet6", "inet6")), "inet");
        let r = plan_column(&col("inet4", "inet4"), &TypeOptions::default()).expect("maps");
        assert_eq!(
            r.kind.domain_check("\"c\"").as_deref(),
            Some("family(\"c\") = 4 AND masklen(\"c\") = 32")
        );
        assert_eq!(ValueKind::Uuid.domain_check("c"), None);
    }

    #[test]
    fn names_fold_to_lower_case() {
        let r = plan_column(&col("int", "int(11)"), &TypeOptions::default()).expect("maps");
        assert_eq!(r.target_name, "c");
        assert_eq!(r.quoted, "\"c\"");
    }

    #[test]
    fn unknown_types_and_charsets_are_refused_at_load() {
        let e = plan_column(&col("frobnicate", "frobnicate"), &TypeOptions::default())
            .expect_err("unknown type");
        assert!(e.to_string().contains("frobnicate"));
        let mut c = col("varchar", "varchar(3)");
        c.charset = Some("keybcs2".into());
        let e = plan_column(&c, &TypeOptions::default()).expect_err("unknown charset");
        assert!(e.reason.contains("keybcs2"), "{e}");
    }
}
