//! The config loader and validator (`Config::parse` / `parse_lenient`, what
//! `hookfan --config` and `check-config` run on the file's text).
//!
//! Input: the text of a config file. Relative paths resolve against a
//! directory that does not exist, so the file checks fail the same way
//! every time. Inputs whose `*listen` addresses are host names are skipped:
//! they would be resolved through DNS, which is neither fast nor
//! deterministic.

#![no_main]

use std::net::SocketAddr;
use std::path::Path;

use hookfan::config::Config;
use libfuzzer_sys::fuzz_target;

/// Whether `value` holds, under a key ending in `listen`, a `HOST:PORT`
/// that the loader would resolve.
fn resolves_a_host(value: &toml::Value, key: &str) -> bool {
    match value {
        toml::Value::String(s) if key.ends_with("listen") => {
            s.parse::<SocketAddr>().is_err()
                && s.rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        }
        toml::Value::Table(t) => t.iter().any(|(k, v)| resolves_a_host(v, k)),
        toml::Value::Array(a) => a.iter().any(|v| resolves_a_host(v, key)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(table) = text.parse::<toml::Table>()
        && table.iter().any(|(k, v)| resolves_a_host(v, k))
    {
        return;
    }
    let base = Path::new("/nonexistent/hookfan-fuzz");
    let (_, errors) = Config::parse_lenient(text, base);
    for e in &errors {
        assert!(!e.to_string().is_empty());
    }
    match Config::parse(text, base) {
        Ok(config) => {
            assert!(
                errors.is_empty(),
                "parse accepted what parse_lenient refused"
            );
            assert_eq!(config.base_dir, base);
        }
        Err(all) => assert_eq!(all.0.len(), errors.len()),
    }
});
