//! A MariaDB server of a test's own (binlog ROW / FULL / FULL, like scripts/dev-db.sh's), for
//! tests that change server-wide settings — a cutover sets `read_only`, which would stop every
//! other test writing to the shared private server.
//!
//! The data directory lives under `target/test-mariadb/`; the server runs as `mysql` when the
//! tests run as root (as scripts/dev-db.sh does) and is killed when the value is dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_listen_addr, project_root};

pub struct OwnMariaDb {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args` as the `mysql` user when we are root.
fn as_mysql(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "mysql", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

/// Runs `sql` as root over the server's socket; the client's error text when it fails.
fn client(sock: &std::path::Path, sql: &str) -> Result<(), String> {
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-uroot", "-S"])
        .arg(sock)
        .args(["-e", sql])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl OwnMariaDb {
    /// Creates and starts a fresh server on a free port.
    pub fn start(name: &str) -> OwnMariaDb {
        OwnMariaDb::start_with(name, "", |_| {})
    }

    /// Like [`start`](Self::start) with `extra_cnf` appended to `[mariadbd]` (later lines win),
    /// after `prepare(dir)` has put files (certificates) into the server's directory.
    pub fn start_with(
        name: &str,
        extra_cnf: &str,
        prepare: impl FnOnce(&std::path::Path),
    ) -> OwnMariaDb {
        let port: u16 = free_listen_addr()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("free port");
        let dir = project_root()
            .join("target/test-mariadb")
            .join(format!("{name}-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("data dir");
        std::fs::create_dir_all(dir.join("binlog")).expect("binlog dir");
        // A private tmpdir: two servers being installed at once collided on /tmp's names.
        std::fs::create_dir_all(dir.join("tmp")).expect("tmp dir");
        let sock = dir.join("mysqld.sock");
        let cnf = dir.join("my.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[mariadbd]\ndatadir={d}/data\nsocket={s}\npid-file={d}/mariadbd.pid\nlog-error={d}/mariadbd.err\ntmpdir={d}/tmp\n\
                 port={port}\nbind-address=127.0.0.1\nskip-name-resolve\nserver-id=1\n\
                 log-bin={d}/binlog/mariadb-bin\nbinlog_format=ROW\nbinlog_row_image=FULL\nbinlog_row_metadata=FULL\n\
                 binlog_checksum=CRC32\nmax_allowed_packet=1G\nmax_connections=200\ninnodb_buffer_pool_size=64M\n\
                 innodb_log_file_size=48M\ninnodb_flush_log_at_trx_commit=2\nsync_binlog=0\n\
                 character-set-server=utf8mb4\ncollation-server=utf8mb4_general_ci\ndefault-time-zone=+00:00\n{extra_cnf}\n",
                d = dir.display(),
                s = sock.display(),
            ),
        )
        .expect("my.cnf");
        prepare(&dir);
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "mysql"])
                .arg(&dir)
                .status();
        }
        let install = as_mysql("mariadb-install-db")
            .arg(format!("--defaults-file={}", cnf.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db");
        assert!(
            install.success(),
            "mariadb-install-db failed in {}: {}",
            dir.display(),
            std::fs::read_to_string(dir.join("mariadbd.err")).unwrap_or_default()
        );
        let child = as_mysql("/usr/sbin/mariadbd")
            .arg(format!("--defaults-file={}", cnf.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        // From here a panic still stops the server (Drop).
        let server = OwnMariaDb {
            port,
            dir: dir.clone(),
            child: Some(child),
        };
        let started = Instant::now();
        while client(&sock, "SELECT 1").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the test's MariaDB did not start: {}",
                std::fs::read_to_string(dir.join("mariadbd.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let created = client(
            &sock,
            "CREATE USER IF NOT EXISTS 'ferry'@'%' IDENTIFIED BY 'ferry'; GRANT ALL PRIVILEGES ON *.* TO 'ferry'@'%'; \
             CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; \
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;",
        );
        if let Err(e) = created {
            panic!("creating the test's accounts: {e}");
        }
        server
    }

    /// Runs `sql` as root over the server's socket.
    pub fn sql(&self, sql: &str) {
        if let Err(e) = client(&self.dir.join("mysqld.sock"), sql) {
            panic!("{sql}: {e}");
        }
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // runuser forwards the signal to the server.
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("mariadbd.pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
