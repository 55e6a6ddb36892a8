//! A certificate authority made by the test, and TLS clients that trust
//! only it: https requests, wss subscriptions, and a look at the
//! certificate a server presents.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{Ws, github_headers, http1, send};

pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// Writes the pair where a config points (replacing the files by rename,
    /// as a deployment tool does).
    pub fn write(&self, cert: &Path, key: &Path) {
        for (path, text) in [(cert, &self.cert_pem), (key, &self.key_pem)] {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `localhost` and 127.0.0.1, valid from an hour ago for a day.
    pub fn leaf(&self) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.leaf_valid(
            now - time::Duration::hours(1),
            now + time::Duration::days(1),
        )
    }

    pub fn leaf_valid(&self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem() + &self.issuer.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client config trusting only this CA, offering `alpn`.
    pub fn client_config_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client_config_with(rustls::DEFAULT_VERSIONS, &[b"http/1.1"])
    }

    /// A TLS connection to `addr` as `localhost`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        tokio::time::timeout(
            Duration::from_secs(10),
            TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
    }

    /// The leaf certificate `addr` presents.
    pub async fn served(&self, addr: SocketAddr) -> CertificateDer<'static> {
        let tls = self.connect(addr, self.client_config()).await.unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    /// An HTTPS request on a fresh connection.
    pub async fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, String) {
        let tls = self.connect(addr, self.client_config()).await.unwrap();
        let host = format!("localhost:{}", addr.port());
        send(&mut http1(tls).await, &host, method, path, headers, body).await
    }

    /// A signed webhook over HTTPS.
    pub async fn webhook(
        &self,
        addr: SocketAddr,
        secret: &[u8],
        kind: &str,
        body: &[u8],
        id: &str,
    ) -> u16 {
        let sig = hookfan::sign(secret, body);
        let headers = github_headers(kind, &sig, id);
        self.request(addr, "POST", "/webhook", &headers, body.to_vec())
            .await
            .0
    }

    /// A `wss://localhost:PORT/ws` connection with `token`.
    pub async fn wss(
        &self,
        addr: SocketAddr,
        token: &str,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let mut req = format!("wss://localhost:{}/ws", addr.port())
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let tcp = TcpStream::connect(addr).await.unwrap();
        tokio_tungstenite::client_async_tls_with_config(
            req,
            tcp,
            None,
            Some(Connector::Rustls(self.client_config())),
        )
        .await
        .map(|(ws, _)| ws)
    }
}
