//! The server URLs a subscriber is given: normalized, and refused when
//! `ws://` would carry the token off this machine.

use super::ClientError;

/// `ws://host:port` or `wss://...`, with `/ws` when there is no path.
pub(super) fn normalize_url(s: &str) -> Result<String, ClientError> {
    let rest = s
        .strip_prefix("ws://")
        .or_else(|| s.strip_prefix("wss://"))
        .ok_or_else(|| {
            ClientError::Config(format!(
                "{s:?}: the server URL must start with ws:// or wss://"
            ))
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(ClientError::Config(format!("{s:?}: no host")));
    }
    Ok(if rest.contains('/') {
        s.to_owned()
    } else {
        format!("{s}/ws")
    })
}

/// Refuses `url` (normalized from `server`) when it is `ws://` to a host
/// that is not loopback: the token would leave the machine unencrypted.
/// The host is read as the connection will read it (`http::Uri`); a name
/// other than `localhost` is not resolved, so it counts as remote.
pub(super) fn refuse_insecure(server: &str, url: &str) -> Result<(), ClientError> {
    if !url.starts_with("ws://") {
        return Ok(());
    }
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| ClientError::Config(format!("{server}: {e}")))?;
    if uri.host().is_some_and(is_loopback_host) {
        Ok(())
    } else {
        Err(ClientError::InsecureServer {
            server: server.to_owned(),
        })
    }
}

/// `localhost`, or an address in 127.0.0.0/8 or `::1` (in brackets, as in
/// a URL; `::ffff:127.x.y.z` too).
fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    literal
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(server: &str) -> bool {
        let url = normalize_url(server).unwrap();
        match refuse_insecure(server, &url) {
            Ok(()) => false,
            Err(ClientError::InsecureServer { server: s }) => {
                assert_eq!(s, server);
                true
            }
            Err(e) => panic!("{server}: {e}"),
        }
    }

    #[test]
    fn ws_only_to_loopback_hosts() {
        for ok in [
            "ws://127.0.0.1:8080",
            "ws://127.1.2.3/ws",
            "ws://[::1]:8080",
            "ws://[::ffff:127.0.0.1]:8080",
            "ws://localhost:8080",
            "ws://LocalHost",
            "wss://example.com",
            "wss://203.0.113.1:443/ws",
        ] {
            assert!(!refused(ok), "{ok}");
        }
        for remote in [
            "ws://example.com/ws",
            "ws://203.0.113.1:8080",
            "ws://10.0.0.1",
            "ws://[::2]:8080",
            "ws://[fe80::1]",
            "ws://0.0.0.0:8080",
            // Names are not resolved, however they look.
            "ws://localhost.example.com",
            "ws://127.0.0.1.nip.io",
            "ws://localhost.",
            // The host is what follows the user info.
            "ws://127.0.0.1@example.com/ws",
        ] {
            assert!(refused(remote), "{remote}");
        }
    }

    #[test]
    fn urls_get_their_path() {
        assert_eq!(normalize_url("ws://h:1").unwrap(), "ws://h:1/ws");
        assert_eq!(normalize_url("wss://h").unwrap(), "wss://h/ws");
        assert_eq!(normalize_url("ws://h:1/x/ws").unwrap(), "ws://h:1/x/ws");
        assert_eq!(
            normalize_url("http://h").unwrap_err().to_string(),
            r#""http://h": the server URL must start with ws:// or wss://"#
        );
        assert_eq!(
            normalize_url("ws://").unwrap_err().to_string(),
            r#""ws://": no host"#
        );
    }
}
