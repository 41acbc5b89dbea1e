//! Table definitions read from the binlog itself: a TABLE_MAP event → the [`SourceColumn`]s (and
//! primary key) ferry would otherwise read from `information_schema`.
//!
//! A table map always carries each column's binlog type, its type metadata (DECIMAL precision and
//! scale, fractional-second precision, BIT width, the byte length of strings, the pack length of
//! BLOB/TEXT) and nullability. With `binlog_row_metadata=MINIMAL` it adds signedness and the
//! character sets of string columns; with `FULL` also column names, ENUM/SET member names and
//! their character sets, the primary key, geometry subtypes, column visibility and (MySQL 9)
//! vector dimensions. [`describe`] turns all of that into the same [`SourceColumn`] shape the
//! catalog produces, so [`Table::plan`] maps it with the same rules.
//!
//! Guarantees:
//! - nothing is guessed silently: what the map does not carry is reported in [`Present`] (and
//!   left as `None`/empty in the columns, with placeholder names `@1`, `@2`… as `mysqlbinlog`
//!   prints them), so a caller can refuse, or fill in from elsewhere, instead of replicating
//!   under a wrong assumption;
//! - a character set id ferry does not know becomes the charset name `collation#<id>`, which the
//!   type mapping then refuses by name, never a default;
//! - string lengths are converted from the bytes the map gives to characters with the character
//!   set's maximum bytes per character, as `information_schema.CHARACTER_MAXIMUM_LENGTH` counts;
//! - malformed metadata (a count that does not match the columns, unreadable TLVs, unknown
//!   column types) is a [`TableMapError`], never a partial description.
//!
//! What a table map cannot tell at all: display widths (so `TINYINT(1)` looks like `TINYINT`),
//! generated columns, defaults, secondary indexes, and MariaDB's JSON (a `LONGTEXT` on the wire).

use mysql_common::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_common::constants::{ColumnType, GeometryType};

use super::connect::Flavor;
use crate::schema::{Index, SourceName, Table, TableError};
use crate::transform::charset::Charset;
use crate::transform::{SourceColumn, TypeOptions};

/// Why a table map cannot be described.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableMapError {
    #[error(
        "table map of {table}: column {column} has binlog type {code}, which ferry does not know"
    )]
    UnknownType {
        table: SourceName,
        column: usize,
        code: u8,
    },
    #[error("table map of {table}: column {column} is of binlog type {ty}, which ferry cannot replicate")]
    Unsupported {
        table: SourceName,
        column: usize,
        ty: &'static str,
    },
    #[error("table map of {table}: metadata of column {column} is malformed ({detail})")]
    ColumnMetadata {
        table: SourceName,
        column: usize,
        detail: String,
    },
    #[error("table map of {table}: optional metadata is unreadable ({detail})")]
    OptionalMetadata { table: SourceName, detail: String },
    #[error("table map of {table}: {field} has {got} entries for {want} columns")]
    Count {
        table: SourceName,
        field: &'static str,
        got: usize,
        want: usize,
    },
}

/// Which optional metadata the map carried (`binlog_row_metadata` decides).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Present {
    /// SIGNEDNESS (MINIMAL and FULL; absent when the table has no numeric column).
    pub signedness: bool,
    /// DEFAULT_CHARSET or COLUMN_CHARSET (absent when the table has no string column, and in
    /// MySQL 5.7, which writes no optional metadata at all).
    pub charsets: bool,
    /// COLUMN_NAME (FULL only).
    pub column_names: bool,
    /// ENUM_STR_VALUE / SET_STR_VALUE (FULL only, when the table has such columns).
    pub enum_set_values: bool,
    /// SIMPLE_PRIMARY_KEY / PRIMARY_KEY_WITH_PREFIX (FULL only, when the table has a primary key).
    pub primary_key: bool,
    /// COLUMN_VISIBILITY (MySQL 8.0.23+ FULL).
    pub visibility: bool,
}

