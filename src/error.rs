//! One error class for the whole daemon: every module error answers [`ErrorClass`] through its
//! `class()` method, and the drivers' errors are classed here, once.
//!
//! Guarantees: *transient* means retrying the same work from the last checkpoint may succeed (a
//! lost connection, a deadlock, a server shutting down) — ferry retries it in process with
//! backoff and never exits on it while running; *definite* means the same work will fail the
//! same way again (bad data, a schema the target refuses, missing privileges, a value too large
//! to encode) — ferry stops with the message and exit status 78, so no retry loop can spin on
//! it. A new error variant must pick its class deliberately; nothing defaults to "retry".

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retrying from the checkpoint may succeed; ferry retries with backoff.
    Transient,
    /// The same work fails again; ferry stops (exit 78) with the message.
    Definite,
}

impl ErrorClass {
    pub fn is_transient(self) -> bool {
        self == ErrorClass::Transient
    }

    pub fn is_definite(self) -> bool {
        self == ErrorClass::Definite
    }

    /// The `kind` label of `ferry_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Definite => "definite",
        }
    }

    /// Classes a PostgreSQL driver error.
    ///
    /// Transient: connection exceptions (SQLSTATE 08), serialization failures and deadlocks
    /// (40), insufficient resources (53), operator intervention such as shutdown or a
    /// terminated session (57), lock not available (55P03), and I/O or protocol failures
    /// without a SQLSTATE (the connection is gone). Definite: every other server error (data,
    /// schema, privileges, and program limits such as a value or array over 1 GiB, SQLSTATE
    /// 54000) and failures on the client side before anything reached the server:
    /// a value that cannot be serialized for its parameter, or a message too large to encode —
    /// they recur identically on every retry; and a refused TLS session (no TLS where the mode
    /// demands it, a certificate that fails verification).
    pub fn of_postgres(e: &tokio_postgres::Error) -> Self {
        match e.code() {
            Some(code) => {
                let c = code.code();
                if c.starts_with("08")
                    || c.starts_with("40")
                    || c.starts_with("53")
                    || c.starts_with("57")
                    || c == "55P03"
                {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Definite
                }
            }
            None if is_client_side_encoding(e) => ErrorClass::Definite,
            None if crate::sink::connect::is_tls_refusal(e) => ErrorClass::Definite,
            None => ErrorClass::Transient,
        }
    }

    /// Classes a MySQL/MariaDB driver error.
    ///
    /// Definite: the server refused for a reason a retry cannot change — access denied
    /// (1044, 1045, 1698), unknown database (1049), table or column privilege missing (1142,
    /// 1143), a privilege such as REPLICATION SLAVE missing (1227), or the binlog dump refused
    /// (1236: a purged or impossible position). Transient: every other server error and every
    /// I/O or driver error (the connection is gone or the server is restarting).
    pub fn of_mysql(e: &mysql_async::Error) -> Self {
        match e {
            mysql_async::Error::Server(s)
                if matches!(
                    s.code,
                    1044 | 1045 | 1049 | 1142 | 1143 | 1227 | 1236 | 1698
                ) =>
            {
                ErrorClass::Definite
            }
            _ => ErrorClass::Transient,
        }
    }
}

/// A failure of the driver to turn a value or message into bytes: `error serializing parameter`
/// (a value its parameter type cannot take) or `error encoding message to server` (a message
/// over the protocol's 1 GiB frame). The driver exposes these only through its messages.
fn is_client_side_encoding(e: &tokio_postgres::Error) -> bool {
    let text = e.to_string();
    text.starts_with("error serializing") || text.starts_with("error encoding message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_access_and_purge_errors_are_definite_the_rest_transient() {
        let server = |code| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: String::new(),
                state: String::new(),
            })
        };
        for code in [1044, 1045, 1049, 1142, 1143, 1227, 1236, 1698] {
            assert_eq!(ErrorClass::of_mysql(&server(code)), ErrorClass::Definite);
        }
        for code in [1205, 1213, 2013, 1927] {
            assert_eq!(ErrorClass::of_mysql(&server(code)), ErrorClass::Transient);
        }
        let io = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert_eq!(ErrorClass::of_mysql(&io), ErrorClass::Transient);
    }

    #[test]
    fn labels_are_the_metric_kinds() {
        assert_eq!(ErrorClass::Transient.label(), "transient");
        assert_eq!(ErrorClass::Definite.label(), "definite");
    }
}
