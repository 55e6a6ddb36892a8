use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::Value;

use super::*;

fn key_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/github-app")
        .join(name)
}

fn app() -> GithubApp {
    let config = GithubAppConfig {
        app_id: Some(4242),
        private_key_file: Some(key_file("app-key.pem")),
    };
    GithubApp::load(&config).unwrap().unwrap()
}

fn part(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

#[test]
fn jwt_is_rs256_signed_by_the_app_key_with_githubs_claims() {
    let app = app();
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let header = app.jwt(now).header();
    assert!(header.is_sensitive());
    let jwt = header.to_str().unwrap().strip_prefix("Bearer ").unwrap();
    let [h, c, s] = jwt.split('.').collect::<Vec<_>>()[..] else {
        panic!("not three parts");
    };
    assert_eq!(part(h), serde_json::json!({"alg": "RS256", "typ": "JWT"}));
    assert_eq!(
        part(c),
        serde_json::json!({"iat": 1_700_000_000u64 - 60, "exp": 1_700_000_000u64 + 540, "iss": 4242})
    );
    let public = app.key.0.public_key().as_ref().to_vec();
    let signature = URL_SAFE_NO_PAD.decode(s).unwrap();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
        .verify(format!("{h}.{c}").as_bytes(), &signature)
        .expect("signature verifies with the App's public key");
}

#[test]
fn neither_key_nor_token_is_ever_shown() {
    let app = app();
    assert_eq!(
        format!("{:?}", app.jwt(SystemTime::now())),
        "AppJwt(redacted)"
    );
    let shown = format!("{app:?}");
    assert!(shown.contains("AppKey(redacted)"), "{shown}");
    assert!(!shown.contains("MII"), "{shown}");
}

#[test]
fn unusable_keys_are_named_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = AppKey::load(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("cannot read {}: ", missing.display())),
        "{err}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    assert_eq!(
        AppKey::load(&garbage).unwrap_err().to_string(),
        format!(
            "{} holds no PEM private key (GitHub's App key starts with \
             -----BEGIN RSA PRIVATE KEY-----)",
            garbage.display()
        )
    );

    let ec = dir.path().join("ec.pem");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&ec, pair.serialize_pem()).unwrap();
    let err = AppKey::load(&ec).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{} is not an RSA private key", ec.display())),
        "{err}"
    );
}