/// A table as its table map describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapTable {
    pub name: SourceName,
    pub columns: Vec<SourceColumn>,
    /// Primary key as (column position, prefix length) in key order; empty when the map names
    /// none (see [`Present::primary_key`] and [`Present::column_names`] to tell "no key" from
    /// "not said": with FULL metadata an absent key means the table has none).
    pub primary_key: Vec<(usize, Option<u32>)>,
    pub present: Present,
}

impl MapTable {
    /// The indexes the map knows of: the primary key, if it names one.
    pub fn indexes(&self) -> Vec<Index> {
        if self.primary_key.is_empty() {
            return Vec::new();
        }
        vec![Index {
            name: "PRIMARY".into(),
            unique: true,
            columns: self.primary_key.clone(),
        }]
    }

    /// Plans the replicated table from the map alone (primary key from the map).
    ///
    /// # Errors
    /// See [`Table::plan`]: notably [`TableError::NoKey`] when the map names no primary key.
    pub fn plan(&self, target_schema: &str, options: &TypeOptions) -> Result<Table, TableError> {
        Table::plan(
            self.name.clone(),
            target_schema.to_string(),
            self.columns.clone(),
            self.indexes(),
            0,
            options,
        )
    }
}

/// The MySQL character set of a collation id, for the ids MySQL (5.7–9.x) and MariaDB assign.
/// `None` for ids ferry does not know.
pub fn charset_name(collation_id: u16) -> Option<&'static str> {
    Some(match collation_id {
        1 | 84 => "big5",
        2 | 9 | 21 | 27 | 77 => "latin2",
        3 | 69 => "dec8",
        4 | 80 => "cp850",
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => "latin1",
        6 | 72 => "hp8",
        7 | 74 => "koi8r",
        10 | 82 => "swe7",
        11 | 65 => "ascii",
        12 | 91 => "ujis",
        13 | 88 => "sjis",
        14 | 23 | 50 | 51 | 52 => "cp1251",
        16 | 71 => "hebrew",
        18 | 89 => "tis620",
        19 | 85 => "euckr",
        20 | 41 | 42 | 79 => "latin7",
        22 | 75 => "koi8u",
        24 | 86 => "gb2312",
        25 | 70 => "greek",
        26 | 34 | 44 | 66 | 99 => "cp1250",
        28 | 87 => "gbk",
        29 | 58 | 59 => "cp1257",
        30 | 78 => "latin5",
        32 | 64 => "armscii8",
        33 | 76 | 83 | 192..=215 | 223 => "utf8mb3",
        35 | 90 | 128..=151 | 159 => "ucs2",
        36 | 68 => "cp866",
        37 | 73 => "keybcs2",
        38 | 43 => "macce",
        39 | 53 => "macroman",
        40 | 81 => "cp852",
        45 | 46 | 224..=247 | 255..=323 => "utf8mb4",
        54 | 55 | 101..=124 => "utf16",
        56 | 62 => "utf16le",
        57 | 67 => "cp1256",
        60 | 61 | 160..=183 => "utf32",
        63 => "binary",
        92 | 93 => "geostd8",
        95 | 96 => "cp932",
        97 | 98 => "eucjpms",
        248..=250 => "gb18030",
        // MariaDB: the *_nopad_* collations are the base id + 1024 (latin1_swedish_nopad_ci =
        // 1032, utf8mb4_nopad_bin = 1070, ...), the *_mysql561_ci ones are 576.. (utf8mb3),
        // 608.. (utf8mb4), 640.. (ucs2), 672.. (utf16), 736.. (utf32).
        576..=607 => "utf8mb3",
        608..=639 => "utf8mb4",
        640..=671 => "ucs2",
        672..=703 => "utf16",
        736..=767 => "utf32",
        1025..=2047 => return charset_name(collation_id - 1024).filter(|c| *c != "binary"),
        _ => return None,
    })
}

