//! Lost connections while streaming under load: ferry's binlog connection is killed on MariaDB
//! and its PostgreSQL sessions are terminated, several times each. ferry must keep running,
//! resume from its checkpoint, end equal to the source, and apply every row operation exactly
//! once (an AFTER ROW trigger on the target counts them).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

/// Local TCP ports of `pid`'s connections to `remote_port` on loopback (from /proc).
fn local_ports_to(pid: u32, remote_port: u16) -> Vec<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    l.strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !inodes.contains(f[9]) {
                continue;
            }
            let port = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|h| u16::from_str_radix(h, 16).ok())
            };
            if port(f[2]) == Some(remote_port) {
                if let Some(p) = port(f[1]) {
                    ports.push(p);
                }
            }
        }
    }
    ports
}

/// Kills ferry's binlog dump connection(s) on MariaDB; returns how many were killed.
async fn kill_binlog_connection(my: &mut mysql_async::Conn, ferry_pid: u32) -> usize {
    let ports = local_ports_to(ferry_pid, mysql_port());
    let dumps: Vec<(u64, String)> = my
        .query(
            "SELECT ID, HOST FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'",
        )
        .await
        .expect("processlist");
    let mut killed = 0;
    for (id, host) in dumps {
        let port = host.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        if port.is_some_and(|p| ports.contains(&p)) {
            // It may have ended by itself meanwhile.
            if my.query_drop(format!("KILL CONNECTION {id}")).await.is_ok() {
                killed += 1;
            }
        }
    }
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connections_on_either_side_lose_and_repeat_nothing() {
    let db = TestDb::new("faults").await;
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE items (id INT PRIMARY KEY, n INT NOT NULL, note VARCHAR(40))")
        .await
        .expect("table");
    let start = db.start_position().await;
    let config = db.config("s1", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    my.query_drop("INSERT INTO items VALUES (0, 0, 'seed')")
        .await
        .expect("seed");
    db.wait_caught_up(&db.name, "s1", Duration::from_secs(60), &mut ferry)
        .await;
    let pg = db.pg().await;
    pg.batch_execute(
        "CREATE TABLE public.op_log (op text NOT NULL);
         CREATE FUNCTION public.log_op() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO public.op_log VALUES (TG_OP); RETURN NULL; END $$;
         CREATE TRIGGER items_log AFTER INSERT OR UPDATE OR DELETE ON items
           FOR EACH ROW EXECUTE FUNCTION public.log_op();",
    )
    .await
    .expect("trigger");

    // The load: every statement changes exactly one row, so the expected count is known.
    const TXNS: i64 = 3000;
    let writer = {
        let mut my = db.my().await;
        tokio::spawn(async move {
            let mut ops = 0i64;
            for i in 1..=TXNS {
                let mut sql = format!(
                    "BEGIN; INSERT INTO items VALUES ({i}, 0, 'new'); \
                     UPDATE items SET n = n + 1, note = 'touched' WHERE id = {i};"
                );
                ops += 2;
                if i % 5 == 0 {
                    sql.push_str(&format!("DELETE FROM items WHERE id = {};", i - 1));
                    ops += 1;
                }
                sql.push_str("COMMIT");
                my.query_drop(sql).await.expect("load transaction");
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }
            ops
        })
    };

    let mut binlog_kills = 0;
    let mut pg_kills = 0;
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // After the previous loss ferry may still be backing off: wait for its new connection.
        for _ in 0..100 {
            let killed = kill_binlog_connection(&mut my, ferry.pid()).await;
            if killed > 0 {
                binlog_kills += killed;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Only once the pipeline is back (its binlog connection again, and with it the apply
        // session): terminating sessions while it backs off would hit none of the apply's.
        for _ in 0..100 {
            let ports = local_ports_to(ferry.pid(), mysql_port());
            let hosts: Vec<String> = my
                .query(
                    "SELECT HOST FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'",
                )
                .await
                .expect("processlist");
            let back = hosts.iter().any(|h| {
                h.rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .is_some_and(|p| ports.contains(&p))
            });
            if back {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..100 {
            let terminated: i64 = pg
                .query_one(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()
                        AND backend_type = 'client backend') t",
                    &[],
                )
                .await
                .expect("terminate")
                .get(0);
            if terminated > 0 {
                pg_kills += terminated;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            ferry.try_exit().is_none(),
            "ferry exited after round {round}:\n{}",
            ferry.log()
        );
    }
    let ops = writer.await.expect("writer");
    db.wait_caught_up(&db.name, "s1", Duration::from_secs(120), &mut ferry)
        .await;

    assert!(
        binlog_kills >= 3,
        "the binlog connection was killed each round ({binlog_kills})"
    );
    assert!(
        pg_kills >= 3,
        "ferry's PostgreSQL sessions were terminated each round ({pg_kills})"
    );
    let log = ferry.log();
    // Each loss is logged as a transient error and followed by a resume (the PostgreSQL side
    // surfaces wherever ferry next used the connection: a statement, the checkpoint read, the
    // table check).
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN ferry::app:"))
        .collect();
    assert!(
        warnings.iter().any(|l| l.contains("error=binlog stream")),
        "a lost binlog connection is a transient error:\n{log}"
    );
    assert!(
        warnings.iter().any(|l| !l.contains("error=binlog stream")),
        "a lost PostgreSQL session is a transient error:\n{log}"
    );
    assert!(ferry.try_exit().is_none(), "ferry is still running:\n{log}");

    let on_source = mysql_rows(
        &mut my,
        "SELECT CAST(id AS CHAR), CAST(n AS CHAR), note FROM items",
    )
    .await;
    let on_target = pg_rows(&pg, "SELECT id::text, n::text, note FROM items").await;
    assert_eq!(on_source.len(), on_target.len(), "row counts differ");
    assert!(
        on_source == on_target,
        "items differ: first mismatch {:?}",
        common::workload::first_diff(&on_source, &on_target)
    );
    let applied = db.count("SELECT count(*) FROM public.op_log").await;
    assert_eq!(
        applied, ops,
        "every source row operation applied exactly once across the lost connections"
    );
    db.cleanup_dir();
}
