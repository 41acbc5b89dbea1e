//! The type matrix against a live MariaDB: every column type with its edge values is inserted,
//! updated and deleted on the source, and PostgreSQL is compared value by value with the exact
//! text each value must have — once through the binlog, once through the backfill (rows written
//! before ferry started) followed by streamed changes.

mod common;

use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

/// One column: its DDL, three source values (SQL expressions: row 1, row 2, row 1 after the
/// update) and the exact PostgreSQL text of each (`col::text`). `MD5` compares `md5()` instead,
/// for values too large to spell out.
struct Col {
    name: &'static str,
    ddl: &'static str,
    values: [&'static str; 3],
    expect: [Expect; 3],
}

#[derive(Clone, Copy)]
enum Expect {
    Text(&'static str),
    /// Compare PostgreSQL `md5(col)` with MariaDB `MD5(col)` on the same row.
    Md5,
}

use Expect::{Md5, Text as T};

fn point_hex(x: f64, y: f64) -> String {
    let mut b = vec![0u8, 0, 0, 0, 1, 1, 0, 0, 0];
    b.extend_from_slice(&x.to_le_bytes());
    b.extend_from_slice(&y.to_le_bytes());
    format!("\\x{}", hex::encode(b))
}

fn matrix() -> Vec<Col> {
    vec![
        Col {
            name: "ti",
            ddl: "TINYINT",
            values: ["-128", "127", "0"],
            expect: [T("-128"), T("127"), T("0")],
        },
        Col {
            name: "tiu",
            ddl: "TINYINT UNSIGNED",
            values: ["0", "255", "1"],
            expect: [T("0"), T("255"), T("1")],
        },
        Col {
            name: "b1",
            ddl: "TINYINT(1)",
            values: ["0", "1", "2"],
            expect: [T("0"), T("1"), T("2")],
        },
        Col {
            name: "si",
            ddl: "SMALLINT",
            values: ["-32768", "32767", "5"],
            expect: [T("-32768"), T("32767"), T("5")],
        },
        Col {
            name: "siu",
            ddl: "SMALLINT UNSIGNED",
            values: ["0", "65535", "7"],
            expect: [T("0"), T("65535"), T("7")],
        },
        Col {
            name: "mi",
            ddl: "MEDIUMINT",
            values: ["-8388608", "8388607", "-1"],
            expect: [T("-8388608"), T("8388607"), T("-1")],
        },
        Col {
            name: "miu",
            ddl: "MEDIUMINT UNSIGNED",
            values: ["0", "16777215", "9"],
            expect: [T("0"), T("16777215"), T("9")],
        },
        Col {
            name: "i",
            ddl: "INT",
            values: ["-2147483648", "2147483647", "-5"],
            expect: [T("-2147483648"), T("2147483647"), T("-5")],
        },
        Col {
            name: "iu",
            ddl: "INT UNSIGNED",
            values: ["0", "4294967295", "10"],
            expect: [T("0"), T("4294967295"), T("10")],
        },
        Col {
            name: "bi",
            ddl: "BIGINT",
            values: ["-9223372036854775808", "9223372036854775807", "-1"],
            expect: [T("-9223372036854775808"), T("9223372036854775807"), T("-1")],
        },
        Col {
            name: "biu",
            ddl: "BIGINT UNSIGNED",
            values: ["0", "18446744073709551615", "9223372036854775808"],
            expect: [T("0"), T("18446744073709551615"), T("9223372036854775808")],
        },
        Col {
            name: "d65",
            ddl: "DECIMAL(65,30)",
            values: [
                "-99999999999999999999999999999999999.999999999999999999999999999999",
                "99999999999999999999999999999999999.999999999999999999999999999999",
                "0.000000000000000000000000000001",
            ],
            expect: [
                T("-99999999999999999999999999999999999.999999999999999999999999999999"),
                T("99999999999999999999999999999999999.999999999999999999999999999999"),
                T("0.000000000000000000000000000001"),
            ],
        },
        Col {
            name: "d2",
            ddl: "DECIMAL(12,2)",
            values: ["-0.50", "9999999999.99", "0"],
            expect: [T("-0.50"), T("9999999999.99"), T("0.00")],
        },
        Col {
            name: "f",
            ddl: "FLOAT",
            values: ["0.1", "1.17549435e-38", "-1.5"],
            expect: [T("0.1"), T("1.1754944e-38"), T("-1.5")],
        },
        Col {
            name: "dbl",
            ddl: "DOUBLE",
            values: ["2.2250738585072014e-308", "1.7976931348623157e308", "0.1"],
            expect: [
                T("2.2250738585072014e-308"),
                T("1.7976931348623157e+308"),
                T("0.1"),
            ],
        },
        Col {
            name: "bt",
            ddl: "BIT(10)",
            values: ["b'0'", "b'1111111111'", "b'1000000001'"],
            expect: [T("0000000000"), T("1111111111"), T("1000000001")],
        },
        Col {
            name: "bt64",
            ddl: "BIT(64)",
            values: ["b'0'", "0xFFFFFFFFFFFFFFFF", "b'1'"],
            expect: [
                T("0000000000000000000000000000000000000000000000000000000000000000"),
                T("1111111111111111111111111111111111111111111111111111111111111111"),
                T("0000000000000000000000000000000000000000000000000000000000000001"),
            ],
        },
        Col {
            name: "dt",
            ddl: "DATE",
            values: ["'1000-01-01'", "'9999-12-31'", "'2024-02-29'"],
            expect: [T("1000-01-01"), T("9999-12-31"), T("2024-02-29")],
        },
        Col {
            name: "dtm",
            ddl: "DATETIME(6)",
            values: [
                "'1000-01-01 00:00:00.000000'",
                "'9999-12-31 23:59:59.999999'",
                "'2024-02-29 12:34:56.000001'",
            ],
            expect: [
                T("1000-01-01 00:00:00"),
                T("9999-12-31 23:59:59.999999"),
                T("2024-02-29 12:34:56.000001"),
            ],
        },
        Col {
            name: "dt0",
            ddl: "DATETIME",
            values: [
                "'2000-01-01 00:00:00'",
                "'2024-12-31 23:59:59'",
                "'1999-06-15 08:30:00'",
            ],
            expect: [
                T("2000-01-01 00:00:00"),
                T("2024-12-31 23:59:59"),
                T("1999-06-15 08:30:00"),
            ],
        },
        Col {
            name: "ts",
            ddl: "TIMESTAMP(3) NULL",
            values: [
                "'1970-01-01 00:00:01.000'",
                "'2038-01-19 03:14:07.999'",
                "'2024-06-01 12:00:00.5'",
            ],
            expect: [
                T("1970-01-01 00:00:01+00"),
                T("2038-01-19 03:14:07.999+00"),
                T("2024-06-01 12:00:00.5+00"),
            ],
        },
        Col {
            name: "tm",
            ddl: "TIME(6)",
            values: [
                "'-838:59:59.000000'",
                "'838:59:59.000000'",
                "'-00:00:00.000001'",
            ],
            expect: [T("-838:59:59"), T("838:59:59"), T("-00:00:00.000001")],
        },
        Col {
            name: "tm1",
            ddl: "TIME(1)",
            values: ["'-00:00:01.5'", "'-12:00:00.1'", "'00:00:00.1'"],
            expect: [T("-00:00:01.5"), T("-12:00:00.1"), T("00:00:00.1")],
        },
        Col {
            name: "tm2",
            ddl: "TIME(2)",
            values: ["'-00:00:01.50'", "'-838:59:58.99'", "'-00:00:00.01'"],
            expect: [T("-00:00:01.5"), T("-838:59:58.99"), T("-00:00:00.01")],
        },
        Col {
            name: "tm4",
            ddl: "TIME(4)",
            values: ["'-00:00:01.0001'", "'-01:00:00.5'", "'-00:00:00.0001'"],
            expect: [T("-00:00:01.0001"), T("-01:00:00.5"), T("-00:00:00.0001")],
        },
        Col {
            name: "y",
            ddl: "YEAR",
            values: ["1901", "2155", "0"],
            expect: [T("1901"), T("2155"), T("0")],
        },
        Col {
            name: "c",
            ddl: "CHAR(10)",
            values: ["'héllo'", "'ab  '", "''"],
            expect: [T("héllo"), T("ab"), T("")],
        },
        Col {
            name: "vc",
            ddl: "VARCHAR(255)",
            values: ["'🚀 emoji'", "''", "REPEAT('x', 255)"],
            expect: [T("🚀 emoji"), T(""), Md5],
        },
        Col {
            name: "l1",
            ddl: "VARCHAR(20) CHARACTER SET latin1",
            values: ["'café €'", "'ÿ'", "'plain'"],
            expect: [T("café €"), T("ÿ"), T("plain")],
        },
        Col {
            name: "asc1",
            ddl: "VARCHAR(10) CHARACTER SET ascii",
            values: ["'abc'", "''", "'~'"],
            expect: [T("abc"), T(""), T("~")],
        },
        Col {
            name: "u3",
            ddl: "VARCHAR(10) CHARACTER SET utf8mb3",
            values: ["'ü'", "'x'", "'ñ'"],
            expect: [T("ü"), T("x"), T("ñ")],
        },
        Col {
            name: "tx",
            ddl: "TEXT",
            values: [
                "'line1\\nline2\\ttab \\\\ backslash'",
                "''",
                "REPEAT('é', 20000)",
            ],
            expect: [T("line1\nline2\ttab \\ backslash"), T(""), Md5],
        },
        Col {
            name: "mtx",
            ddl: "MEDIUMTEXT",
            values: ["REPEAT('a', 1000000)", "'b'", "'c'"],
            expect: [Md5, T("b"), T("c")],
        },
        Col {
            name: "bn",
            ddl: "BINARY(4)",
            values: ["0x0102", "0xFFFFFFFF", "''"],
            expect: [T("\\x01020000"), T("\\xffffffff"), T("\\x00000000")],
        },
        Col {
            name: "vb",
            ddl: "VARBINARY(10)",
            values: ["0x00FF", "''", "0x00"],
            expect: [T("\\x00ff"), T("\\x"), T("\\x00")],
        },
        Col {
            name: "bl",
            ddl: "BLOB",
            values: ["0x000102", "X''", "0xDEADBEEF"],
            expect: [T("\\x000102"), T("\\x"), T("\\xdeadbeef")],
        },
        Col {
            name: "lbl",
            ddl: "LONGBLOB",
            values: ["REPEAT(0xAB, 3000000)", "0x01", "0x02"],
            expect: [Md5, T("\\x01"), T("\\x02")],
        },
        Col {
            name: "e",
            ddl: "ENUM('a','b','c')",
            values: ["'a'", "'c'", "'b'"],
            expect: [T("a"), T("c"), T("b")],
        },
        Col {
            name: "s",
            ddl: "SET('x','y','z')",
            values: ["''", "'z,x'", "'x,y,z'"],
            expect: [T(""), T("x,z"), T("x,y,z")],
        },
        Col {
            name: "j",
            ddl: "JSON",
            values: [
                "'{\"b\":1,\"a\":[1,2.50,\"x\"],\"n\":null}'",
                "'[]'",
                "'\"str\"'",
            ],
            expect: [
                T("{\"a\": [1, 2.50, \"x\"], \"b\": 1, \"n\": null}"),
                T("[]"),
                T("\"str\""),
            ],
        },
        // MariaDB's own types; the binlog drops their trailing zero bytes (as for BINARY(n)).
        Col {
            name: "uid",
            ddl: "UUID",
            values: [
                "'6CCD780C-BABA-1026-9564-5B8C656024DB'",
                "'11223344-5566-7788-99aa-bbccddeeff00'",
                "'00000000-0000-0000-0000-000000000000'",
            ],
            expect: [
                T("6ccd780c-baba-1026-9564-5b8c656024db"),
                T("11223344-5566-7788-99aa-bbccddeeff00"),
                T("00000000-0000-0000-0000-000000000000"),
            ],
        },
        Col {
            name: "ip4",
            ddl: "INET4",
            values: ["'10.1.2.0'", "'255.255.255.255'", "'0.0.0.0'"],
            // `inet::text` spells the netmask; the CHECK keeps it at /32 and /128.
            expect: [T("10.1.2.0/32"), T("255.255.255.255/32"), T("0.0.0.0/32")],
        },
        Col {
            name: "ip6",
            ddl: "INET6",
            values: ["'2001:db8::'", "'::ffff:1.2.3.4'", "'::'"],
            expect: [T("2001:db8::/128"), T("::ffff:1.2.3.4/128"), T("::/128")],
        },
        Col {
            name: "geo",
            ddl: "POINT",
            values: [
                "ST_GeomFromText('POINT(1 2)')",
                "ST_GeomFromText('POINT(-1.5 0)')",
                "ST_GeomFromText('POINT(0 0)')",
            ],
            expect: [Text(""), Text(""), Text("")],
        },
    ]
}

use Expect::Text;

const EXTRA_DDL: &str =
    ", g BIGINT AS (i * 2) STORED, v BIGINT AS (i + 1) VIRTUAL, inv INT INVISIBLE DEFAULT 7";

fn create_sql(cols: &[Col]) -> String {
    let defs: Vec<String> = cols
        .iter()
        .map(|c| format!("`{}` {}", c.name, c.ddl))
        .collect();
    format!(
        "CREATE TABLE matrix (id INT PRIMARY KEY, {}{EXTRA_DDL})",
        defs.join(", ")
    )
}

fn insert_sql(cols: &[Col], id: i32, which: usize) -> String {
    let names: Vec<String> = cols.iter().map(|c| format!("`{}`", c.name)).collect();
    let values: Vec<&str> = cols.iter().map(|c| c.values[which]).collect();
    format!(
        "INSERT INTO matrix (id, {}) VALUES ({id}, {})",
        names.join(", "),
        values.join(", ")
    )
}

fn update_sql(cols: &[Col], id: i32) -> String {
    let sets: Vec<String> = cols
        .iter()
        .map(|c| format!("`{}` = {}", c.name, c.values[2]))
        .collect();
    format!("UPDATE matrix SET {} WHERE id = {id}", sets.join(", "))
}

/// Expected text for geometry values (computed, not typed by hand).
fn geo_expect(which: usize) -> String {
    match which {
        0 => point_hex(1.0, 2.0),
        1 => point_hex(-1.5, 0.0),
        _ => point_hex(0.0, 0.0),
    }
}

/// Compares row `id` column by column; `which` selects the expected values.
async fn check_row(db: &TestDb, my: &mut mysql_async::Conn, cols: &[Col], id: i32, which: usize) {
    let pg = db.pg().await;
    let mut failures = Vec::new();
    for c in cols {
        let expect = c.expect[which];
        let row = pg
            .query_opt(
                &format!(
                    "SELECT \"{}\"::text, md5(\"{}\"::text) FROM matrix WHERE id = $1",
                    c.name, c.name
                ),
                &[&id],
            )
            .await
            .unwrap_or_else(|e| panic!("query column {}: {e}", c.name))
            .unwrap_or_else(|| panic!("row {id} missing in PostgreSQL"));
        let got: Option<String> = row.get(0);
        match expect {
            Text(_) if c.name == "geo" => {
                let want = geo_expect(which);
                if got.as_deref() != Some(want.as_str()) {
                    failures.push(format!("{}: got {got:?}, want {want:?}", c.name));
                }
            }
            Text(want) => {
                if got.as_deref() != Some(want) {
                    failures.push(format!(
                        "{}: got {:?}, want {want:?}",
                        c.name,
                        got.map(|g| g.chars().take(80).collect::<String>())
                    ));
                }
            }
            Md5 => {
                // md5 of the raw bytes on both sides (bytea: decode PostgreSQL's hex text).
                let pg_md5: Option<String> = if c.ddl.contains("BLOB") || c.ddl.contains("BINARY") {
                    pg.query_one(
                        &format!("SELECT md5(\"{}\") FROM matrix WHERE id = $1", c.name),
                        &[&id],
                    )
                    .await
                    .expect("md5")
                    .get(0)
                } else {
                    row.get(1)
                };
                let my_md5: Option<String> = my
                    .query_first(format!(
                        "SELECT MD5(`{}`) FROM matrix WHERE id = {id}",
                        c.name
                    ))
                    .await
                    .expect("mysql md5");
                if pg_md5 != my_md5 || pg_md5.is_none() {
                    failures.push(format!("{}: md5 {pg_md5:?} != source {my_md5:?}", c.name));
                }
            }
        }
    }
    // Generated and invisible columns carry the source's computed values.
    let r = pg
        .query_one(
            "SELECT g::text, v::text, inv::text, i::bigint FROM matrix WHERE id = $1",
            &[&id],
        )
        .await
        .expect("generated columns");
    let i: Option<i64> = r.get(3);
    let g: Option<String> = r.get(0);
    let v: Option<String> = r.get(1);
    if g != i.map(|i| (i * 2).to_string()) || v != i.map(|i| (i + 1).to_string()) {
        failures.push(format!("generated: g={g:?} v={v:?} for i={i:?}"));
    }
    if r.get::<_, Option<String>>(2).as_deref() != Some("7") {
        failures.push("invisible column inv is not 7".into());
    }
    assert!(
        failures.is_empty(),
        "row {id} differs:\n{}",
        failures.join("\n")
    );
}

async fn check_null_row(db: &TestDb, cols: &[Col]) {
    let pg = db.pg().await;
    for c in cols {
        let got: Option<String> = pg
            .query_one(
                &format!("SELECT \"{}\"::text FROM matrix WHERE id = 3", c.name),
                &[],
            )
            .await
            .expect("row 3")
            .get(0);
        assert_eq!(got, None, "column {} of the all-NULL row", c.name);
    }
}

async fn prepare(db: &TestDb) -> (mysql_async::Conn, Vec<Col>) {
    let mut my = db.my().await;
    let cols = matrix();
    my.query_drop("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")
        .await
        .expect("strict");
    my.query_drop(create_sql(&cols))
        .await
        .expect("matrix table");
    (my, cols)
}

async fn write_rows(my: &mut mysql_async::Conn, cols: &[Col]) {
    my.query_drop(insert_sql(cols, 1, 0)).await.expect("row 1");
    my.query_drop(insert_sql(cols, 2, 1)).await.expect("row 2");
    my.query_drop("INSERT INTO matrix (id) VALUES (3)")
        .await
        .expect("row 3");
}

async fn change_rows(my: &mut mysql_async::Conn, cols: &[Col]) {
    my.query_drop(update_sql(cols, 1))
        .await
        .expect("update row 1");
    my.query_drop("DELETE FROM matrix WHERE id = 2")
        .await
        .expect("delete row 2");
}

async fn assert_after_changes(db: &TestDb, my: &mut mysql_async::Conn, cols: &[Col]) {
    check_row(db, my, cols, 1, 2).await;
    check_null_row(db, cols).await;
    let n: i64 = db
        .pg()
        .await
        .query_one("SELECT count(*) FROM matrix WHERE id = 2", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "row 2 was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_arrives_exactly_through_the_binlog() {
    let db = TestDb::new("types").await;
    let (mut my, cols) = prepare(&db).await;
    let start = db.start_position().await;
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    write_rows(&mut my, &cols).await;
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    check_row(&db, &mut my, &cols, 1, 0).await;
    check_row(&db, &mut my, &cols, 2, 1).await;
    check_null_row(&db, &cols).await;
    change_rows(&mut my, &cols).await;
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert_after_changes(&db, &mut my, &cols).await;
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_arrives_exactly_through_the_backfill() {
    let db = TestDb::new("typesbf").await;
    let (mut my, cols) = prepare(&db).await;
    write_rows(&mut my, &cols).await;
    let config = db.config_backfill("main", "chunk_rows = 2", "");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    check_row(&db, &mut my, &cols, 1, 0).await;
    check_row(&db, &mut my, &cols, 2, 1).await;
    check_null_row(&db, &cols).await;
    change_rows(&mut my, &cols).await;
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert_after_changes(&db, &mut my, &cols).await;
    db.cleanup_dir();
}

/// A UUID key (MariaDB orders versions 1-5 differently from PostgreSQL) and an INET6 column:
/// copied, streamed and verified equal; PostgreSQL refuses an address INET6 cannot hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uuid_keys_and_inet_columns_copy_stream_and_verify() {
    let db = TestDb::new("uuidkey").await;
    let mut my = db.my().await;
    my.query_drop(
        "CREATE TABLE keyed (id UUID PRIMARY KEY, a INET6, b INET4 NOT NULL DEFAULT '127.0.0.1'); \
         INSERT INTO keyed (id, a) SELECT UUID(), CONCAT('2001:db8::', HEX(seq)) FROM seq_1_to_300; \
         INSERT INTO keyed (id, a) SELECT CONCAT(LPAD(HEX(seq), 8, '0'), '-0000-4000-8000-00000000000', seq % 10), '::ffff:10.0.0.1' FROM seq_1_to_200; \
         INSERT INTO keyed (id, a) VALUES ('00000000-0000-0000-0000-000000000000', NULL), ('ffffffff-ffff-ffff-ffff-ffffffffffff', '::')",
    )
    .await
    .expect("keyed table");
    let config = db.config_backfill(
        "main",
        "chunk_rows = 64",
        "[verify]\ncontinuous = false\nchunk_rows = 50\nleaf_rows = 8\n",
    );
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    my.query_drop(
        "UPDATE keyed SET a = '::1', b = '10.9.8.7' WHERE id IN (SELECT id FROM (SELECT id FROM keyed ORDER BY id LIMIT 40) x); \
         DELETE FROM keyed WHERE id = 'ffffffff-ffff-ffff-ffff-ffffffffffff'; \
         INSERT INTO keyed (id) VALUES (UUID())",
    )
    .await
    .expect("changes");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert_eq!(db.count("SELECT count(*) FROM keyed").await, 502);
    assert_eq!(
        db.count("SELECT count(*) FROM keyed WHERE a = '::1' AND b = '10.9.8.7'")
            .await,
        40
    );
    let path = config.to_str().expect("utf-8").to_string();
    let (code, out) =
        tokio::task::spawn_blocking(move || ferry_cmd(&["verify", "--config", &path]))
            .await
            .expect("verify ran");
    assert_eq!(code, 0, "verify finds both sides equal:\n{out}");
    let pg = db.pg().await;
    let e = pg
        .execute(
            "INSERT INTO keyed (id, a) VALUES ('11111111-1111-4111-8111-111111111111', '1.2.3.4')",
            &[],
        )
        .await
        .expect_err("an IPv4 address in an INET6 column");
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
        "{e}"
    );
    db.cleanup_dir();
}
