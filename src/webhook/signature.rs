//! `X-Hub-Signature-256` verification: HMAC-SHA256 over the raw body, keyed
//! with the webhook secret (or each of several, during a rotation),
//! compared in constant time by `ring`.

use ring::hmac;

/// Verifies `X-Hub-Signature-256` headers with one secret, or several (a
/// signature is then accepted when any of them verifies it), each
/// comparison in constant time. Cheap to share between threads
/// (`Send + Sync`).
///
/// In two steps, so that a request whose header cannot be right is refused
/// before its body is read: [`WebhookVerifier::parse_header`], then
/// [`WebhookVerifier::check`] once the body is in.
pub struct WebhookVerifier {
    /// The keys in order, each with the line of the secret it was made
    /// from; none when no secret is configured: every signature is then
    /// refused.
    keys: Vec<(usize, hmac::Key)>,
}

/// A well-formed `X-Hub-Signature-256`: the 32-byte tag it names. Its
/// `Debug` output is masked: signatures stay out of logs.
pub struct Signature([u8; 32]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signature(****)")
    }
}

/// Why a webhook's signature was refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No secret is configured: every webhook is refused.
    NoSecret,
    /// No `X-Hub-Signature-256` header.
    Missing,
    /// Not `sha256=` followed by exactly 64 hex digits.
    Malformed,
    /// Well-formed, but not the HMAC of the body under the secret.
    Wrong,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoSecret => "no webhook secret is configured",
            Self::Missing => "no X-Hub-Signature-256 header",
            Self::Malformed => "X-Hub-Signature-256 is not sha256= and 64 hex digits",
            Self::Wrong => "X-Hub-Signature-256 does not match the body",
        })
    }
}

impl std::error::Error for SignatureError {}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookVerifier(****)")
    }
}

impl WebhookVerifier {
    /// A verifier for `secret`; an empty secret refuses everything.
    pub fn new(secret: &[u8]) -> Self {
        Self::with_secrets([(1, secret)])
    }

