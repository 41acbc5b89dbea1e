//! A PostgreSQL server of a test's own, for tests that need server settings the shared private
//! server must not have (TLS, a client-certificate `pg_hba.conf`).
//!
//! Made like scripts/dev-db.sh's (initdb with trust authentication, the newest installed major);
//! the data directory lives under `target/test-postgres/`; the server runs as `postgres` when
//! the tests run as root (PostgreSQL refuses root) and is stopped when the value is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_listen_addr, project_root};

pub struct OwnPostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries (scripts/dev-db.sh install)")
        .filter_map(|e| {
            let e = e.ok()?;
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("a PostgreSQL major under /usr/lib/postgresql")
        .1
}

impl OwnPostgres {
    /// Creates and starts a fresh server on a free port; `conf` is appended to
    /// `postgresql.conf`, `hba` (when not empty) replaces `pg_hba.conf`, and `prepare(data_dir)`
    /// puts files (certificates) into the data directory before the server starts.
    pub fn start(name: &str, conf: &str, hba: &str, prepare: impl FnOnce(&Path)) -> OwnPostgres {
        let port: u16 = free_listen_addr()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("free port");
        let dir = project_root()
            .join("target/test-postgres")
            .join(format!("{name}-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("server dir");
        if is_root() {
            let _ = Command::new("chown").arg("postgres").arg(&dir).status();
        }
        let bin = pg_bin();
        let data = dir.join("data");
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cnf =
            std::fs::read_to_string(data.join("postgresql.conf")).expect("postgresql.conf");
        cnf.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             max_connections = 50\nshared_buffers = 32MB\nfsync = off\ntimezone = 'UTC'\n{conf}\n",
            dir.display()
        ));
        std::fs::write(data.join("postgresql.conf"), cnf).expect("write postgresql.conf");
        if !hba.is_empty() {
            std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        }
        prepare(&data);
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status();
        }
        let server = OwnPostgres { port, dir, bin };
        let out = as_postgres(&server.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(server.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "start"])
            .current_dir("/")
            .stdout(Stdio::null())
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "the test's PostgreSQL did not start: {}",
            std::fs::read_to_string(server.dir.join("postgres.log")).unwrap_or_default()
        );
        let started = Instant::now();
        while !server.ready() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "PostgreSQL not ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A plaintext superuser session over the server's Unix socket (always allowed by the
    /// default `local` rule, and by the tests' own `pg_hba.conf`).
    pub async fn admin(&self, db: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::Config::new()
            .host_path(&self.dir)
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("admin session on the test's PostgreSQL");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
