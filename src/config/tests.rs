//! The file as a whole: defaults, the lenient layer's keyed errors, and each
//! section's checks reached through it.

use super::*;
use crate::tier::Tier;

fn errors(text: &str) -> Vec<ConfigError> {
    Config::parse(text, Path::new("/etc/hookfan"))
        .unwrap_err()
        .0
}

fn keys(text: &str) -> Vec<String> {
    errors(text).into_iter().map(|e| e.key).collect()
}

#[test]
fn empty_file_gives_the_documented_defaults() {
    let c = Config::parse("", Path::new("/x")).unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.server.handshake_timeout_s, 5);
    assert_eq!(c.server.ping_interval_s, 54);
    assert_eq!(c.server.read_timeout_s, 90);
    assert_eq!(c.server.shutdown_timeout_s, 10);
    assert_eq!(c.webhook.max_payload_bytes, 26_214_400);
    assert!(!c.payloads.enabled);
    assert_eq!(
        c.payloads.tiers,
        [crate::tier::Tier::Pro, crate::tier::Tier::Flock]
    );
    assert_eq!(c.webhook.allowed_events, vec!["*"]);
    assert_eq!(c.webhook.commit_cache_entries, 100_000);
    assert_eq!(c.webhook.commit_cache_ttl_s, 86_400);
    assert_eq!(c.webhook.body_timeout_s, 10);
    assert_eq!(c.webhook.max_concurrent_requests, 64);
    assert_eq!(c.webhook.max_inflight_bytes, 268_435_456);
    assert_eq!(c.webhook.dedup_entries, 100_000);
    assert_eq!(c.webhook.dedup_window_s, 259_200);
    assert_eq!(c.broker.shards, 0);
    assert_eq!(c.broker.client_queue, 256);
    assert_eq!(c.broker.slow_client, SlowClientPolicy::Drop);
    assert_eq!(c.auth.provider, AuthProviderKind::Github);
    assert_eq!(c.auth.github_api_url, "https://api.github.com");
    assert_eq!(c.auth.cache_ttl_s, 300);
    assert_eq!(c.auth.negative_cache_ttl_s, 30);
    assert_eq!(c.auth.max_concurrent_api_requests, 32);
    assert_eq!(c.auth.recheck_interval_s, 300);
    assert_eq!(c.auth.max_failed_checks_per_ip, 30);
    assert_eq!(c.limits.max_conns_per_ip, 10);
    assert_eq!(c.limits.max_conns_total, 100_000);
    assert!(c.limits.trusted_proxies.is_empty());
    assert!(c.tiers.enforce, "private events are withheld by default");
    assert_eq!(c.tiers.default_tier, Tier::Free);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.replay.max_events, 100_000);
    assert_eq!(c.replay.max_bytes, 67_108_864);
    assert_eq!(c.replay.max_age_s, 3600);
}

