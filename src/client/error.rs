//! Why a subscriber stopped, and how one connection attempt can fail.

/// Why a subscriber stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server refused in a way that retrying cannot fix.
    #[error("{message} ({code})")]
    Refused {
        /// The error code (or the HTTP status, as `http_401` ...).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// A `ws://` server that is not on this machine: the token would cross
    /// the network unencrypted. Use `wss://`, or set
    /// [`ClientConfig::allow_insecure`](super::ClientConfig::allow_insecure).
    #[error(
        "{server}: refusing to send the token unencrypted over ws:// to a host that is not loopback; use wss://"
    )]
    InsecureServer {
        /// The server URL, as given.
        server: String,
    },
}

/// How a connection attempt failed.
pub(super) enum Failure {
    /// Retrying cannot help: the subscription ends.
    Fatal(ClientError),
    /// Try again (on the next server, after a delay); the text says why.
    Retry(String),
}

#[cfg(test)]
mod tests {
    use super::ClientError;

    #[test]
    fn texts() {
        let refused = ClientError::Refused {
            code: "access_denied".into(),
            message: "no".into(),
        };
        assert_eq!(refused.to_string(), "no (access_denied)");
        assert_eq!(ClientError::Config("x".into()).to_string(), "x");
    }
}
