//! `X-Hub-Signature-256` verification: HMAC-SHA256 over the raw body, keyed
//! with the webhook secret, compared in constant time by `ring`.

use ring::hmac;

/// Verifies `X-Hub-Signature-256` headers with one secret, in constant time.
/// Cheap to share between threads (`Send + Sync`).
pub struct WebhookVerifier {
    /// `None` when no secret is configured: every signature is then refused.
    key: Option<hmac::Key>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookVerifier(****)")
    }
}

impl WebhookVerifier {
    /// A verifier for `secret`; an empty secret refuses everything.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: (!secret.is_empty()).then(|| hmac::Key::new(hmac::HMAC_SHA256, secret)),
        }
    }

    /// Whether `header` (the `X-Hub-Signature-256` value) is `sha256=` followed
    /// by the hex HMAC of `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> bool {
        let (Some(key), Some(header)) = (&self.key, header) else {
            return false;
        };
        let Some(hex_digest) = header.strip_prefix(b"sha256=") else {
            return false;
        };
        let mut tag = [0u8; 32];
        if hex::decode_to_slice(hex_digest, &mut tag).is_err() {
            return false;
        }
        hmac::verify(key, body, &tag).is_ok()
    }
}

/// `sha256=<hex>` for `body` under `secret`: what GitHub would send.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const GITHUB_VECTOR: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_documented_test_vector() {
        assert_eq!(sign(SECRET, b"Hello, World!"), GITHUB_VECTOR);
        let v = WebhookVerifier::new(SECRET);
        assert!(v.verify(Some(GITHUB_VECTOR.as_bytes()), b"Hello, World!"));
    }

    #[test]
    fn refusals() {
        let v = WebhookVerifier::new(SECRET);
        let body = b"Hello, World!";
        let wrong_digest = GITHUB_VECTOR.replace("757107", "757108");
        let wrong_prefix = GITHUB_VECTOR.replace("sha256=", "sha1=");
        let short = &GITHUB_VECTOR[..GITHUB_VECTOR.len() - 2];
        for bad in [
            None,
            Some(""),
            Some("sha256="),
            Some(wrong_digest.as_str()),
            Some(wrong_prefix.as_str()),
            Some(short),
            Some(&GITHUB_VECTOR[7..]),
            Some("sha256=zz07ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
        ] {
            assert!(!v.verify(bad.map(str::as_bytes), body), "{bad:?}");
        }
        assert!(!v.verify(Some(GITHUB_VECTOR.as_bytes()), b"Hello, World?"));
    }

    #[test]
    fn no_secret_refuses_everything_including_an_empty_key_signature() {
        let v = WebhookVerifier::new(b"");
        let sig = sign(b"", b"{}");
        assert!(!v.verify(Some(sig.as_bytes()), b"{}"));
    }
}
