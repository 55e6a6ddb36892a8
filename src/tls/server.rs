//! TLS for the daemon's listener: the certificate in use, swapped in place
//! (SIGHUP, ACME renewal) so that live connections are never touched, and
//! the rustls server config around it (TLS 1.2 and 1.3, ALPN http/1.1).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol of the `tls-alpn-01` ACME challenge (RFC 8737).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A certificate chain and its key, checked to belong together and to be
/// valid now.
#[derive(Debug, Clone)]
pub(crate) struct Certificate {
    pub(crate) key: Arc<CertifiedKey>,
    /// Validity of the leaf, in seconds since the epoch.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

/// Why a certificate was refused; `file` says which of the two files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct CertError {
    pub(crate) file: CertFile,
    pub(crate) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertFile {
    Cert,
    Key,
}

impl Certificate {
    /// Reads a PEM chain (leaf first) and its PEM key. Errors name the file.
    pub(crate) fn load(cert_file: &Path, key_file: &Path) -> Result<Self, CertError> {
        let cert_pem = std::fs::read(cert_file).map_err(|e| CertError {
            file: CertFile::Cert,
            message: format!("{}: cannot read: {e}", cert_file.display()),
        })?;
        let key_pem = std::fs::read(key_file).map_err(|e| CertError {
            file: CertFile::Key,
            message: format!("{}: cannot read: {e}", key_file.display()),
        })?;
        Self::from_pem(&cert_pem, &key_pem).map_err(|mut e| {
            let file = match e.file {
                CertFile::Cert => cert_file,
                CertFile::Key => key_file,
            };
            e.message = match e.file {
                CertFile::Key if e.message.starts_with("does not match") => format!(
                    "{} {} in {}",
                    key_file.display(),
                    e.message,
                    cert_file.display()
                ),
                _ => format!("{}: {}", file.display(), e.message),
            };
            e
        })
    }

    /// Builds from PEM text, checking that the key matches the leaf and that
    /// the leaf is valid now.
    pub(crate) fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CertError> {
        let cert_err = |message: String| CertError {
            file: CertFile::Cert,
            message,
        };
        let key_err = |message: String| CertError {
            file: CertFile::Key,
            message,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| cert_err(format!("not a PEM certificate chain: {e}")))?;
        let Some(leaf) = chain.first() else {
            return Err(cert_err("holds no PEM certificate".into()));
        };
        let (not_before, not_after) = validity(leaf)
            .map_err(|e| cert_err(format!("the first certificate cannot be parsed: {e}")))?;
        let now = unix_now();
        if now >= not_after {
            return Err(cert_err(format!(
                "the certificate expired at {}",
                rfc3339(not_after)
            )));
        }
        if now < not_before {
            return Err(cert_err(format!(
                "the certificate is not valid before {}",
                rfc3339(not_before)
            )));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| key_err(format!("not a PEM private key: {e}")))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| key_err(format!("unusable private key: {e}")))?;
        let key = CertifiedKey::new(chain, signer);
        match key.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => return Err(key_err("does not match the certificate".into())),
        }
        Ok(Self {
            key: Arc::new(key),
            not_before,
            not_after,
        })
    }

    /// Time left before the certificate expires (zero once it has).
    pub(crate) fn remaining(&self) -> Duration {
        Duration::from_secs(self.not_after.saturating_sub(unix_now()).max(0) as u64)
    }

    /// The whole validity period.
    pub(crate) fn lifetime(&self) -> Duration {
        Duration::from_secs(self.not_after.saturating_sub(self.not_before).max(0) as u64)
    }
}

/// The leaf's notBefore and notAfter, in seconds since the epoch.
fn validity(
    leaf: &CertificateDer<'_>,
) -> Result<(i64, i64), x509_parser::nom::Err<x509_parser::error::X509Error>> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn rfc3339(t: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The certificate the listener presents, replaceable at any time: a
/// handshake picks up whichever is current when it starts, and connections
/// already established keep theirs. Also answers `tls-alpn-01` challenges
/// with the challenge certificate of the name asked for.
#[derive(Debug, Default)]
pub(crate) struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// notAfter of the current certificate (0: none), for `/metrics`.
    not_after: AtomicI64,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertStore {
    pub(crate) fn new(first: Option<&Certificate>) -> Arc<Self> {
        let store = Arc::new(Self::default());
        if let Some(c) = first {
            store.set(c);
        }
        store
    }

    /// Presents `cert` from the next handshake on.
    pub(crate) fn set(&self, cert: &Certificate) {
        *self.current.write().expect("cert store lock") = Some(cert.key.clone());
        self.not_after.store(cert.not_after, Ordering::Relaxed);
    }

    /// notAfter of the certificate presented, in seconds since the epoch.
    pub(crate) fn not_after(&self) -> Option<i64> {
        Some(self.not_after.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    pub(crate) fn set_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        (self.challenges.write().expect("cert store lock")).insert(name.to_ascii_lowercase(), key);
    }

    pub(crate) fn clear_challenge(&self, name: &str) {
        (self.challenges.write().expect("cert store lock")).remove(&name.to_ascii_lowercase());
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .read()
                .expect("cert store lock")
                .get(&name)
                .cloned();
        }
        self.current.read().expect("cert store lock").clone()
    }
}

/// The listener's rustls config: ring, TLS 1.2 and 1.3, ALPN http/1.1 (and
/// `acme-tls/1` when ACME is on).
pub(crate) fn server_config(store: Arc<CertStore>, acme: bool) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .expect("ring supports TLS 1.2 and 1.3")
    .with_no_client_auth()
    .with_cert_resolver(store);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if acme {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(
        name: &str,
        not_before: i64,
        not_after: i64,
    ) -> (String, rcgen::KeyPair, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.not_before = time_of(not_before);
        params.not_after = time_of(not_after);
        let cert = params.self_signed(&key).unwrap();
        let pem = key.serialize_pem();
        (cert.pem(), key, pem)
    }

    fn time_of(t: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(t).unwrap()
    }

    #[test]
    fn refuses_expired_future_and_mismatched() {
        let now = unix_now();
        let (cert, _, key) = self_signed("a.test", now - 86_400, now + 86_400);
        let ok = Certificate::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert!(ok.remaining() > Duration::from_secs(86_000));

        let (old, _, old_key) = self_signed("a.test", now - 2 * 86_400, now - 60);
        let e = Certificate::from_pem(old.as_bytes(), old_key.as_bytes()).unwrap_err();
        assert_eq!(e.file, CertFile::Cert);
        assert!(
            e.message.starts_with("the certificate expired at "),
            "{e:?}"
        );

        let (later, _, later_key) = self_signed("a.test", now + 3600, now + 86_400);
        let e = Certificate::from_pem(later.as_bytes(), later_key.as_bytes()).unwrap_err();
        assert!(e.message.contains("not valid before"), "{e:?}");

        let (_, _, other_key) = self_signed("b.test", now - 60, now + 86_400);
        let e = Certificate::from_pem(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert_eq!(
            e,
            CertError {
                file: CertFile::Key,
                message: "does not match the certificate".into()
            }
        );

        let e = Certificate::from_pem(b"hello", key.as_bytes()).unwrap_err();
        assert_eq!(e.message, "holds no PEM certificate");
        let e = Certificate::from_pem(cert.as_bytes(), b"").unwrap_err();
        assert_eq!(e.file, CertFile::Key);
    }
}