#[test]
fn max_failed_checks_per_ip_is_range_checked_by_its_key() {
    for ok in ["0", "1", "10000"] {
        let c = Config::parse(
            &format!("[auth]\nmax_failed_checks_per_ip = {ok}\n"),
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(c.auth.max_failed_checks_per_ip.to_string(), ok);
    }
    for bad in ["10001", "-1", "\"30\""] {
        let e = errors(&format!("[auth]\nmax_failed_checks_per_ip = {bad}\n"));
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert_eq!(e[0].key, "auth.max_failed_checks_per_ip", "{bad}");
    }
    let e = errors("[auth]\nmax_failed_checks_per_ip = 20000\n");
    assert!(
        e[0].message.contains("0 (no limit) ..=10000"),
        "{}",
        e[0].message
    );
}

#[test]
fn unknown_key_is_named() {
    let e = errors("[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 9\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].key, "server.listen_port");
    assert!(e[0].message.contains("unknown field"), "{}", e[0].message);
}

#[test]
fn unknown_section_is_named() {
    assert_eq!(keys("[sever]\nlisten = \"x\"\n"), vec!["sever"]);
}

#[test]
fn every_bad_value_is_reported_with_its_key() {
    let text = r#"
[server]
listen = "not an address"
handshake_timeout_s = 0
ping_interval_s = 60
read_timeout_s = 30
[webhook]
max_payload_bytes = 10
allowed_events = ["pull_request", "Push!"]
commit_cache_ttl_s = 0
[broker]
shards = 1000
client_queue = 0
slow_client = "explode"
[auth]
provider = "ldap"
github_api_url = "ftp://example"
max_concurrent_api_requests = 0
recheck_interval_s = 0
[limits]
max_conns_per_ip = 0
max_conns_total = -1
trusted_proxies = ["10.0.0.0/33"]
[tiers]
enforce = "yes"
default_tier = "gold"
pro = ["bad login!"]
[log]
level = "loud"
format = "xml"
[replay]
max_events = -1
max_bytes = 10
max_age_s = 0
"#;
    let mut got = keys(text);
    got.sort();
    let mut want = vec![
        "server.listen",
        "server.handshake_timeout_s",
        "server.read_timeout_s",
        "webhook.max_payload_bytes",
        "webhook.allowed_events",
        "webhook.commit_cache_ttl_s",
        "broker.shards",
        "broker.client_queue",
        "broker.slow_client",
        "auth.provider",
        "auth.github_api_url",
        "auth.max_concurrent_api_requests",
        "auth.recheck_interval_s",
        "limits.max_conns_per_ip",
        "limits.max_conns_total",
        "limits.trusted_proxies",
        "tiers.enforce",
        "tiers.default_tier",
        "tiers.pro",
        "log.level",
        "log.format",
        "replay.max_events",
        "replay.max_bytes",
        "replay.max_age_s",
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn type_errors_say_what_was_expected() {
    let e = errors("[broker]\nslow_client = \"explode\"\n");
    assert_eq!(e[0].key, "broker.slow_client");
    assert!(e[0].message.contains("drop") && e[0].message.contains("disconnect"));
    let e = errors("[server]\nlisten = 8080\n");
    assert_eq!(e[0].key, "server.listen");
}

#[test]
fn syntax_errors_name_line_and_column() {
    let e = errors("[server\n");
    assert_eq!(e[0].key, "config");
    assert!(
        e[0].message
            .starts_with("TOML syntax error at line 1, column 8:"),
        "{}",
        e[0].message
    );
    let e = errors("[server]\nlisten = \"127.0.0.1:80\"\nping_interval_s = = 5\n");
    assert!(
        e[0].message
            .starts_with("TOML syntax error at line 3, column 19:"),
        "{}",
        e[0].message
    );
}

#[test]
fn listen_takes_an_ip_or_a_host_name() {
    let c = Config::parse("[server]\nlisten = \"localhost:8081\"\n", Path::new("/x")).unwrap();
    assert!(c.server.listen.ip().is_loopback(), "{}", c.server.listen);
    assert_eq!(c.server.listen.port(), 8081);
    let c = Config::parse("[server]\nlisten = \"[::1]:9\"\n", Path::new("/x")).unwrap();
    assert_eq!(c.server.listen.to_string(), "[::1]:9");
    let e = errors("[server]\nlisten = \"localhost\"\n");
    assert_eq!(e[0].key, "server.listen");
    assert!(
        e[0].message.contains("IP:PORT or HOST:PORT"),
        "{}",
        e[0].message
    );
    let e = errors("[server]\nlisten = \"no-such-host.invalid:80\"\n");
    assert_eq!(e[0].key, "server.listen");
    assert!(e[0].message.contains("cannot resolve"), "{}", e[0].message);
    let e = errors("[server]\nmetrics_listen = \"127.0.0.1:99999\"\n");
    assert_eq!(e[0].key, "server.metrics_listen");
}

#[test]
fn allowed_origins_are_read_as_browsers_send_them_and_a_bad_one_is_named() {
    assert!(Config::default().server.allowed_origins.is_empty());
    let c = Config::parse(
        "[server]\nallowed_origins = [\"HTTPS://Dash.Example:443\", \"http://127.0.0.1:3000\"]\n",
        Path::new("/x"),
    )
    .unwrap();
    let read: Vec<String> = c
        .ws_options()
        .allowed_origins
        .iter()
        .map(|o| o.to_string())
        .collect();
    assert_eq!(read, ["https://dash.example", "http://127.0.0.1:3000"]);
    // What check-config prints is what is in effect.
    let printed = toml::to_string(&c.server).unwrap();
    assert!(
        printed.contains(r#"allowed_origins = ["https://dash.example", "http://127.0.0.1:3000"]"#),
        "{printed}"
    );
    for (bad, message) in [
        (
            "https://x.example/",
            "\"https://x.example/\" is not an origin (scheme://host[:port])",
        ),
        (
            "dash.example",
            "\"dash.example\" is not an origin (scheme://host[:port])",
        ),
        (
            "*",
            "\"*\" is not supported: list each origin (tokens are bearer credentials)",
        ),
    ] {
        let e = errors(&format!(
            "[server]\nallowed_origins = [\"https://ok.example\", {bad:?}]\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0].to_string(),
            format!("server.allowed_origins: {message}")
        );
    }
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let c = Config::parse(
        "[webhook]\nsecret_file = \"s.txt\"\n[auth]\nprovider = \"static\"\ntokens_file = \"/abs/t.toml\"\n",
        Path::new("/etc/hookfan"),
    )
    .unwrap();
    assert_eq!(
        c.webhook.secret_file.as_deref(),
        Some(Path::new("/etc/hookfan/s.txt"))
    );
    assert_eq!(
        c.auth.tokens_file.as_deref(),
        Some(Path::new("/abs/t.toml"))
    );
}

#[test]
fn resolved_paths_are_absolute_whatever_the_base() {
    let cwd = std::env::current_dir().unwrap();
    let text = "[webhook]\nsecret_file = \"s.txt\"\n[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n";
    // "" is the directory of `--config hookfan.toml`.
    for (base, dir) in [
        ("conf", cwd.join("conf")),
        ("", cwd.clone()),
        ("./conf/../etc", cwd.join("conf/../etc")),
        ("/etc/hookfan", PathBuf::from("/etc/hookfan")),
    ] {
        let c = Config::parse(text, Path::new(base)).unwrap();
        assert_eq!(c.base_dir, dir, "{base:?}");
        assert_eq!(c.webhook.secret_file, Some(dir.join("s.txt")), "{base:?}");
        let tls = c.server.tls.unwrap();
        assert_eq!(tls.key_file, Some(dir.join("k.pem")), "{base:?}");
        assert!(tls.cert_file.unwrap().is_absolute(), "{base:?}");
    }
}

#[test]
fn defaults_are_the_runtime_types_own() {
    let c = Config::default();
    assert_eq!(
        format!("{:?}", c.ws_options()),
        format!("{:?}", WsOptions::default())
    );
    assert_eq!(
        format!("{:?}", c.webhook_options()),
        format!("{:?}", crate::WebhookOptions::default())
    );
    let (hub, default) = (c.hub_config(), HubConfig::default());
    assert_eq!(hub.replay, default.replay);
    assert_eq!(
        (hub.client_queue, hub.slow_client, hub.enforce_tiers),
        (
            default.client_queue,
            default.slow_client,
            default.enforce_tiers
        )
    );
}

#[test]
fn every_section_is_validated() {
    let mut got = keys("[server.tls]\ncert_file = \"c.pem\"\n[cluster]\nreplicas = 0\n");
    got.sort();
    assert_eq!(got, ["cluster.replicas", "server.tls.key_file"]);
}

#[test]
fn per_ip_rates_default_from_the_connection_limit_and_are_range_checked() {
    let parse = |text: &str| Config::parse(text, Path::new("/x")).unwrap();
    let c = parse("");
    assert_eq!(c.limits.upgrades_per_ip_per_minute, None);
    assert_eq!(
        c.limits.upgrades_per_minute(),
        60,
        "six times max_conns_per_ip"
    );
    assert_eq!(c.limits.rate_table_entries, 100_000);
    assert_eq!(c.webhook.max_bad_signatures_per_ip_per_minute, 30);
    // Raising the connection limit raises the default with it.
    let c = parse("[limits]\nmax_conns_per_ip = 500\n");
    assert_eq!(c.ws_options().upgrades_per_ip_per_minute, 3000);
    // Set: as set, 0 turning it off.
    let c = parse("[limits]\nmax_conns_per_ip = 500\nupgrades_per_ip_per_minute = 0\n");
    assert_eq!(c.ws_options().upgrades_per_ip_per_minute, 0);
    let c = parse(
        "[limits]\nrate_table_entries = 100\n[webhook]\nmax_bad_signatures_per_ip_per_minute = 0\n",
    );
    assert_eq!(c.webhook_options().rate_table_entries, 100);
    assert_eq!(c.ws_options().rate_table_entries, 100);
    assert_eq!(c.webhook_options().max_bad_signatures_per_ip_per_minute, 0);

    let messages = |text: &str| {
        errors(text)
            .into_iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        messages("[limits]\nrate_table_entries = 99\nupgrades_per_ip_per_minute = 1000001\n"),
        [
            "limits.upgrades_per_ip_per_minute: must be at most 1000000, got 1000001",
            "limits.rate_table_entries: must be 100..=10000000, got 99",
        ]
    );
    assert_eq!(
        messages("[webhook]\nmax_bad_signatures_per_ip_per_minute = 10001\n"),
        ["webhook.max_bad_signatures_per_ip_per_minute: must be at most 10000, got 10001"]
    );
    assert_eq!(
        keys("[limits]\nupgrades_per_ip_per_minute = -1\n"),
        ["limits.upgrades_per_ip_per_minute"]
    );
}
