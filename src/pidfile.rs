//! The daemon's pid file, and signalling the daemon through it (`ferry pause` / `resume`).
//!
//! Guarantees: the running daemon holds an exclusive `flock` on `state_dir/ferry.pid` for its
//! whole life, so a pid file nobody holds is stale by definition (the daemon was killed and the
//! pid may since belong to an unrelated process). [`signal_daemon`] signals only a pid whose
//! file is locked by a live daemon; a stale file is refused with a message and no signal is
//! sent — SIGUSR1's default action would terminate whatever process now has that pid. The lock
//! is released by the kernel when the process ends, however it ends.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// File in the state directory holding the running daemon's pid.
pub const PID_FILE: &str = "ferry.pid";

#[derive(Debug, thiserror::Error)]
pub enum PidError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is locked by another ferry (pid {pid}): one daemon per state_dir")]
    Busy { path: String, pid: String },
    #[error("{path} does not exist: is ferry running with this config (state_dir)?")]
    Missing { path: String },
    #[error("ferry is not running: {path} is stale (it names pid {pid}, which no ferry holds; the daemon was killed). Nothing was signalled; start ferry with `ferry run` or `systemctl start ferry`")]
    Stale { path: String, pid: String },
    #[error("{path} does not hold a pid ({content:?})")]
    Garbled { path: String, content: String },
    #[error("cannot signal ferry (pid {pid}): {source}")]
    Signal { pid: i32, source: std::io::Error },
}

/// The daemon's hold on its pid file; dropping it removes the file and releases the lock.
#[derive(Debug)]
pub struct PidFile {
    file: File,
    path: PathBuf,
}

fn flock(file: &File, operation: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock(2) on a descriptor this `File` owns for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn would_block(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EWOULDBLOCK)
}

impl PidFile {
    /// Locks `dir/ferry.pid` and writes this process's pid into it.
    ///
    /// # Errors
    /// The file cannot be written, or another live ferry holds it.
    pub fn create(dir: &Path) -> Result<PidFile, PidError> {
        let path = dir.join(PID_FILE);
        let io = |source| PidError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if let Err(e) = flock(&file, libc::LOCK_EX) {
            if would_block(&e) {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(PidError::Busy {
                    path: path.display().to_string(),
                    pid: pid.trim().to_string(),
                });
            }
            return Err(io(e));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(PidFile { file, path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = flock(&self.file, libc::LOCK_UN);
    }
}

/// The pid of the live daemon whose pid file is in `dir`.
///
/// # Errors
/// No pid file, a stale one (no daemon holds its lock), or one without a pid.
pub fn live_daemon(dir: &Path) -> Result<i32, PidError> {
    let path = dir.join(PID_FILE);
    let shown = path.display().to_string();
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PidError::Missing { path: shown })
        }
        Err(source) => {
            return Err(PidError::Io {
                path: shown,
                source,
            })
        }
    };
    let mut content = String::new();
    file.read_to_string(&mut content)
        .map_err(|source| PidError::Io {
            path: shown.clone(),
            source,
        })?;
    let content = content.trim().to_string();
    match flock(&file, libc::LOCK_SH) {
        // We got the lock: no daemon holds it.
        Ok(()) => {
            let _ = flock(&file, libc::LOCK_UN);
            return Err(PidError::Stale {
                path: shown,
                pid: content,
            });
        }
        Err(e) if would_block(&e) => {}
        Err(source) => {
            return Err(PidError::Io {
                path: shown,
                source,
            })
        }
    }
    content.parse().map_err(|_| PidError::Garbled {
        path: shown,
        content,
    })
}

/// Sends `signal` to the live daemon of `dir`; returns its pid.
///
/// # Errors
/// See [`live_daemon`]; the signal cannot be delivered.
pub fn signal_daemon(dir: &Path, signal: libc::c_int) -> Result<i32, PidError> {
    let pid = live_daemon(dir)?;
    // SAFETY: kill(2) with a pid whose pid file is locked by a live ferry, and a valid signal.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        return Err(PidError::Signal {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferry-pid-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn a_held_pid_file_names_the_daemon_and_a_released_one_is_stale() {
        let d = dir("held");
        {
            let held = PidFile::create(&d).expect("locks");
            assert_eq!(live_daemon(&d).expect("live"), std::process::id() as i32);
            // A second daemon on the same state_dir is refused (flock is per open file).
            assert!(matches!(PidFile::create(&d), Err(PidError::Busy { .. })));
            drop(held);
        }
        assert!(matches!(live_daemon(&d), Err(PidError::Missing { .. })));
        // A file left behind by a killed daemon, naming some other pid.
        std::fs::write(d.join(PID_FILE), "1").expect("write");
        let e = live_daemon(&d).expect_err("stale");
        assert!(matches!(e, PidError::Stale { .. }), "{e}");
        assert!(e.to_string().contains("Nothing was signalled"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
