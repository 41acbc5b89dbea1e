//! A random mixed workload over two tables (`accounts` with a unique key and an ENUM/SET,
//! `lines` with a composite key) and the row-for-row comparison of MariaDB and PostgreSQL.
#![allow(dead_code)]

use mysql_async::prelude::Queryable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{mysql_rows, pg_rows, TestDb};

pub const SCHEMA: &str = "
CREATE TABLE accounts (
  id INT PRIMARY KEY,
  email VARCHAR(100) NOT NULL,
  name VARCHAR(50),
  balance DECIMAL(12,2),
  updated DATETIME(6),
  flags SET('x','y','z') NOT NULL DEFAULT '',
  kind ENUM('a','b','c'),
  UNIQUE KEY email (email)
);
CREATE TABLE `lines` (
  acct INT NOT NULL,
  n INT NOT NULL,
  qty SMALLINT UNSIGNED,
  note TEXT,
  PRIMARY KEY (acct, n)
);";

pub const MY_ACCOUNTS: &str = "SELECT id, email, name, CAST(balance AS CHAR), \
    DATE_FORMAT(updated, '%Y-%m-%d %H:%i:%s.%f'), flags, kind FROM accounts";
pub const PG_ACCOUNTS: &str = "SELECT id::text, email, name, balance::text, \
    to_char(updated, 'YYYY-MM-DD HH24:MI:SS.US'), flags, kind FROM accounts";
pub const MY_LINES: &str = "SELECT acct, n, qty, note FROM `lines`";
pub const PG_LINES: &str = "SELECT acct::text, n::text, qty::text, note FROM lines";

/// One random statement against the two tables. Returns the SQL.
pub fn random_statement(rng: &mut StdRng, next_id: &mut i64) -> String {
    let id = rng.gen_range(1..=(*next_id).max(2));
    match rng.gen_range(0..100) {
        0..=29 => {
            *next_id += 1;
            let n = *next_id;
            format!(
                "INSERT INTO accounts VALUES ({n}, 'u{n}@x.test', 'name {n}', {}.{:02}, '2024-01-{:02} 10:00:00.{:06}', '{}', '{}')",
                rng.gen_range(-9999..9999),
                rng.gen_range(0..100),
                rng.gen_range(1..28),
                rng.gen_range(0..1_000_000),
                ["", "x", "y,z", "x,y,z"][rng.gen_range(0..4)],
                ["a", "b", "c"][rng.gen_range(0..3)],
            )
        }
        30..=49 => format!(
            "UPDATE accounts SET name = {}, balance = balance + 1.25, flags = '{}', updated = NOW(6) WHERE id = {id}",
            if rng.gen_bool(0.2) { "NULL".to_string() } else { format!("'renamed {}'", rng.gen::<u16>()) },
            ["x", "z", ""][rng.gen_range(0..3)],
        ),
        50..=57 => {
            *next_id += 1;
            format!("UPDATE accounts SET id = {} WHERE id = {id}", *next_id)
        }
        58..=67 => format!("DELETE FROM accounts WHERE id = {id}"),
        68..=84 => format!(
            "INSERT INTO `lines` VALUES ({id}, {}, {}, {}) ON DUPLICATE KEY UPDATE qty = VALUES(qty), note = VALUES(note)",
            rng.gen_range(0..20),
            rng.gen_range(0..65535),
            if rng.gen_bool(0.3) { "NULL".to_string() } else { format!("'note {}'", rng.gen::<u32>()) }
        ),
        85..=92 => format!("DELETE FROM `lines` WHERE acct = {id} AND n < {}", rng.gen_range(0..10)),
        _ => format!("UPDATE `lines` SET n = n + 100 WHERE acct = {id} AND n = {}", rng.gen_range(0..20)),
    }
}

/// Runs `txns` random transactions (1–10 statements, some rolled back). Returns statements run.
pub async fn random_workload(
    conn: &mut mysql_async::Conn,
    seed: u64,
    txns: usize,
    next_id: &mut i64,
) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut statements = 0;
    for _ in 0..txns {
        let n = rng.gen_range(1..=10);
        let rollback = rng.gen_bool(0.05);
        conn.query_drop("BEGIN").await.expect("begin");
        for _ in 0..n {
            let sql = random_statement(&mut rng, next_id);
            // Duplicate keys from random PK moves are expected; MariaDB rejects the statement
            // and the transaction goes on, as an application's would.
            if conn.query_drop(&sql).await.is_ok() {
                statements += 1;
            }
        }
        conn.query_drop(if rollback { "ROLLBACK" } else { "COMMIT" })
            .await
            .expect("end transaction");
    }
    statements
}

pub async fn assert_equal(db: &TestDb) -> (usize, usize) {
    assert_equal_in(db, &db.pg().await).await
}

/// Compares MariaDB with the given PostgreSQL session (search_path on the replicated schema).
/// Two empty tables prove nothing, so both tables must hold rows; returns (accounts, lines).
pub async fn assert_equal_in(db: &TestDb, pg: &tokio_postgres::Client) -> (usize, usize) {
    let mut my = db.my().await;
    let a_my = mysql_rows(&mut my, MY_ACCOUNTS).await;
    let a_pg = pg_rows(pg, PG_ACCOUNTS).await;
    assert!(
        !a_my.is_empty(),
        "accounts is empty on the source: nothing was compared"
    );
    assert_eq!(a_my.len(), a_pg.len(), "accounts row counts differ");
    assert!(
        a_my == a_pg,
        "accounts differ: first mismatch {:?}",
        first_diff(&a_my, &a_pg)
    );
    let l_my = mysql_rows(&mut my, MY_LINES).await;
    let l_pg = pg_rows(pg, PG_LINES).await;
    assert!(
        !l_my.is_empty(),
        "lines is empty on the source: nothing was compared"
    );
    assert_eq!(l_my.len(), l_pg.len(), "lines row counts differ");
    assert!(
        l_my == l_pg,
        "lines differ: first mismatch {:?}",
        first_diff(&l_my, &l_pg)
    );
    (a_my.len(), l_my.len())
}

type Rows = [Vec<Option<String>>];

/// The first differing row position and the rows there.
pub fn first_diff(a: &Rows, b: &Rows) -> Option<(usize, String, String)> {
    (0..a.len().max(b.len()))
        .find(|i| a.get(*i) != b.get(*i))
        .map(|i| (i, format!("{:?}", a.get(i)), format!("{:?}", b.get(i))))
}
