//! Certificates from an ACME CA (Let's Encrypt by default), with
//! `instant-acme`: obtained when the cache holds none that is valid,
//! renewed before expiry, and swapped into the listener without a restart.
//! The `tls-alpn-01` challenge is answered by the TLS listener itself
//! (see [`CertStore`]), so nothing but the HTTPS port has to be reachable.
//!
//! `cache_dir` keeps the account (one per directory URL) and the latest
//! certificate with its key (one per directory URL and domain list), so a
//! restart neither creates accounts nor orders certificates it already has.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;

use super::TlsError;
use super::server::{CertStore, Certificate};
use crate::tls::AcmeConfig;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct AcmeStats {
    pub(crate) issued: AtomicU64,
    pub(crate) failed: AtomicU64,
}

/// Retry delays after a failed order: from a minute, doubling, up to 6 h.
const RETRY_FIRST: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(6 * 3600);

/// Longest sleep between looks at the certificate's age.
const CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);

/// How long the CA may take to validate, then to issue.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the cache directory is unusable, or an order or an account failed.
/// The text names the step (and the file, where there is one).
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcmeError {
    #[error("server.tls.acme.cache_dir: cannot create {}: {source}", dir.display())]
    CreateCacheDir { dir: PathBuf, source: io::Error },
    #[error("server.tls.acme.cache_dir: {} is not writable: {source}", dir.display())]
    CacheDirNotWritable { dir: PathBuf, source: io::Error },
    /// A request to the CA failed; `step` names it (`new order`,
    /// `authorization`, `challenge`, `validation`, `finalize`,
    /// `certificate`).
    #[error("{step}: {source}")]
    Ca {
        step: &'static str,
        source: instant_acme::Error,
    },
    #[error("an authorization is {0:?}")]
    Authorization(AuthorizationStatus),
    #[error("the CA offers no tls-alpn-01 challenge (the only one hookfan answers)")]
    NoTlsAlpnChallenge,
    #[error("the order is {0:?}: validation failed")]
    NotValidated(OrderStatus),
    #[error("the issued certificate: {0}")]
    IssuedCertificate(String),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{}: not ACME account credentials: {source}", path.display())]
    Credentials {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("account from {}: {source}", path.display())]
    Account {
        path: PathBuf,
        source: instant_acme::Error,
    },
    #[error("new account at {url}: {source}")]
    NewAccount {
        url: String,
        source: instant_acme::Error,
    },
    #[error("{}: cannot read: {source}", file.display())]
    ReadCa { file: PathBuf, source: io::Error },
    #[error("{}: {source}", file.display())]
    CaPem {
        file: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{}: {source}", file.display())]
    CaCertificate {
        file: PathBuf,
        source: rustls::Error,
    },
    #[error("challenge certificate for {name}: {source}")]
    ChallengeCertificate { name: String, source: rcgen::Error },
    #[error("challenge certificate for {name}: {source}")]
    ChallengeKey { name: String, source: rustls::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The ACME side of a TLS listener.
pub(crate) struct Acme {
    config: AcmeConfig,
    store: Arc<CertStore>,
    stats: Arc<AcmeStats>,
}

impl Acme {
    pub(crate) fn new(config: AcmeConfig, store: Arc<CertStore>) -> Self {
        Self {
            config,
            store,
            stats: Arc::default(),
        }
    }

    pub(crate) fn stats(&self) -> Arc<AcmeStats> {
        self.stats.clone()
    }

    /// The cached certificate, if it is for these domains and still valid.
    /// Errors (no cache directory, unwritable) are reported here, at start.
    pub(crate) fn prepare(&self) -> Result<Option<Certificate>, AcmeError> {
        let dir = &self.config.cache_dir;
        std::fs::create_dir_all(dir).map_err(|source| AcmeError::CreateCacheDir {
            dir: dir.clone(),
            source,
        })?;
        let probe = dir.join(".hookfan-write-test");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|source| AcmeError::CacheDirNotWritable {
                dir: dir.clone(),
                source,
            })?;
        let (cert, key) = self.cert_paths();
        if !cert.exists() {
            return Ok(None);
        }
        match Certificate::load(&cert, &key) {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                tracing::warn!(problem = %e.message, "the cached ACME certificate is unusable; ordering a new one");
                Ok(None)
            }
        }
    }

    /// Keeps the certificate fresh, forever: orders one now if the store has
    /// none or it is due for renewal, else sleeps until it is.
    pub(crate) async fn run(self, mut current: Option<Certificate>) {
        let mut retry = RETRY_FIRST;
        loop {
            if let Some(c) = &current {
                let due = self.renew_in(c);
                if !due.is_zero() {
                    tokio::time::sleep(due.min(CHECK_EVERY)).await;
                    continue;
                }
                tracing::info!(not_after = %super::server::rfc3339(c.not_after), "renewing the ACME certificate");
            }
            match self.order().await {
                Ok(c) => {
                    self.stats.issued.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        domains = ?self.config.domains,
                        not_after = %super::server::rfc3339(c.not_after),
                        "ACME certificate obtained and in use"
                    );
                    self.store.set(&c);
                    current = Some(c);
                    retry = RETRY_FIRST;
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        directory = %self.config.directory_url,
                        domains = ?self.config.domains,
                        error = %e,
                        retry_in_s = retry.as_secs(),
                        "could not obtain an ACME certificate"
                    );
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Time until `c` is due for renewal: `renew_before_days` before it
    /// expires, or when a third of its lifetime is left if that is sooner
    /// (short-lived certificates).
    fn renew_in(&self, c: &Certificate) -> Duration {
        let before = Duration::from_secs(self.config.renew_before_days * 86_400);
        let before = before.min(c.lifetime() / 3);
        c.remaining().saturating_sub(before)
    }

    /// One order: account, challenges, CSR, certificate; cached on success.
    async fn order(&self) -> Result<Certificate, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = (self.config.domains.iter())
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(ca("new order"))?;
        let mut answered = Vec::new();
        let outcome = async {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(ca("authorization"))?;
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => return Err(AcmeError::Authorization(other)),
                }
                let mut challenge = authz
                    .challenge(ChallengeType::TlsAlpn01)
                    .ok_or(AcmeError::NoTlsAlpnChallenge)?;
                let name = challenge.identifier().to_string();
                let digest = challenge.key_authorization().digest();
                let cert = challenge_certificate(&name, digest.as_ref())?;
                self.store.set_challenge(&name, cert);
                answered.push(name);
                challenge.set_ready().await.map_err(ca("challenge"))?;
            }
            let policy = RetryPolicy::new().timeout(ORDER_TIMEOUT);
            match order.poll_ready(&policy).await {
                Ok(OrderStatus::Ready) => Ok(()),
                Ok(status) => Err(AcmeError::NotValidated(status)),
                Err(e) => Err(ca("validation")(e)),
            }
        }
        .await;
        for name in &answered {
            self.store.clear_challenge(name);
        }
        outcome?;
        let key_pem = order.finalize().await.map_err(ca("finalize"))?;
        let chain_pem = order
            .poll_certificate(&RetryPolicy::new().timeout(ORDER_TIMEOUT))
            .await
            .map_err(ca("certificate"))?;
        let cert = Certificate::from_pem(chain_pem.as_bytes(), key_pem.as_bytes())
            .map_err(|e| AcmeError::IssuedCertificate(e.message))?;
        let (cert_path, key_path) = self.cert_paths();
        write_private(&key_path, key_pem.as_bytes())?;
        write_private(&cert_path, chain_pem.as_bytes())?;
        Ok(cert)
    }

    /// The cached account for this directory, or a new one (then cached).
    async fn account(&self) -> Result<Account, AcmeError> {
        let path = self.account_path();
        let builder = || self.http().map(Account::builder_with_http);
        if let Ok(text) = std::fs::read(&path) {
            let credentials: AccountCredentials =
                serde_json::from_slice(&text).map_err(|source| AcmeError::Credentials {
                    path: path.clone(),
                    source,
                })?;
            return builder()?
                .from_credentials(credentials)
                .await
                .map_err(|source| AcmeError::Account { path, source });
        }
        let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()?
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.config.directory_url.clone(),
                None,
            )
            .await
            .map_err(|source| AcmeError::NewAccount {
                url: self.config.directory_url.clone(),
                source,
            })?;
        let json = serde_json::to_vec(&credentials).expect("credentials serialize");
        write_private(&path, &json)?;
        tracing::info!(directory = %self.config.directory_url, "ACME account created");
        Ok(account)
    }

    /// An HTTPS client trusting the system's roots, or `directory_ca_file`.
    fn http(&self) -> Result<Box<dyn instant_acme::HttpClient>, AcmeError> {
        let tls = match &self.config.directory_ca_file {
            None => super::client_config(&self.config.directory_url)?,
            Some(file) => {
                let mut roots = rustls::RootCertStore::empty();
                let pem = std::fs::read(file).map_err(|source| AcmeError::ReadCa {
                    file: file.clone(),
                    source,
                })?;
                use rustls_pki_types::pem::PemObject;
                for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|source| AcmeError::CaPem {
                        file: file.clone(),
                        source,
                    })?;
                    roots.add(cert).map_err(|source| AcmeError::CaCertificate {
                        file: file.clone(),
                        source,
                    })?;
                }
                super::with_roots(roots)?
            }
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client: Client<_, BodyWrapper<Bytes>> =
            Client::builder(TokioExecutor::new()).build(https);
        Ok(Box::new(client))
    }

    fn account_path(&self) -> PathBuf {
        let h = short_hash(&[&self.config.directory_url]);
        self.config.cache_dir.join(format!("account-{h}.json"))
    }

    fn cert_paths(&self) -> (PathBuf, PathBuf) {
        let mut parts = vec![self.config.directory_url.as_str()];
        let mut domains: Vec<&str> = self.config.domains.iter().map(String::as_str).collect();
        domains.sort_unstable();
        parts.extend(domains);
        let h = short_hash(&parts);
        let dir = &self.config.cache_dir;
        (
            dir.join(format!("cert-{h}.pem")),
            dir.join(format!("key-{h}.pem")),
        )
    }
}

/// The error of CA request `step`.
fn ca(step: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
    move |source| AcmeError::Ca { step, source }
}

/// 16 hex digits of SHA-256 over `parts`: names cache files after what
/// they are for.
fn short_hash(parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(b"\n");
    }
    hex::encode(&ctx.finish().as_ref()[..8])
}

/// Writes a file only its owner may read, atomically (temp file + rename).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| AcmeError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The self-signed certificate that answers a `tls-alpn-01` challenge for
/// `name` (RFC 8737: the key authorization's digest in the acmeIdentifier
/// extension).
fn challenge_certificate(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let fail = |source| AcmeError::ChallengeCertificate {
        name: name.to_owned(),
        source,
    };
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(fail)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|source| {
        AcmeError::ChallengeKey {
            name: name.to_owned(),
            source,
        }
    })?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}
