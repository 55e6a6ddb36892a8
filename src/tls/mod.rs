//! TLS, with rustls and the ring provider: for hookfan's outgoing
//! connections (the GitHub API, the WebSocket client) with the system's
//! root certificates, here; for its listener in `server`; certificates
//! from an ACME CA in `acme`.

pub(crate) mod acme;
mod config;
pub(crate) mod metrics;
pub(crate) mod server;

use std::sync::Arc;

/// Why a client TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// The system store holds no usable root certificate; `problems` are
    /// what the store reported while loading, joined by `; `.
    #[error(
        "no usable root certificate in the system store to verify {what} \
         (install the CA certificates, or set SSL_CERT_FILE to a PEM bundle){}",
        if problems.is_empty() { String::new() } else { format!(": {problems}") }
    )]
    NoRoots { what: String, problems: String },
    /// rustls refused the protocol versions of its provider.
    #[error("TLS setup: {0}")]
    Setup(#[source] rustls::Error),
}

pub use config::{AcmeConfig, LETS_ENCRYPT_DIRECTORY, TlsConfig};

/// A client config trusting the system's root certificates (or the PEM
/// bundle `SSL_CERT_FILE` names). `what` names the peer in the error.
pub(crate) fn client_config(what: &str) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let problems: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::NoRoots {
            what: what.to_owned(),
            problems: problems.join("; "),
        });
    }
    with_roots(roots)
}

/// A client config trusting exactly `roots`.
pub(crate) fn with_roots(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, TlsError> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Setup)?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::TlsError;

    #[test]
    fn no_roots_names_the_peer_and_the_problems() {
        let none = TlsError::NoRoots {
            what: "the server".into(),
            problems: String::new(),
        };
        assert_eq!(
            none.to_string(),
            "no usable root certificate in the system store to verify the server \
             (install the CA certificates, or set SSL_CERT_FILE to a PEM bundle)"
        );
        let some = TlsError::NoRoots {
            what: "x".into(),
            problems: "a; b".into(),
        };
        assert!(some.to_string().ends_with("PEM bundle): a; b"), "{some}");
    }
}
