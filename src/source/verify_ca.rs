//! `VERIFY_CA` on the source: the certificate chain is checked, the host name is not.
//!
//! Why this exists: `mysql_async` 0.37 skips the host-name check by looking for
//! "NotValidForName" in the rustls error's message, which rustls 0.23 no longer prints (its name
//! errors now carry context and read "certificate not valid for name ..."), so with the driver
//! alone `VERIFY_CA` would check the name as `VERIFY_IDENTITY` does. Instead ferry opens one
//! TLS handshake itself (the MySQL `SSLRequest`, then rustls with the chain-only verifier of
//! [`crate::tls`]), takes a name the verified certificate lists, and lets the driver verify the
//! chain and that name. The driver's session is still verified in full against the CA, so the
//! probe adds no trust; it only chooses which of the certificate's own names is compared.
//!
//! Assumes: the server presents the same certificate to the probe and to the session a moment
//! later (a certificate rotated in between fails the session's check; the next connect probes
//! again).

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::connect::ConnectError;
use crate::config::SourceConfig;
use crate::tls;

/// `CLIENT_SSL` in the server's capability flags.
const CLIENT_SSL: u32 = 0x0800;

/// The certificates a server presented: end entity first, then intermediates.
type Presented = Vec<CertificateDer<'static>>;

/// Records the server's certificates after the chain-only verifier accepted them.
#[derive(Debug)]
struct Capture {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Mutex<Option<Presented>>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Ok(mut seen) = self.seen.lock() {
            let mut all = vec![end_entity.clone().into_owned()];
            all.extend(intermediates.iter().map(|c| c.clone().into_owned()));
            *seen = Some(all);
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The name the driver should verify the server's certificate against: `cfg.host` when the
/// certificate lists it, else one of the names it lists.
///
/// # Errors
/// The server has no TLS, the certificate's chain does not verify, or the server cannot be
/// reached (the same errors [`super::connect::connect`] gives).
pub async fn name_to_verify(cfg: &SourceConfig) -> Result<String, ConnectError> {
    let probe = async {
        let io = |e: std::io::Error| ConnectError::Mysql {
            host: cfg.host.clone(),
            port: cfg.port,
            source: mysql_async::Error::Io(mysql_async::IoError::Io(e)),
        };
        let mut stream = TcpStream::connect((cfg.host.as_str(), cfg.port))
            .await
            .map_err(io)?;
        // The server speaks first: its handshake packet with the capability flags.
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).await.map_err(io)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let mut hello = vec![0u8; len];
        stream.read_exact(&mut hello).await.map_err(io)?;
        if !server_offers_tls(&hello) {
            return Err(ConnectError::NoTls {
                host: cfg.host.clone(),
                port: cfg.port,
                mode: cfg.tls.mode_name(),
            });
        }
        // SSLRequest: capabilities, max packet, utf8mb4, 23 reserved bytes; sequence 1.
        let mut request = vec![32, 0, 0, 1];
        let flags: u32 = 0x0000_0001 | 0x0000_0200 | CLIENT_SSL | 0x0000_8000;
        request.extend_from_slice(&flags.to_le_bytes());
        request.extend_from_slice(&(1u32 << 24).to_le_bytes());
        request.push(45);
        request.extend_from_slice(&[0u8; 23]);
        stream.write_all(&request).await.map_err(io)?;

        let refused = |reason: String| ConnectError::Tls {
            host: cfg.host.clone(),
            port: cfg.port,
            mode: cfg.tls.mode_name(),
            reason,
        };
        let full = tls::webpki_verifier(&cfg.tls).map_err(|e| refused(e.to_string()))?;
        let capture = Arc::new(Capture {
            inner: tls::chain_only(full.clone()),
            seen: Mutex::new(None),
        });
        let config = tls::config_with_verifier(capture.clone(), &cfg.tls)
            .map_err(|e| refused(e.to_string()))?;
        let name = ServerName::try_from(cfg.host.clone())
            .map_err(|e| refused(format!("{:?} is not a host name: {e}", cfg.host)))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        match connector.connect(name, stream).await {
            Ok(_) => {}
            Err(e) => {
                return Err(match tls::rustls_error(&e) {
                    Some(r) => refused(tls::explain(r, &cfg.tls, "source.tls")),
                    None => io(e),
                })
            }
        }
        let certs = capture
            .seen
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .ok_or_else(|| refused("the server presented no certificate".into()))?;
        Ok(choose_name(full.as_ref(), &certs, &cfg.host))
    };
    match tokio::time::timeout(cfg.connect_timeout, probe).await {
        Err(_) => Err(ConnectError::Timeout {
            host: cfg.host.clone(),
            port: cfg.port,
            timeout: cfg.connect_timeout,
        }),
        Ok(r) => r,
    }
}

/// Whether the server's handshake packet (protocol 10) sets `CLIENT_SSL`.
fn server_offers_tls(hello: &[u8]) -> bool {
    // protocol version, NUL-terminated server version, connection id (4), scramble (8),
    // filler (1), then the lower two bytes of the capability flags.
    let Some(nul) = hello.iter().skip(1).position(|b| *b == 0) else {
        return false;
    };
    let at = 1 + nul + 1 + 4 + 8 + 1;
    hello
        .get(at..at + 2)
        .is_some_and(|c| u32::from(u16::from_le_bytes([c[0], c[1]])) & CLIENT_SSL != 0)
}

/// `host` when the certificate is valid for it, else the first name the certificate lists
/// that it is valid for (webpki lists them as `DnsName("x")` / `IpAddress(x)` in its error).
fn choose_name(
    full: &dyn ServerCertVerifier,
    certs: &[CertificateDer<'static>],
    host: &str,
) -> String {
    let Some((cert, intermediates)) = certs.split_first() else {
        return host.to_string();
    };
    let check = |name: &str| -> Result<(), rustls::Error> {
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        full.verify_server_cert(cert, intermediates, &server_name, &[], UnixTime::now())
            .map(|_| ())
    };
    let presented = match check(host) {
        Ok(()) => return host.to_string(),
        Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        })) => presented,
        Err(_) => return host.to_string(),
    };
    presented
        .iter()
        .filter_map(|p| {
            let inner = p
                .strip_prefix("DnsName(\"")
                .and_then(|s| s.strip_suffix("\")"))
                .or_else(|| {
                    p.strip_prefix("IpAddress(")
                        .and_then(|s| s.strip_suffix(')'))
                })?;
            Some(inner.replace('*', "ferry-verify-ca"))
        })
        .find(|n| check(n).is_ok())
        .unwrap_or_else(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protocol-10 handshake packet's payload with `caps` as its lower capability flags.
    fn hello(caps: u16) -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(b"10.11.19-MariaDB\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(b"12345678");
        p.push(0);
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&[45, 2, 0]);
        p
    }

    #[test]
    fn the_servers_tls_flag_is_read_from_its_handshake() {
        assert!(server_offers_tls(&hello(0xf7fe | 0x0800)));
        assert!(!server_offers_tls(&hello(0xf7fe & !0x0800)));
        assert!(
            !server_offers_tls(&[10, b'x']),
            "a cut packet offers nothing"
        );
    }
}
