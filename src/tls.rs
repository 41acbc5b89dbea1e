//! TLS for both connections: the rustls client configuration of the target (the source's is built
//! by `mysql_async` from the same [`TlsConfig`], see `source::connect`), what a session
//! negotiated, and the words for a refused handshake.
//!
//! Guarantees: the modes mean what libpq and the mysql client document — `require` encrypts and
//! checks nothing, `verify-ca` checks the chain against the CA but not the host name,
//! `verify-full` checks both; a verifying mode with `ca_file` trusts only that file's CAs, without
//! it the Mozilla root set (webpki-roots); a refused certificate is a definite error whose message
//! says why (unknown CA, host name not in the certificate). Assumes: one crypto provider (ring)
//! for both drivers.

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::config::{TlsConfig, TlsMode};

/// A TLS configuration that cannot be built from the configured files: the operator's to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {what} from {path}: {message}")]
    Read {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{path} holds no {what} in PEM form")]
    Empty { what: &'static str, path: PathBuf },
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsSetupError::Read {
            what,
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The CAs a verifying mode trusts: `ca_file` alone, or the Mozilla root set.
fn roots(tls: &TlsConfig) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for cert in read_certs("CA certificates", path)? {
                store.add(cert)?;
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

/// The rustls client configuration for `tls` (the target's connections; `disable` never
/// reaches it).
///
/// # Errors
/// An unreadable or empty CA, certificate or key file, or a key that does not fit.
pub fn client_config(tls: &TlsConfig) -> Result<ClientConfig, TlsSetupError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match tls.mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(
                provider.signature_verification_algorithms,
            ))),
        TlsMode::VerifyCa => builder
            .dangerous()
            .with_custom_certificate_verifier(chain_only(webpki_verifier(tls)?)),
        TlsMode::VerifyFull => builder.with_root_certificates(roots(tls)?),
    };
    with_client_auth(builder, tls)
}

/// A configuration that checks the server with `verifier` (and sends the client certificate
/// when `tls` has one).
///
/// # Errors
/// As [`client_config`].
pub fn config_with_verifier(
    verifier: Arc<dyn ServerCertVerifier>,
    tls: &TlsConfig,
) -> Result<ClientConfig, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    with_client_auth(builder, tls)
}

/// The full verifier (chain and host name) over the CAs `tls` trusts.
///
/// # Errors
/// An unreadable or empty CA file.
pub fn webpki_verifier(tls: &TlsConfig) -> Result<Arc<WebPkiServerVerifier>, TlsSetupError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots(tls)?), provider())
        .build()
        .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))
}

/// `verify-ca`'s verifier: `full` without its host-name check.
pub fn chain_only(full: Arc<WebPkiServerVerifier>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(ChainOnly(full))
}

fn with_client_auth(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    tls: &TlsConfig,
) -> Result<ClientConfig, TlsSetupError> {
    Ok(match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs("client certificate", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::Read {
                what: "private key",
                path: key.clone(),
                message: e.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
    })
}

/// `prefer` and `require`: the session is encrypted, the certificate is not checked (libpq's
/// meaning). Handshake signatures are still checked, so the session key belongs to whoever
/// holds the certificate's key.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA (and be in date); the host name is not
/// compared. webpki checks the chain before the name, so a name error means the chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The rustls error somewhere in a driver error's chain (drivers wrap it in `io::Error`, whose
/// `source` skips the wrapped error itself).
pub fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        next = e.source();
    }
    None
}

/// What a refused handshake means for the operator, naming the config key to look at.
pub fn explain(e: &rustls::Error, tls: &TlsConfig, key_prefix: &str) -> String {
    let ca = match &tls.ca_file {
        Some(p) => format!("the CA in {key_prefix}.ca_file ({})", p.display()),
        None => format!("the Mozilla root set (no {key_prefix}.ca_file)"),
    };
    match e {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "certificate verification failed: the server's certificate is not signed by {ca}; \
             set {key_prefix}.ca_file to the CA that signed it"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "host name mismatch: {e}; connect with a name the certificate lists, or use mode {} \
             to check the chain only",
            TlsMode::VerifyCa.name(tls.side)
        ),
        rustls::Error::InvalidCertificate(_) => {
            format!("certificate verification failed: {e}")
        }
        rustls::Error::AlertReceived(alert) => format!(
            "the server ended the handshake ({alert:?}); if it asks for a client certificate, \
             set {key_prefix}.cert_file and key_file"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// How far the server's identity was checked on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    Chain,
    ChainAndHost,
}

impl Verified {
    /// What a session that connected under `mode` has had checked.
    pub fn by(mode: TlsMode) -> Self {
        match mode {
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => Verified::No,
            TlsMode::VerifyCa => Verified::Chain,
            TlsMode::VerifyFull => Verified::ChainAndHost,
        }
    }
}

/// What one session negotiated, as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// TLS version and cipher (`None`: plaintext).
    pub tls: Option<(String, String)>,
    pub verified: Verified,
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tls {
            None => f.write_str("plaintext"),
            Some((version, cipher)) => {
                write!(f, "{version} ({cipher}), ")?;
                f.write_str(match self.verified {
                    Verified::No => "certificate not verified",
                    Verified::Chain => "CA verified, host name not checked",
                    Verified::ChainAndHost => "CA and host name verified",
                })
            }
        }
    }
}
