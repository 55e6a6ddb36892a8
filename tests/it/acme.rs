//! ACME end to end against pebble, Let's Encrypt's ACME test server, started
//! here on 127.0.0.1 (installed into .tools/ by scripts/install-pebble.sh
//! when missing).
//!
//! The challenge is validated for real: pebble resolves the test's domain
//! through pebble-challtestsrv, a DNS server that answers 127.0.0.1 for
//! every name, and its tls-alpn-01 validation connects to the daemon's TLS
//! port (pebble's `tlsPort` is set to it). So no "always valid" shortcut is
//! needed on these machines.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::pki::TestCa;
use crate::common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const DOMAIN: &str = "hookfan.test";

/// `.tools/bin/NAME`, installing pebble first when it is missing.
fn tool(name: &str) -> PathBuf {
    installed_tool(name, "install-pebble.sh")
}

fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// pebble and its DNS server.
struct Pebble {
    children: Vec<Child>,
    /// The CA of pebble's own HTTPS (made by the test).
    https_ca: TestCa,
    listen: SocketAddr,
    management: SocketAddr,
    dir: tempfile::TempDir,
}

impl Pebble {
    /// Validates tls-alpn-01 challenges on 127.0.0.1:`tls_port`.
    fn start(tls_port: u16) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let https_ca = TestCa::new("pebble HTTPS test CA");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        https_ca.leaf().write(&cert, &key);
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let management: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let dns = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("pebble.json");
        std::fs::write(
            &config,
            serde_json::json!({"pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": cert,
                "privateKey": key,
                "httpPort": free_port(),
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }})
            .to_string(),
        )
        .unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        // Every A query answers 127.0.0.1; no AAAA answer, so validation
        // goes to the daemon's IPv4 listener.
        let dns_server = Command::new(tool("pebble-challtestsrv"))
            .args([
                "-dns01",
                &dns,
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .unwrap();
        let pebble = Command::new(tool("pebble"))
            .args(["-config", config.to_str().unwrap(), "-dnsserver", &dns])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .unwrap();
        let p = Pebble {
            children: vec![dns_server, pebble],
            https_ca,
            listen,
            management,
            dir,
        };
        wait_listening(listen, "pebble");
        wait_listening(management, "pebble's management interface");
        p
    }

    fn directory_url(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    /// The root pebble issues under (it makes a new one at every start).
    async fn issuing_root(&self) -> CertificateDer<'static> {
        let (status, pem) = self
            .https_ca
            .request(self.management, "GET", "/roots/0", &[], Vec::new())
            .await;
        assert_eq!(status, 200, "{pem}");
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    fn log(&self) -> String {
        ["pebble.log", "pebble.err"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TLS connection to `addr` for `DOMAIN`, trusting only `root`.
async fn connect(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(DOMAIN).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())
}

/// The leaf `addr` shows in a handshake trusting only `root`.
async fn handshake(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
) -> Result<CertificateDer<'static>, String> {
    let tls = connect(addr, root).await?;
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].clone())
}

fn daemon_config(dir: &Path, pebble: &Pebble) -> PathBuf {
    std::fs::write(dir.join("tokens.toml"), tokens_toml()).unwrap();
    std::fs::write(dir.join("pebble-https-ca.pem"), pebble.https_ca.pem()).unwrap();
    let config = dir.join("hookfan.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n\
             [server.tls.acme]\ndomains = [\"{DOMAIN}\"]\ncontact = [\"mailto:ops@example.com\"]\n\
             cache_dir = \"acme\"\ndirectory_url = \"{}\"\ndirectory_ca_file = \"pebble-https-ca.pem\"\n",
            pebble.directory_url()
        ),
    )
    .unwrap();
    config
}

/// Waits until `addr` presents a certificate that chains to `root`.
async fn wait_issued(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    daemon: &Daemon,
    pebble: &Pebble,
) -> CertificateDer<'static> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match handshake(addr, root).await {
            Ok(leaf) => return leaf,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no certificate from pebble after 60 s (last handshake: {e})\n\
                 daemon:\n{}\npebble:\n{}",
                daemon.stderr.lock().unwrap(),
                pebble.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_obtained_from_pebble_served_cached_and_renewed() {
    let port = free_port();
    let pebble = Pebble::start(port);
    let root = pebble.issuing_root().await;
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), &pebble);
    let listen = format!("127.0.0.1:{port}");
    let addr: SocketAddr = listen.parse().unwrap();

    // Start with an empty cache: the daemon listens, orders, answers the
    // challenge itself, and serves what pebble issued.
    let mut daemon = spawn_daemon_listening(&config, &listen);
    let issued = wait_issued(addr, &root, &daemon, &pebble).await;
    let (_, cert) = x509_parser::parse_x509_certificate(issued.as_ref()).unwrap();
    let names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, [format!("DNSName({DOMAIN})")]);
    // It serves over that certificate: a webhook and its delivery.
    let (status, text) = https_get(addr, &root, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("hookfan_acme_orders_total{result=\"issued\"} 1"),
        "{text}"
    );
    let cached: Vec<String> = std::fs::read_dir(dir.path().join("acme"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 3, "account, certificate, key: {cached:?}");
    daemon.sigterm();
    daemon.wait(Duration::from_secs(15));

    // Restarted: the cached certificate is served at once, no new order.
    let daemon = spawn_daemon_listening(&config, &listen);
    assert_eq!(handshake(addr, &root).await.unwrap(), issued);
    let (_, text) = https_get(addr, &root, "/metrics").await;
    assert!(
        text.contains("hookfan_acme_orders_total{result=\"issued\"} 0"),
        "{text}"
    );
    drop(daemon);

    // Renewal without a restart: the cache holds a certificate with less
    // than a third of its life left. It is served at start, then replaced.
    let cert_file = cached.iter().find(|f| f.starts_with("cert-")).unwrap();
    let key_file = cert_file.replacen("cert-", "key-", 1);
    let now = time::OffsetDateTime::now_utc();
    let ours = TestCa::new("old CA");
    let old = ours.leaf_valid(
        now - time::Duration::hours(10),
        now + time::Duration::hours(1),
    );
    old.write(
        &dir.path().join("acme").join(cert_file),
        &dir.path().join("acme").join(key_file),
    );
    let daemon = spawn_daemon_listening(&config, &listen);
    let renewed = wait_issued(addr, &root, &daemon, &pebble).await;
    assert_ne!(renewed, issued, "a new certificate was ordered");
    let log = daemon.stderr.lock().unwrap().clone();
    assert!(log.contains("renewing the ACME certificate"), "{log}");
    assert!(
        log.contains("ACME certificate obtained and in use"),
        "{log}"
    );
}

/// A GET over TLS to `DOMAIN` at `addr`, trusting `root`.
async fn https_get(addr: SocketAddr, root: &CertificateDer<'static>, path: &str) -> (u16, String) {
    let tls = connect(addr, root).await.unwrap();
    send(&mut http1(tls).await, DOMAIN, "GET", path, &[], Vec::new()).await
}
