//! TLS, with rustls and the ring provider: for hookfan's outgoing
//! connections (the GitHub API, the WebSocket client) with the system's
//! root certificates, here; for its listener in `server`; certificates
//! from an ACME CA in `acme`.

pub(crate) mod acme;
pub(crate) mod metrics;
pub(crate) mod server;

use std::sync::Arc;

/// A client config trusting the system's root certificates (or the PEM
/// bundle `SSL_CERT_FILE` names). `what` names the peer in the error.
pub(crate) fn client_config(what: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let problems: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no usable root certificate in the system store to verify {what} \
             (install the CA certificates, or set SSL_CERT_FILE to a PEM bundle){}",
            if problems.is_empty() {
                String::new()
            } else {
                format!(": {}", problems.join("; "))
            }
        ));
    }
    with_roots(roots)
}

/// A client config trusting exactly `roots`.
pub(crate) fn with_roots(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