    /// A verifier accepting a signature made with any of `secrets`, tried
    /// in order; each is given with its line (what
    /// [`WebhookVerifier::matching_line`] answers). Empty secrets are left
    /// out; with none, everything is refused.
    pub fn with_secrets<'a>(secrets: impl IntoIterator<Item = (usize, &'a [u8])>) -> Self {
        Self {
            keys: (secrets.into_iter())
                .filter(|(_, s)| !s.is_empty())
                .map(|(line, s)| (line, hmac::Key::new(hmac::HMAC_SHA256, s)))
                .collect(),
        }
    }

    /// The lines of the secrets it accepts, in the order they are tried.
    pub fn lines(&self) -> impl Iterator<Item = usize> + '_ {
        self.keys.iter().map(|(line, _)| *line)
    }

    /// The tag named by `header` (the `X-Hub-Signature-256` value), before
    /// the body is read: refused when there is no secret, no header, or a
    /// header other than `sha256=` and 64 hex digits.
    pub fn parse_header(&self, header: Option<&[u8]>) -> Result<Signature, SignatureError> {
        if self.keys.is_empty() {
            return Err(SignatureError::NoSecret);
        }
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_digest = header
            .strip_prefix(b"sha256=")
            .ok_or(SignatureError::Malformed)?;
        let mut tag = [0u8; 32];
        // Exactly 64 digits: decoding into 32 bytes refuses any other length.
        hex::decode_to_slice(hex_digest, &mut tag).map_err(|_| SignatureError::Malformed)?;
        Ok(Signature(tag))
    }

    /// Whether `signature` is the HMAC of `body` under one of the secrets.
    pub fn check(&self, signature: &Signature, body: &[u8]) -> Result<(), SignatureError> {
        self.matching(signature, body).map(|_| ())
    }

    /// The line of the first secret under which `signature` is the HMAC of
    /// `body`.
    pub fn matching_line(
        &self,
        signature: &Signature,
        body: &[u8],
    ) -> Result<usize, SignatureError> {
        self.matching(signature, body).map(|i| self.keys[i].0)
    }

    /// The index of the first key under which `signature` is the HMAC of
    /// `body`. Each comparison is constant-time (`ring`); stopping at the
    /// first match tells a sender only which of the secrets it holds.
    pub(crate) fn matching(
        &self,
        signature: &Signature,
        body: &[u8],
    ) -> Result<usize, SignatureError> {
        if self.keys.is_empty() {
            return Err(SignatureError::NoSecret);
        }
        (self.keys.iter())
            .position(|(_, key)| hmac::verify(key, body, &signature.0).is_ok())
            .ok_or(SignatureError::Wrong)
    }

    /// Both steps at once: whether `header` is `sha256=` followed by the hex
    /// HMAC of `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> bool {
        self.parse_header(header)
            .and_then(|s| self.check(&s, body))
            .is_ok()
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
    fn the_header_is_parsed_before_the_body() {
        let v = WebhookVerifier::new(SECRET);
        let tag = v.parse_header(Some(GITHUB_VECTOR.as_bytes())).unwrap();
        assert_eq!(v.check(&tag, b"Hello, World!"), Ok(()));
        assert_eq!(v.check(&tag, b"Hello, World?"), Err(SignatureError::Wrong));
        assert_eq!(format!("{tag:?}"), "Signature(****)");
        let upper = format!("sha256={}", GITHUB_VECTOR[7..].to_uppercase());
        assert!(
            v.parse_header(Some(upper.as_bytes())).is_ok(),
            "hex is case-insensitive"
        );
        assert_eq!(v.parse_header(None).unwrap_err(), SignatureError::Missing);
        let long = format!("{GITHUB_VECTOR}00");
        let spaced = format!("{GITHUB_VECTOR} ");
        for bad in [
            "",
            "sha256=",
            &GITHUB_VECTOR[..GITHUB_VECTOR.len() - 1],
            &GITHUB_VECTOR[..GITHUB_VECTOR.len() - 2],
            long.as_str(),
            spaced.as_str(),
            &GITHUB_VECTOR.replace("sha256=", "sha1="),
            &GITHUB_VECTOR.replace("sha256=", "SHA256="),
            &GITHUB_VECTOR[7..],
            "sha256=zz07ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ] {
            assert_eq!(
                v.parse_header(Some(bad.as_bytes())).unwrap_err(),
                SignatureError::Malformed,
                "{bad:?}"
            );
        }
        assert_eq!(
            WebhookVerifier::new(b"")
                .parse_header(Some(GITHUB_VECTOR.as_bytes()))
                .unwrap_err(),
            SignatureError::NoSecret
        );
    }

    #[test]
    fn any_of_several_secrets_verifies_and_names_its_line() {
        let body = b"Hello, World!";
        let v = WebhookVerifier::with_secrets([(1, &b"new"[..]), (3, b""), (4, SECRET)]);
        assert_eq!(
            v.lines().collect::<Vec<_>>(),
            [1, 4],
            "the empty one left out"
        );
        for (secret, line) in [(&b"new"[..], 1), (SECRET, 4)] {
            let sig = v.parse_header(Some(sign(secret, body).as_bytes())).unwrap();
            assert_eq!(v.matching_line(&sig, body), Ok(line));
            assert_eq!(v.check(&sig, body), Ok(()));
        }
        for other in [&b"old"[..], b"", b"new\n"] {
            let sig = v.parse_header(Some(sign(other, body).as_bytes())).unwrap();
            assert_eq!(v.matching_line(&sig, body), Err(SignatureError::Wrong));
        }
        let none = WebhookVerifier::with_secrets([(1, &b""[..])]);
        assert_eq!(none.lines().count(), 0);
        assert!(!none.verify(Some(GITHUB_VECTOR.as_bytes()), body));
    }

    #[test]
    fn no_secret_refuses_everything_including_an_empty_key_signature() {
        let v = WebhookVerifier::new(b"");
        let sig = sign(b"", b"{}");
        assert!(!v.verify(Some(sig.as_bytes()), b"{}"));
    }
}