/// Maximum bytes per character of a character set (1 for single-byte sets).
fn max_bytes_per_char(charset: &str) -> u64 {
    match charset {
        "utf8mb4" | "utf16" | "utf16le" | "utf32" | "gb18030" => 4,
        "utf8mb3" | "ujis" | "eucjpms" => 3,
        "ucs2" | "big5" | "sjis" | "euckr" | "gb2312" | "gbk" | "cp932" => 2,
        _ => 1,
    }
}

fn charset_text(id: u16) -> String {
    charset_name(id).map_or_else(|| format!("collation#{id}"), str::to_string)
}

/// Real types that take a DEFAULT_CHARSET/COLUMN_CHARSET entry, in column order. MySQL counts
/// CHAR, VARCHAR, BLOB/TEXT and (9.x) VECTOR; MariaDB also GEOMETRY (its base class is a blob).
/// ENUM and SET take ENUM_AND_SET_* entries instead.
fn takes_charset(ty: ColumnType, flavor: Flavor) -> bool {
    use ColumnType::*;
    match ty {
        MYSQL_TYPE_STRING
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB => true,
        MYSQL_TYPE_VECTOR => flavor == Flavor::MySql,
        MYSQL_TYPE_GEOMETRY => flavor == Flavor::MariaDb,
        _ => false,
    }
}

/// Everything the optional metadata says, collected in one pass.
#[derive(Default)]
struct Optional {
    unsigned: Option<Vec<bool>>,
    /// Character set per charset-taking column (`takes_charset`), in order.
    charsets: Option<Vec<u16>>,
    enum_set_charsets: Option<Vec<u16>>,
    names: Option<Vec<String>>,
    enum_values: Option<Vec<Vec<Vec<u8>>>>,
    set_values: Option<Vec<Vec<Vec<u8>>>>,
    geometry: Option<Vec<u8>>,
    dimensions: Option<Vec<u64>>,
    primary_key: Option<Vec<(usize, Option<u32>)>>,
    visible: Option<Vec<bool>>,
}

/// Expands DEFAULT_CHARSET (default + (index, charset) exceptions) to `n` entries.
fn expand_default(default: u16, exceptions: Vec<(u64, u16)>, n: usize) -> Vec<u16> {
    let mut out = vec![default; n];
    for (i, cs) in exceptions {
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            *slot = cs;
        }
    }
    out
}

