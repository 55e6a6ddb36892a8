//! The token of a client that cannot set headers: a browser's WebSocket
//! offers it as a subprotocol, `Sec-WebSocket-Protocol: hookfan.v1,
//! hookfan.bearer.<token>`, and the server answers `hookfan.v1` (never the
//! token: the answer must be one of the offered values, and this one says
//! nothing secret).

use hyper::header::{self, HeaderMap};

use crate::auth::{Token, TokenRejection};

/// The protocol version a client offers, and the server answers.
pub const SUBPROTOCOL: &str = "hookfan.v1";

/// The prefix of the subprotocol carrying the token.
const BEARER_PREFIX: &[u8] = b"hookfan.bearer.";

/// What a request offers in its `Sec-WebSocket-Protocol` headers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offered<'a> {
    /// `hookfan.v1` is offered: the upgrade answers it.
    pub(crate) version: bool,
    /// The `<token>` of `hookfan.bearer.<token>`, the first one offered.
    pub(crate) bearer: Option<&'a [u8]>,
}

impl<'a> Offered<'a> {
    /// Reads every `Sec-WebSocket-Protocol` header (comma-separated lists).
    pub(crate) fn read(headers: &'a HeaderMap) -> Self {
        let mut offered = Offered::default();
        let values = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL);
        for item in values
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        {
            let item = item.trim_ascii();
            if item == SUBPROTOCOL.as_bytes() {
                offered.version = true;
            } else if let Some(token) = item.strip_prefix(BEARER_PREFIX) {
                offered.bearer = offered.bearer.or(Some(token));
            }
        }
        offered
    }

    /// The token when the request has no `Authorization` header: `None`
    /// when none is offered either.
    pub(crate) fn token(&self) -> Option<Result<Token, TokenRejection>> {
        let bearer = self.bearer?;
        if !self.version {
            return Some(Err(TokenRejection::BearerWithoutVersion));
        }
        Some(Token::from_bare(bearer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::SEC_WEBSOCKET_PROTOCOL, v.parse().unwrap());
        }
        h
    }

    fn token() -> String {
        format!("ghp_{}", "t".repeat(36))
    }

    #[test]
    fn the_token_comes_with_the_version() {
        let h = offered(&[&format!("hookfan.v1, hookfan.bearer.{}", token())]);
        let o = Offered::read(&h);
        assert_eq!(o.token(), Some(Ok(Token::new(token()))));
        assert!(o.version);
        // Over two headers, in the other order, with spaces.
        let h = offered(&[&format!(" hookfan.bearer.{} ", token()), "chat ,hookfan.v1"]);
        assert_eq!(Offered::read(&h).token(), Some(Ok(Token::new(token()))));
    }

    #[test]
    fn refusals() {
        let h = offered(&[&format!("hookfan.bearer.{}", token())]);
        assert_eq!(
            Offered::read(&h).token(),
            Some(Err(TokenRejection::BearerWithoutVersion))
        );
        assert!(!Offered::read(&h).version);
        let h = offered(&["hookfan.v1, hookfan.bearer.short"]);
        assert_eq!(
            Offered::read(&h).token(),
            Some(Err(TokenRejection::Malformed))
        );
        // The version alone is no token: the Authorization header decides.
        let h = offered(&["hookfan.v1"]);
        assert_eq!(Offered::read(&h).token(), None);
        assert_eq!(Offered::read(&HeaderMap::new()), Offered::default());
    }
}
