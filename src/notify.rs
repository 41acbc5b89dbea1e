//! systemd's service notification protocol (`sd_notify(3)`), for `Type=notify` units: `READY=1`
//! once preflight passed and streaming starts, `WATCHDOG=1` pings, `STATUS=` lines with the
//! phase and lag, `RELOADING=1` / `STOPPING=1` around reloads and stops.
//!
//! Guarantees: a no-op when `NOTIFY_SOCKET` is unset (ferry run by hand or under another
//! supervisor); never blocks the caller (the socket is non-blocking, a message systemd cannot take
//! right now is dropped and logged at debug); supports path sockets and Linux abstract sockets
//! (`NOTIFY_SOCKET=@name`). The watchdog interval is half of `WATCHDOG_USEC`, and only when
//! `WATCHDOG_PID` is unset or names this process, as `sd_watchdog_enabled(3)` specifies.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Why the notify socket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an abstract socket (@name)")]
    BadAddress(String),
    #[error("NOTIFY_SOCKET={address:?}: {source}")]
    Socket {
        address: String,
        source: std::io::Error,
    },
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// The address as given, for messages.
    address: String,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, or `None` when it is unset or empty.
    ///
    /// # Errors
    /// The variable names something that is not a usable socket address.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(a) if !a.is_empty() => Notifier::new(&a).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier sending to `address` (an absolute path, or `@name` for an abstract socket).
    ///
    /// # Errors
    /// The address is malformed or no datagram socket can be created.
    pub fn new(address: &str) -> Result<Notifier, NotifyError> {
        let sock_err = |source| NotifyError::Socket {
            address: address.to_string(),
            source,
        };
        let addr = if let Some(name) = address.strip_prefix('@') {
            abstract_addr(name.as_bytes()).map_err(sock_err)?
        } else if address.starts_with('/') {
            SocketAddr::from_pathname(address).map_err(sock_err)?
        } else {
            return Err(NotifyError::BadAddress(address.to_string()));
        };
        let socket = UnixDatagram::unbound().map_err(sock_err)?;
        socket.set_nonblocking(true).map_err(sock_err)?;
        Ok(Notifier {
            socket,
            addr,
            address: address.to_string(),
        })
    }

    /// Sends one message (`KEY=value` lines).
    ///
    /// # Errors
    /// The manager's socket refused the datagram (gone, or its queue is full).
    pub fn send(&self, state: &str) -> std::io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(|_| ())
    }

    /// Sends and logs a failure at debug: notifications are advisory.
    fn send_logged(&self, state: &str) {
        if let Err(e) = self.send(state) {
            tracing::debug!(error = %e, socket = %self.address, "systemd notification not delivered");
        }
    }

    /// Startup finished: preflight passed, the pipeline runs.
    pub fn ready(&self, status: &str) {
        self.send_logged(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A human-readable status line (`systemctl status` shows it).
    pub fn status(&self, status: &str) {
        self.send_logged(&format!("STATUS={}", one_line(status)));
    }

    /// The daemon is alive.
    pub fn watchdog(&self) {
        self.send_logged("WATCHDOG=1");
    }

    /// A reload started; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        self.send_logged(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// A graceful stop started.
    pub fn stopping(&self, status: &str) {
        self.send_logged(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets exist on Linux only",
    ))
}

/// A status value must stay on one line: a newline would start another `KEY=value` pair.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when the watchdog is meant for this
/// process (`WATCHDOG_PID` unset or equal to our pid).
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = sock.recv(&mut buf).expect("a datagram arrives");
        String::from_utf8(buf[..n].to_vec()).expect("utf8")
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("ferry-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::new(path.to_str().expect("utf8")).expect("notifier");
        n.ready("streaming\nlag 0 s");
        assert_eq!(receive(&sock), "READY=1\nSTATUS=streaming lag 0 s");
        n.watchdog();
        assert_eq!(receive(&sock), "WATCHDOG=1");
        n.reloading();
        let r = receive(&sock);
        assert!(r.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{r}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ferry-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let n = Notifier::new(&format!("@{name}")).expect("notifier");
        n.stopping("stopping");
        assert_eq!(receive(&sock), "STOPPING=1\nSTATUS=stopping");
    }

    #[test]
    fn refuses_relative_addresses_and_tolerates_a_missing_manager() {
        assert!(matches!(
            Notifier::new("relative/path"),
            Err(NotifyError::BadAddress(_))
        ));
        let n = Notifier::new("/nonexistent/ferry/notify.sock").expect("address is fine");
        assert!(n.send("READY=1").is_err(), "nobody listens");
        n.ready("no one listens; must not panic or block");
    }

    #[test]
    fn watchdog_interval_is_half_and_only_for_us() {
        assert_eq!(
            watchdog_interval_from(Some("2000000"), None, 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval_from(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval_from(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
    }
}