fn read_optional(
    map: &TableMapEvent<'_>,
    types: &[ColumnType],
    flavor: Flavor,
    table: &SourceName,
) -> Result<Optional, TableMapError> {
    let bad = |e: std::io::Error| TableMapError::OptionalMetadata {
        table: table.clone(),
        detail: e.to_string(),
    };
    let n_charset = types.iter().filter(|t| takes_charset(**t, flavor)).count();
    let n_enum_set = types.iter().filter(|t| t.is_enum_or_set_type()).count();
    let mut o = Optional::default();
    for field in map.iter_optional_meta() {
        match field.map_err(bad)? {
            OptionalMetadataField::Signedness(bits) => {
                o.unsigned = Some(bits.iter().by_vals().collect());
            }
            OptionalMetadataField::DefaultCharset(d) => {
                let exceptions = d
                    .iter_non_default()
                    .map(|r| r.map(|x| (x.column_index(), x.charset())))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?;
                o.charsets = Some(expand_default(d.default_charset(), exceptions, n_charset));
            }
            OptionalMetadataField::ColumnCharset(c) => {
                o.charsets = Some(c.iter_charsets().collect::<Result<_, _>>().map_err(bad)?);
            }
            OptionalMetadataField::EnumAndSetDefaultCharset(d) => {
                let exceptions = d
                    .iter_non_default()
                    .map(|r| r.map(|x| (x.column_index(), x.charset())))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?;
                o.enum_set_charsets =
                    Some(expand_default(d.default_charset(), exceptions, n_enum_set));
            }
            OptionalMetadataField::EnumAndSetColumnCharset(c) => {
                o.enum_set_charsets =
                    Some(c.iter_charsets().collect::<Result<_, _>>().map_err(bad)?);
            }
            OptionalMetadataField::ColumnName(names) => {
                o.names = Some(
                    names
                        .iter_names()
                        .map(|r| r.map(|c| c.name().into_owned()))
                        .collect::<Result<_, _>>()
                        .map_err(bad)?,
                );
            }
            OptionalMetadataField::EnumStrValue(values) => {
                let mut all = Vec::new();
                for v in values.iter_values() {
                    let v = v.map_err(bad)?;
                    all.push(v.values().iter().map(|m| m.value_raw().to_vec()).collect());
                }
                o.enum_values = Some(all);
            }
            OptionalMetadataField::SetStrValue(values) => {
                let mut all = Vec::new();
                for v in values.iter_values() {
                    let v = v.map_err(bad)?;
                    all.push(v.values().iter().map(|m| m.value_raw().to_vec()).collect());
                }
                o.set_values = Some(all);
            }
            OptionalMetadataField::GeometryType(g) => {
                o.geometry = Some(
                    g.iter_geometry_types()
                        .map(|r| r.map(|t| t as u8))
                        .collect::<Result<_, _>>()
                        .map_err(bad)?,
                );
            }
            OptionalMetadataField::Dimensionality(d) => {
                o.dimensions = Some(
                    d.iter_dimensionalities()
                        .collect::<Result<_, _>>()
                        .map_err(bad)?,
                );
            }
            OptionalMetadataField::SimplePrimaryKey(pk) => {
                let cols: Vec<u64> = pk.iter_indexes().collect::<Result<_, _>>().map_err(bad)?;
                o.primary_key = Some(cols.into_iter().map(|c| (c as usize, None)).collect());
            }
            OptionalMetadataField::PrimaryKeyWithPrefix(pk) => {
                let mut cols = Vec::new();
                for k in pk.iter_keys() {
                    let k = k.map_err(bad)?;
                    let prefix = u32::try_from(k.prefix_length()).ok().filter(|p| *p > 0);
                    cols.push((k.column_index() as usize, prefix));
                }
                o.primary_key = Some(cols);
            }
            OptionalMetadataField::ColumnVisibility(bits) => {
                o.visible = Some(bits.iter().by_vals().collect());
            }
        }
    }
    Ok(o)
}

fn check_count<T>(
    v: &Option<Vec<T>>,
    want: usize,
    field: &'static str,
    table: &SourceName,
) -> Result<(), TableMapError> {
    match v {
        Some(v) if v.len() != want => Err(TableMapError::Count {
            table: table.clone(),
            field,
            got: v.len(),
            want,
        }),
        _ => Ok(()),
    }
}

fn quote_member(m: &str) -> String {
    format!("'{}'", m.replace('\'', "''"))
}

fn geometry_name(code: u8) -> &'static str {
    const NAMES: [(GeometryType, &str); 8] = [
        (GeometryType::GEOM_GEOMETRY, "geometry"),
        (GeometryType::GEOM_POINT, "point"),
        (GeometryType::GEOM_LINESTRING, "linestring"),
        (GeometryType::GEOM_POLYGON, "polygon"),
        (GeometryType::GEOM_MULTIPOINT, "multipoint"),
        (GeometryType::GEOM_MULTILINESTRING, "multilinestring"),
        (GeometryType::GEOM_MULTIPOLYGON, "multipolygon"),
        (GeometryType::GEOM_GEOMETRYCOLLECTION, "geomcollection"),
    ];
    NAMES
        .iter()
        .find(|(t, _)| *t as u8 == code)
        .map_or("geometry", |(_, n)| n)
}

/// Describes the table a table map maps. `flavor` is the server that wrote it (MySQL and
/// MariaDB count character-set entries differently for GEOMETRY and VECTOR columns).
///
/// # Errors
/// Unknown or unsupported column types, malformed column or optional metadata.
pub fn describe(map: &TableMapEvent<'_>, flavor: Flavor) -> Result<MapTable, TableMapError> {
    describe_inner(map, flavor, None)
}

