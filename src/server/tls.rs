//! The listener's TLS: which mode `[server.tls]` asks for (read once into
//! [`TlsMode`]; start, reload and check-config ask it), the certificate
//! made ready before anything listens, and the handshake of a connection.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::checks::ConfigError;
use crate::config::Config;
use crate::http_text::closing_wire;
use crate::tls::AcmeConfig;
use crate::tls::acme::Acme;
use crate::tls::server::{ACME_TLS_ALPN, CertError, CertFile, CertStore, Certificate};

/// What `[server.tls]` asks for.
#[derive(Debug, Clone, Copy)]
pub(super) enum TlsMode<'a> {
    /// No `[server.tls]`: plain HTTP.
    Off,
    /// A certificate and key from files (reloaded on SIGHUP).
    Files { cert: &'a Path, key: &'a Path },
    /// Certificates from an ACME CA (ACME wins over files, which the
    /// validation refuses alongside it anyway).
    Acme(&'a AcmeConfig),
    /// Neither: a config that was not validated; refused at start.
    Incomplete,
}

impl<'a> TlsMode<'a> {
    pub(super) fn of(config: &'a Config) -> Self {
        let Some(t) = &config.server.tls else {
            return Self::Off;
        };
        match (&t.acme, &t.cert_file, &t.key_file) {
            (Some(a), _, _) => Self::Acme(a),
            (None, Some(cert), Some(key)) => Self::Files { cert, key },
            _ => Self::Incomplete,
        }
    }

    /// The certificate and key files, in the files mode.
    pub(super) fn cert_files(self) -> Option<(&'a Path, &'a Path)> {
        match self {
            Self::Files { cert, key } => Some((cert, key)),
            _ => None,
        }
    }
}

/// The listener's TLS, ready before it listens.
pub(super) struct PreparedTls {
    pub(super) store: Arc<CertStore>,
    pub(super) config: Arc<rustls::ServerConfig>,
    pub(super) acme: Option<Acme>,
    /// ACME: the certificate found in the cache.
    pub(super) cached: Option<Certificate>,
}

/// Loads the certificate (or the ACME cache); `None` without TLS.
pub(super) fn prepare_tls(mode: TlsMode<'_>) -> io::Result<Option<PreparedTls>> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    match mode {
        TlsMode::Off => Ok(None),
        TlsMode::Acme(a) => {
            let store = CertStore::new(None);
            let acme = Acme::new(a.clone(), store.clone());
            let cached = acme.prepare().map_err(|e| invalid(e.to_string()))?;
            if let Some(c) = &cached {
                store.set(c);
            }
            Ok(Some(PreparedTls {
                config: crate::tls::server::server_config(store.clone(), true),
                store,
                acme: Some(acme),
                cached,
            }))
        }
        TlsMode::Files { cert, key } => {
            let c =
                Certificate::load(cert, key).map_err(|e| invalid(cert_problem(&e).to_string()))?;
            let store = CertStore::new(Some(&c));
            Ok(Some(PreparedTls {
                config: crate::tls::server::server_config(store.clone(), false),
                store,
                acme: None,
                cached: None,
            }))
        }
        TlsMode::Incomplete => Err(invalid(
            "server.tls: needs cert_file and key_file, or [server.tls.acme]".into(),
        )),
    }
}

/// A certificate problem, under the key of the file it is about.
pub(super) fn cert_problem(e: &CertError) -> ConfigError {
    let key = match e.file {
        CertFile::Cert => "server.tls.cert_file",
        CertFile::Key => "server.tls.key_file",
    };
    ConfigError::new(key, e.message.clone())
}

/// Checks the certificate and key files of `[server.tls]`: readable, PEM,
/// the key matching the certificate, the certificate valid now. `Ok` when
/// there are none (no TLS, or ACME).
pub fn check_tls_files(config: &Config) -> Result<(), ConfigError> {
    match TlsMode::of(config).cert_files() {
        Some((cert, key)) => Certificate::load(cert, key)
            .map(|_| ())
            .map_err(|e| cert_problem(&e)),
        None => Ok(()),
    }
}

/// The first byte of a TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The body of the answer to plain HTTP on the TLS port.
const PLAIN_TO_TLS_PORT: &str = "400 Bad Request: this port speaks TLS; use https:// or wss://\n";

/// The handshake of a connection to the TLS listener, bounded by the
/// header timeout. `None` when there is no HTTP to serve: the handshake
/// failed, it was an ACME CA validating tls-alpn-01, or the client spoke
/// plain HTTP (it gets a plain 400 saying so, rather than a reset it
/// cannot explain).
pub(super) async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    tls: &TlsAcceptor,
    header_timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    let handshake = async {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Ok(None);
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            let mut stream = stream;
            let answer = closing_wire(StatusCode::BAD_REQUEST, PLAIN_TO_TLS_PORT);
            stream.write_all(&answer).await?;
            let _ = stream.shutdown().await;
            return Ok(None);
        }
        tls.accept(stream).await.map(Some)
    };
    let stream = match tokio::time::timeout(header_timeout, handshake).await {
        Ok(Ok(s)) => s?,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    // An ACME CA validating tls-alpn-01 only needed the handshake.
    if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
        return None;
    }
    Some(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::TlsConfig;

    fn with_tls(tls: TlsConfig) -> Config {
        let mut c = Config::default();
        c.server.tls = Some(tls);
        c
    }

    #[test]
    fn the_mode_is_read_once_from_the_config() {
        assert!(matches!(TlsMode::of(&Config::default()), TlsMode::Off));
        let files = with_tls(TlsConfig {
            cert_file: Some("c.pem".into()),
            key_file: Some("k.pem".into()),
            ..TlsConfig::default()
        });
        let mode = TlsMode::of(&files);
        assert!(matches!(mode, TlsMode::Files { .. }));
        assert_eq!(
            mode.cert_files(),
            Some((Path::new("c.pem"), Path::new("k.pem")))
        );
        // ACME wins over files, as at start before.
        let acme = with_tls(TlsConfig {
            cert_file: Some("c.pem".into()),
            key_file: Some("k.pem".into()),
            acme: Some(AcmeConfig::default()),
            ..TlsConfig::default()
        });
        assert!(matches!(TlsMode::of(&acme), TlsMode::Acme(_)));
        assert_eq!(TlsMode::of(&acme).cert_files(), None);
        let half = with_tls(TlsConfig {
            cert_file: Some("c.pem".into()),
            ..TlsConfig::default()
        });
        assert!(matches!(TlsMode::of(&half), TlsMode::Incomplete));
        let e = prepare_tls(TlsMode::of(&half)).err().expect("refused");
        assert_eq!(
            e.to_string(),
            "server.tls: needs cert_file and key_file, or [server.tls.acme]"
        );
        assert!(check_tls_files(&acme).is_ok() && check_tls_files(&half).is_ok());
    }

    #[test]
    fn missing_files_are_refused_under_their_key() {
        let c = with_tls(TlsConfig {
            cert_file: Some("/nonexistent/c.pem".into()),
            key_file: Some("/nonexistent/k.pem".into()),
            ..TlsConfig::default()
        });
        let e = check_tls_files(&c).unwrap_err();
        assert_eq!(e.key, "server.tls.cert_file");
        assert!(
            e.message.starts_with("/nonexistent/c.pem: cannot read: "),
            "{e}"
        );
    }
}
