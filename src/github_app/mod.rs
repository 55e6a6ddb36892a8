//! hookfan as the GitHub App: the App's private key, and the short-lived
//! JSON Web Token (RS256) it signs to call the API as the App
//! (`Authorization: Bearer <jwt>`), as GitHub documents: `iss` the App id,
//! `iat` 60 s in the past (clock drift), `exp` under 10 minutes ahead.
//!
//! Neither the key nor a token is ever shown: [`AppJwt`] prints redacted,
//! and errors name the key's file, never its content.

mod config;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::header::HeaderValue;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

pub use config::GithubAppConfig;

/// `iat` this far in the past, as GitHub recommends against clock drift.
const IAT_BACKDATE_S: u64 = 60;

/// `exp` this far ahead: under GitHub's 10-minute limit even for a clock
/// a minute fast.
const LIFETIME_S: u64 = 540;

/// Why the App's key cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppKeyError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// No private key in PEM form in the file.
    #[error(
        "{path} holds no PEM private key (GitHub's App key starts with -----BEGIN RSA PRIVATE KEY-----)"
    )]
    NotPem { path: String },
    /// A private key, but not an RSA key ring signs RS256 with.
    #[error("{path} is not an RSA private key of 2048 to 8192 bits: {why}")]
    NotRsa { path: String, why: String },
}

/// The App's RSA private key.
pub(crate) struct AppKey(RsaKeyPair);

impl AppKey {
    /// Reads the PEM file at `path` (PKCS#1, as GitHub hands it out, or PKCS#8).
    pub(crate) fn load(path: &Path) -> Result<AppKey, AppKeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| AppKeyError::Read {
            path: shown.clone(),
            source,
        })?;
        let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| AppKeyError::NotPem {
            path: shown.clone(),
        })?;
        let pair = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => {
                return Err(AppKeyError::NotRsa {
                    path: shown,
                    why: "an elliptic-curve key".to_owned(),
                });
            }
        };
        pair.map(AppKey).map_err(|e| AppKeyError::NotRsa {
            path: shown,
            why: e.to_string(),
        })
    }
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey(redacted)")
    }
}

/// The App: its id and key.
#[derive(Debug)]
pub(crate) struct GithubApp {
    id: u64,
    key: AppKey,
    rng: SystemRandom,
}

/// A signed App token. Shown redacted; [`AppJwt::header`] is the one way
/// out, marked sensitive so that hyper never logs it.
pub(crate) struct AppJwt(String);

impl std::fmt::Debug for AppJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppJwt(redacted)")
    }
}

impl AppJwt {
    /// `Bearer <jwt>`, for `Authorization`.
    pub(crate) fn header(&self) -> HeaderValue {
        let mut v = HeaderValue::try_from(format!("Bearer {}", self.0))
            .expect("base64url and dots are valid header bytes");
        v.set_sensitive(true);
        v
    }
}

impl GithubApp {
    /// The App of a filled-in `[github_app]`.
    pub(crate) fn load(config: &GithubAppConfig) -> Result<Option<GithubApp>, AppKeyError> {
        let (Some(id), Some(path)) = (config.app_id, &config.private_key_file) else {
            return Ok(None);
        };
        Ok(Some(GithubApp {
            id,
            key: AppKey::load(path)?,
            rng: SystemRandom::new(),
        }))
    }

    /// A token valid from a minute before `now` to nine minutes after.
    pub(crate) fn jwt(&self, now: SystemTime) -> AppJwt {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iat": now.saturating_sub(IAT_BACKDATE_S),
            "exp": now + LIFETIME_S,
            "iss": self.id,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let mut sig = vec![0; self.key.0.public().modulus_len()];
        self.key
            .0
            .sign(&RSA_PKCS1_SHA256, &self.rng, signed.as_bytes(), &mut sig)
            .expect("an RSA key pair signs with a buffer of its modulus' length");
        AppJwt(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

#[cfg(test)]
mod tests;