/// Like [`describe`], but string (and ENUM/SET) columns whose character set the map does not
/// carry (MySQL 5.7 writes no optional metadata; MINIMAL has no ENUM/SET character sets) are
/// taken to be in `charset` (a MySQL name: `utf8mb4`, `latin1`, `binary`...). That is the
/// caller's assumption, e.g. the database default from its `CREATE DATABASE`;
/// [`Present::charsets`] still says whether the map carried any. Character sets the map does
/// carry win.
///
/// # Errors
/// As [`describe`].
pub fn describe_assuming(
    map: &TableMapEvent<'_>,
    flavor: Flavor,
    charset: &str,
) -> Result<MapTable, TableMapError> {
    describe_inner(map, flavor, Some(charset))
}

fn describe_inner(
    map: &TableMapEvent<'_>,
    flavor: Flavor,
    assumed_charset: Option<&str>,
) -> Result<MapTable, TableMapError> {
    use ColumnType::*;
    let table = SourceName::new(
        map.database_name().into_owned(),
        map.table_name().into_owned(),
    );
    let n = map.columns_count() as usize;
    let mut types = Vec::with_capacity(n);
    for i in 0..n {
        let ty = match map.get_column_type(i) {
            Ok(Some(t)) => t,
            _ => {
                let code = map
                    .get_raw_column_type(i)
                    .map_or_else(|e| e.0, |t| t.map_or(0, |t| t as u8));
                return Err(TableMapError::UnknownType {
                    table,
                    column: i,
                    code,
                });
            }
        };
        types.push(ty);
    }
    let o = read_optional(map, &types, flavor, &table)?;
    let n_numeric = types.iter().filter(|t| t.is_numeric_type()).count();
    let n_charset = types.iter().filter(|t| takes_charset(**t, flavor)).count();
    let n_enum = types.iter().filter(|t| **t == MYSQL_TYPE_ENUM).count();
    let n_set = types.iter().filter(|t| **t == MYSQL_TYPE_SET).count();
    let n_enum_set = n_enum + n_set;
    let n_geometry = types.iter().filter(|t| **t == MYSQL_TYPE_GEOMETRY).count();
    let n_vector = types.iter().filter(|t| **t == MYSQL_TYPE_VECTOR).count();
    // SIGNEDNESS is a bitmap padded to whole bytes; mysql_common trims it to the numeric count.
    check_count(&o.unsigned, n_numeric, "SIGNEDNESS", &table)?;
    check_count(&o.charsets, n_charset, "column character sets", &table)?;
    check_count(
        &o.enum_set_charsets,
        n_enum_set,
        "ENUM/SET character sets",
        &table,
    )?;
    check_count(&o.names, n, "COLUMN_NAME", &table)?;
    check_count(&o.enum_values, n_enum, "ENUM_STR_VALUE", &table)?;
    check_count(&o.set_values, n_set, "SET_STR_VALUE", &table)?;
    check_count(&o.geometry, n_geometry, "GEOMETRY_TYPE", &table)?;
    check_count(&o.dimensions, n_vector, "VECTOR_DIMENSIONALITY", &table)?;
    check_count(&o.visible, n, "COLUMN_VISIBILITY", &table)?;
    if let Some(pk) = &o.primary_key {
        if let Some((c, _)) = pk.iter().find(|(c, _)| *c >= n) {
            return Err(TableMapError::OptionalMetadata {
                table,
                detail: format!("primary key names column {c} of {n}"),
            });
        }
    }

    let nullable = map.null_bitmask();
    let (mut numeric_i, mut charset_i, mut enum_set_i, mut enum_i, mut set_i) = (0, 0, 0, 0, 0);
    let (mut geometry_i, mut vector_i) = (0, 0);
    let mut columns = Vec::with_capacity(n);
    for (i, ty) in types.iter().copied().enumerate() {
        let meta = map.get_column_metadata(i).unwrap_or(&[]);
        let meta_err = |detail: &str| TableMapError::ColumnMetadata {
            table: table.clone(),
            column: i,
            detail: detail.to_string(),
        };
        let unsigned = if ty.is_numeric_type() {
            numeric_i += 1;
            o.unsigned
                .as_ref()
                .is_some_and(|u| u.get(numeric_i - 1).copied().unwrap_or(false))
        } else {
            false
        };
        let charset_id = if takes_charset(ty, flavor) {
            charset_i += 1;
            o.charsets.as_ref().map(|c| c[charset_i - 1])
        } else if ty.is_enum_or_set_type() {
            enum_set_i += 1;
            o.enum_set_charsets.as_ref().map(|c| c[enum_set_i - 1])
        } else {
            None
        };
        let (binary, charset) = match (charset_id, assumed_charset) {
            (Some(id), _) => (id == 63, (id != 63).then(|| charset_text(id))),
            (None, Some(name)) if takes_charset(ty, flavor) || ty.is_enum_or_set_type() => (
                name == "binary",
                (name != "binary").then(|| name.to_string()),
            ),
            (None, _) => (false, None),
        };
        // Characters from bytes, when the charset (hence bytes per character) is known.
        let chars = |bytes: u64| -> Option<u64> {
            if binary {
                Some(bytes)
            } else {
                charset.as_deref().map(|c| bytes / max_bytes_per_char(c))
            }
        };
        let mut col = SourceColumn {
            name: o
                .names
                .as_ref()
                .map_or_else(|| format!("@{}", i + 1), |names| names[i].clone()),
            nullable: nullable.get(i).is_some_and(|b| *b),
            unsigned,
            invisible: o.visible.as_ref().is_some_and(|v| !v[i]),
            ..Default::default()
        };
        let sign = if unsigned { " unsigned" } else { "" };
        let (data_type, column_type): (&str, String) = match ty {
            MYSQL_TYPE_TINY => ("tinyint", format!("tinyint{sign}")),
            MYSQL_TYPE_SHORT => ("smallint", format!("smallint{sign}")),
            MYSQL_TYPE_INT24 => ("mediumint", format!("mediumint{sign}")),
            MYSQL_TYPE_LONG => ("int", format!("int{sign}")),
            MYSQL_TYPE_LONGLONG => ("bigint", format!("bigint{sign}")),
            MYSQL_TYPE_NEWDECIMAL => {
                let [p, s] = meta else {
                    return Err(meta_err("DECIMAL needs precision and scale"));
                };
                col.numeric_precision = Some(u32::from(*p));
                col.numeric_scale = Some(u32::from(*s));
                ("decimal", format!("decimal({p},{s}){sign}"))
            }
            MYSQL_TYPE_FLOAT => ("float", format!("float{sign}")),
            MYSQL_TYPE_DOUBLE => ("double", format!("double{sign}")),
            MYSQL_TYPE_BIT => {
                let [bits, bytes] = meta else {
                    return Err(meta_err("BIT needs its width"));
                };
                let width = u32::from(*bytes) * 8 + u32::from(*bits);
                col.numeric_precision = Some(width);
                ("bit", format!("bit({width})"))
            }
            MYSQL_TYPE_YEAR => ("year", "year".into()),
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => ("date", "date".into()),
            MYSQL_TYPE_DATETIME | MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIME => {
                // Pre-5.6 formats: no fractional seconds.
                col.datetime_precision = Some(0);
                let name = match ty {
                    MYSQL_TYPE_DATETIME => "datetime",
                    MYSQL_TYPE_TIMESTAMP => "timestamp",
                    _ => "time",
                };
                (name, name.to_string())
            }
            MYSQL_TYPE_DATETIME2 | MYSQL_TYPE_TIMESTAMP2 | MYSQL_TYPE_TIME2 => {
                let [fsp] = meta else {
                    return Err(meta_err("temporal type needs its precision"));
                };
                if *fsp > 6 {
                    return Err(meta_err("fractional-second precision above 6"));
                }
                col.datetime_precision = Some(u32::from(*fsp));
                let name = match ty {
                    MYSQL_TYPE_DATETIME2 => "datetime",
                    MYSQL_TYPE_TIMESTAMP2 => "timestamp",
                    _ => "time",
                };
                let decl = if *fsp == 0 {
                    name.to_string()
                } else {
                    format!("{name}({fsp})")
                };
                (name, decl)
            }
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
                let bytes = match meta {
                    [a, b] => u64::from(u16::from_le_bytes([*a, *b])),
                    [] => 0,
                    _ => return Err(meta_err("VARCHAR needs its length")),
                };
                col.char_max_length = chars(bytes).filter(|_| bytes > 0);
                col.charset = charset.clone();
                let name = if binary { "varbinary" } else { "varchar" };
                let decl = col
                    .char_max_length
                    .map_or_else(|| name.to_string(), |n| format!("{name}({n})"));
                (name, decl)
            }
            MYSQL_TYPE_STRING => {
                let [b0, b1] = meta else {
                    return Err(meta_err("CHAR needs its length"));
                };
                // Lengths above 255 borrow two bits of the type byte (MySQL bug #37426).
                let bytes = if b0 & 0x30 != 0x30 {
                    u64::from(*b1) | (u64::from((b0 & 0x30) ^ 0x30) << 4)
                } else {
                    u64::from(*b1)
                };
                col.char_max_length = chars(bytes);
                col.charset = charset.clone();
                let name = if binary { "binary" } else { "char" };
                let decl = col
                    .char_max_length
                    .map_or_else(|| name.to_string(), |n| format!("{name}({n})"));
                (name, decl)
            }
            MYSQL_TYPE_ENUM | MYSQL_TYPE_SET => {
                let is_enum = ty == MYSQL_TYPE_ENUM;
                let raw = if is_enum {
                    enum_i += 1;
                    o.enum_values.as_ref().map(|v| &v[enum_i - 1])
                } else {
                    set_i += 1;
                    o.set_values.as_ref().map(|v| &v[set_i - 1])
                };
                col.charset = charset.clone();
                let decoder = match &charset {
                    Some(c) => Charset::from_mysql(c),
                    None => Some(Charset::Utf8),
                };
                if let Some(raw) = raw {
                    for m in raw {
                        let text = match decoder.map(|d| d.decode(m)) {
                            Some(Ok(t)) => t.into_owned(),
                            _ => return Err(meta_err("member name not decodable in its charset")),
                        };
                        col.members.push(text);
                    }
                }
                let name = if is_enum { "enum" } else { "set" };
                let decl = format!(
                    "{name}({})",
                    col.members
                        .iter()
                        .map(|m| quote_member(m))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                (name, decl)
            }
            MYSQL_TYPE_BLOB
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB => {
                let [pack] = meta else {
                    return Err(meta_err("BLOB needs its pack length"));
                };
                let (blob, text, max) = match pack {
                    1 => ("tinyblob", "tinytext", 255u64),
                    2 => ("blob", "text", 65_535),
                    3 => ("mediumblob", "mediumtext", 16_777_215),
                    4 => ("longblob", "longtext", 4_294_967_295),
                    _ => return Err(meta_err("BLOB pack length must be 1 to 4")),
                };
                col.char_max_length = Some(max);
                col.charset = charset.clone();
                let name = if binary { blob } else { text };
                (name, name.to_string())
            }
            MYSQL_TYPE_JSON => {
                col.is_json = true;
                ("json", "json".into())
            }
            MYSQL_TYPE_GEOMETRY => {
                geometry_i += 1;
                let name = o
                    .geometry
                    .as_ref()
                    .map_or("geometry", |g| geometry_name(g[geometry_i - 1]));
                (name, name.to_string())
            }
            MYSQL_TYPE_VECTOR => {
                vector_i += 1;
                match o.dimensions.as_ref().map(|d| d[vector_i - 1]) {
                    Some(d) => {
                        col.char_max_length = Some(d * 4);
                        ("vector", format!("vector({d})"))
                    }
                    None => ("vector", "vector".into()),
                }
            }
            MYSQL_TYPE_DECIMAL => {
                return Err(TableMapError::Unsupported {
                    table,
                    column: i,
                    ty: "pre-5.0 DECIMAL",
                })
            }
            MYSQL_TYPE_NULL | MYSQL_TYPE_TYPED_ARRAY | MYSQL_TYPE_UNKNOWN => {
                return Err(TableMapError::Unsupported {
                    table,
                    column: i,
                    ty: "NULL/typed array/unknown",
                })
            }
        };
        col.data_type = data_type.to_string();
        col.column_type = column_type;
        columns.push(col);
    }
    Ok(MapTable {
        name: table,
        columns,
        primary_key: o.primary_key.clone().unwrap_or_default(),
        present: Present {
            signedness: o.unsigned.is_some(),
            charsets: o.charsets.is_some(),
            column_names: o.names.is_some(),
            enum_set_values: o.enum_values.is_some() || o.set_values.is_some(),
            primary_key: o.primary_key.is_some(),
            visibility: o.visible.is_some(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collation_ids_map_to_charsets() {
        assert_eq!(charset_name(8), Some("latin1"));
        assert_eq!(charset_name(48), Some("latin1"));
        assert_eq!(charset_name(33), Some("utf8mb3"));
        assert_eq!(charset_name(83), Some("utf8mb3"));
        assert_eq!(charset_name(192), Some("utf8mb3"));
        assert_eq!(charset_name(45), Some("utf8mb4"));
        assert_eq!(charset_name(46), Some("utf8mb4"));
        assert_eq!(charset_name(224), Some("utf8mb4"));
        assert_eq!(charset_name(255), Some("utf8mb4"));
        assert_eq!(charset_name(305), Some("utf8mb4"));
        assert_eq!(charset_name(309), Some("utf8mb4"));
        assert_eq!(charset_name(63), Some("binary"));
        assert_eq!(charset_name(11), Some("ascii"));
        assert_eq!(charset_name(65), Some("ascii"));
        assert_eq!(charset_name(56), Some("utf16le"));
        // MariaDB nopad collations: base + 1024.
        assert_eq!(charset_name(1032), Some("latin1"));
        assert_eq!(charset_name(1070), Some("utf8mb4"));
        assert_eq!(charset_name(1057), Some("utf8mb3"));
        assert_eq!(charset_name(17), None, "unassigned id");
        assert_eq!(charset_name(4000), None);
        assert_eq!(charset_text(4000), "collation#4000");
    }

    #[test]
    fn bytes_per_character() {
        assert_eq!(max_bytes_per_char("utf8mb4"), 4);
        assert_eq!(max_bytes_per_char("utf8mb3"), 3);
        assert_eq!(max_bytes_per_char("latin1"), 1);
        assert_eq!(max_bytes_per_char("ucs2"), 2);
    }

    #[test]
    fn default_charset_exceptions_land_on_their_index() {
        assert_eq!(expand_default(33, vec![(2, 63)], 4), vec![33, 33, 63, 33]);
        assert_eq!(expand_default(255, vec![], 0), Vec::<u16>::new());
    }

    #[test]
    fn charset_taking_types_depend_on_the_server() {
        assert!(takes_charset(ColumnType::MYSQL_TYPE_VECTOR, Flavor::MySql));
        assert!(!takes_charset(
            ColumnType::MYSQL_TYPE_GEOMETRY,
            Flavor::MySql
        ));
        assert!(takes_charset(
            ColumnType::MYSQL_TYPE_GEOMETRY,
            Flavor::MariaDb
        ));
        assert!(!takes_charset(ColumnType::MYSQL_TYPE_ENUM, Flavor::MySql));
        assert!(!takes_charset(ColumnType::MYSQL_TYPE_JSON, Flavor::MySql));
    }

    #[test]
    fn enum_members_are_quoted_in_declarations() {
        assert_eq!(quote_member("it's"), "'it''s'");
        assert_eq!(geometry_name(1), "point");
        assert_eq!(geometry_name(99), "geometry");
    }
}
