//! Bearer tokens: taking one from the `Authorization` header, checking that
//! it looks like a GitHub token, and keeping it out of logs.

use std::fmt;

use ring::digest;

/// A client's GitHub token. `Debug` and `Display` never show it; logs use
/// [`Token::fingerprint`].
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.fingerprint())
    }
}

impl Token {
    /// Wraps a token string (not checked; see [`Token::from_authorization`]).
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The token itself, for the one place that must send it (the GitHub API).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the token: the key of caches and token tables.
    pub fn sha256(&self) -> [u8; 32] {
        sha256(self.0.as_bytes())
    }

    /// A short, non-reversible identifier for logs: `sha256:` and the first
    /// 8 hex digits of the token's hash.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", &hex::encode(self.sha256())[..8])
    }

    /// Takes the token from an `Authorization` header value, refusing what
    /// PROTOCOL.md says gets a 403 before the upgrade.
    pub fn from_authorization(header: Option<&[u8]>) -> Result<Token, TokenRejection> {
        let header = header.ok_or(TokenRejection::Missing)?;
        let token = header
            .strip_prefix(b"Bearer ")
            .ok_or(TokenRejection::NotBearer)?;
        Self::from_bare(token)
    }

    /// Takes a token given without a scheme (a WebSocket subprotocol's),
    /// refusing one that does not look like a GitHub token.
    pub fn from_bare(token: &[u8]) -> Result<Token, TokenRejection> {
        let token = std::str::from_utf8(token).map_err(|_| TokenRejection::Malformed)?;
        if !looks_like_github_token(token) {
            return Err(TokenRejection::Malformed);
        }
        Ok(Token(token.to_owned()))
    }
}

pub(crate) fn sha256(b: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, b)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Why a request's token is refused before the upgrade (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    /// No `Authorization` header.
    Missing,
    /// Not the `Bearer ` scheme.
    NotBearer,
    /// Does not look like a GitHub token.
    Malformed,
    /// Offered as the `hookfan.bearer.<token>` subprotocol without
    /// `hookfan.v1`, which the server must be able to answer.
    BearerWithoutVersion,
}

impl fmt::Display for TokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing Authorization header",
            Self::NotBearer => "Authorization header must be 'Bearer <token>'",
            Self::Malformed => "token does not look like a GitHub token",
            Self::BearerWithoutVersion => {
                "the hookfan.bearer.<token> subprotocol must be offered with hookfan.v1"
            }
        })
    }
}

/// Length 40..255 and one of: `ghp_`/`gho_`/`ghs_` + 36 alphanumerics,
/// `github_pat_` + 36..255 of `[A-Za-z0-9_]`, or 40 alphanumerics.
pub fn looks_like_github_token(t: &str) -> bool {
    if !(40..=255).contains(&t.len()) {
        return false;
    }
    let alnum = |s: &str| s.bytes().all(|c| c.is_ascii_alphanumeric());
    if let Some(rest) = ["ghp_", "gho_", "ghs_"]
        .iter()
        .find_map(|p| t.strip_prefix(p))
    {
        return rest.len() == 36 && alnum(rest);
    }
    if let Some(rest) = t.strip_prefix("github_pat_") {
        return (36..=255).contains(&rest.len())
            && rest.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    }
    t.len() == 40 && alnum(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes() {
        let a36 = "a".repeat(36);
        for ok in [
            format!("ghp_{a36}"),
            format!("gho_{a36}"),
            format!("ghs_{a36}"),
            format!("github_pat_{a36}"),
            format!("github_pat_11ABC_{}", "x".repeat(60)),
            "0123456789abcdefABCDEF0123456789abcdef01".to_owned(),
        ] {
            assert!(looks_like_github_token(&ok), "{ok}");
        }
        for bad in [
            format!("ghp_{}", "a".repeat(35)),
            format!("ghp_{}", "a".repeat(37)),
            format!("ghp_{}-", "a".repeat(35)),
            format!("ghx_{a36}"),
            format!("github_pat_{}", "a".repeat(35)),
            format!("github_pat_{}", "a".repeat(245)),
            format!("github_pat_{}-", "a".repeat(40)),
            "0123456789abcdefABCDEF0123456789abcdef0".to_owned(),
            "0123456789abcdefABCDEF0123456789abcdef012".to_owned(),
            "0123456789abcdefABCDEF0123456789abcdef0!".to_owned(),
            String::new(),
        ] {
            assert!(!looks_like_github_token(&bad), "{bad}");
        }
    }

    #[test]
    fn authorization_header() {
        let t = format!("ghp_{}", "a".repeat(36));
        assert_eq!(
            Token::from_authorization(Some(format!("Bearer {t}").as_bytes())).unwrap(),
            Token::new(t.clone())
        );
        assert_eq!(
            Token::from_authorization(None),
            Err(TokenRejection::Missing)
        );
        assert_eq!(
            Token::from_authorization(Some(format!("token {t}").as_bytes())),
            Err(TokenRejection::NotBearer)
        );
        assert_eq!(
            Token::from_authorization(Some(format!("bearer {t}").as_bytes())),
            Err(TokenRejection::NotBearer)
        );
        assert_eq!(
            Token::from_authorization(Some(b"Bearer short")),
            Err(TokenRejection::Malformed)
        );
    }

    #[test]
    fn never_printed() {
        let t = Token::new(format!("ghp_{}", "s".repeat(36)));
        let shown = format!("{t:?}");
        assert!(!shown.contains("ssss"), "{shown}");
        assert!(shown.starts_with("Token(sha256:"));
        assert_eq!(t.fingerprint().len(), "sha256:".len() + 8);
    }
}
