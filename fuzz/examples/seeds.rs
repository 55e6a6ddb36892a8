//! Writes the seed corpora kept in `fuzz/seeds/<target>/` (and nothing
//! else), from the project's own fixtures and the messages its tests use:
//!
//!   cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! Deterministic: run again, the same files come out. Each file is named
//! after what it holds. Not a fuzz target (`cargo fuzz` builds only bins).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use hookfan::CommitCache;
use hookfan::fuzzing::{encode_stream_message, parse_webhook};

/// The webhook target's event types, in its order (fuzz_targets/webhook.rs).
const KINDS: [&str; 16] = [
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "issue_comment",
    "check_run",
    "check_suite",
    "status",
    "workflow_run",
    "push",
    "ping",
    "issues",
    "workflow_job",
    "release",
    "",
    "made_up",
];

const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Replaces `fuzz/seeds/<target>/` with `files`.
fn write(target: &str, files: &[(String, Vec<u8>)]) {
    let dir = root().join("fuzz/seeds").join(target);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
    println!("{target}: {} seeds", files.len());
}

/// JSON without the whitespace between tokens (keys keep their order).
fn minify(json: &[u8]) -> Vec<u8> {
    let (mut out, mut in_string, mut escaped) = (Vec::with_capacity(json.len()), false, false);
    for &b in json {
        if in_string {
            out.push(b);
            (in_string, escaped) = match (escaped, b) {
                (true, _) => (true, false),
                (false, b'\\') => (true, true),
                (false, b'"') => (false, false),
                _ => (true, false),
            };
        } else if !b.is_ascii_whitespace() {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

/// The fixtures, sorted: (file stem, X-GitHub-Event, minified body).
fn fixtures() -> Vec<(String, String, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = fs::read_dir(root().join("tests/fixtures/webhooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_owned();
            let kind = stem.split('.').next().unwrap().to_owned();
            (stem, kind, minify(&fs::read(p).unwrap()))
        })
        .collect()
}

fn webhook_input(kind: &str, prime: bool, delivery: &str, body: &[u8]) -> Vec<u8> {
    let i = KINDS.iter().position(|k| *k == kind).expect("a known kind") as u8;
    let mut out = vec![i | if prime { 0x80 } else { 0 }, delivery.len() as u8];
    out.extend_from_slice(delivery.as_bytes());
    out.extend_from_slice(body);
    out
}

fn webhook() {
    let mut files: Vec<(String, Vec<u8>)> = fixtures()
        .into_iter()
        .map(|(stem, kind, body)| (stem, webhook_input(&kind, false, DELIVERY, &body)))
        .collect();
    // The rules of extract.rs, one small body each.
    let repo = r#""repository":{"html_url":"https://github.com/o/r","full_name":"o/r","private":true,"owner":{"login":"O"}}"#;
    let small: [(&str, &str, bool, String); 10] = [
        ("small.check_run.html_url", "check_run", false, format!(r#"{{"check_run":{{"head_sha":"s","pull_requests":[{{"html_url":"https://x/o/r/pull/9","number":2}}]}},{repo}}}"#)),
        ("small.check_run.number", "check_run", false, format!(r#"{{"check_run":{{"head_sha":"s","pull_requests":[{{"number":2}}]}},{repo}}}"#)),
        ("small.check_suite.through-cache", "check_suite", true, format!(r#"{{"pull_request":{{"html_url":"https://github.com/o/r/pull/5","number":5,"head":{{"sha":"s"}}}},"check_suite":{{"head_sha":"s","pull_requests":[]}},{repo}}}"#)),
        ("small.status.through-cache", "status", true, r#"{"sha":"s","pull_request":{"html_url":"https://github.com/o/r/pull/3","number":3,"head":{"sha":"s"}}}"#.to_owned()),
        ("small.workflow_run.number", "workflow_run", false, format!(r#"{{"workflow_run":{{"head_sha":"s","pull_requests":[{{"number":4}}]}},{repo}}}"#)),
        ("small.issue_comment.mentions", "issue_comment", false, r#"{"issue":{"html_url":"https://github.com/o/r/pull/1","pull_request":{"url":"u"},"user":{"login":"a"}},"comment":{"user":{"login":"b"},"body":"hi @Alice and @bob-2, cc @alice, mail a@b.c"},"organization":{"login":"Org"},"sender":{"login":"c"}}"#.to_owned()),
        ("small.pull_request.users", "pull_request", false, r#"{"pull_request":{"html_url":"https://github.com/o/r/pull/7","number":7,"head":{"sha":"h"},"user":{"login":"A"},"assignee":{"login":"b"},"assignees":[{"login":"b"},{"login":"C"}],"requested_reviewers":[{"login":"d"}]},"requested_reviewer":{"login":"e"},"sender":{"login":"f"}}"#.to_owned()),
        ("small.pull_request.odd-types", "pull_request", false, r#"{"pull_request":{"html_url":7},"repository":"x","sender":[]}"#.to_owned()),
        ("small.push.unicode", "push", false, r#"{"ref":"refs/heads/m\u00e9","repository":{"html_url":"https://github.com/o/r"},"n":[1.5e3,-0,null,true]}"#.to_owned()),
        // Found by this target (loadtest/RESULTS.md, "Fuzzing").
        ("regression.big-integers", "pull_request", false, r#"{"pull_request":{"html_url":"https://github.com/o/r/pull/1","changed_files":184467440737095516164},"n":-9223372036854775809}"#.to_owned()),
    ];
    for (name, kind, prime, body) in small {
        files.push((
            name.to_owned(),
            webhook_input(kind, prime, DELIVERY, body.as_bytes()),
        ));
    }
    files.push((
        "small.pull_request.odd-delivery".to_owned(),
        webhook_input(
            "pull_request",
            false,
            "id with spaces\t\"quotes\" \\ <>",
            br#"{"pull_request":{"html_url":"https://github.com/o/r/pull/1"}}"#,
        ),
    ));
    write("webhook", &files);
}

fn subscription() {
    let long_ok: Vec<String> = (1..=3)
        .map(|i| format!("https://github.com/acme/api/pull/{i}"))
        .collect();
    let messages: Vec<(&str, String)> = vec![
        ("empty", "{}".into()),
        ("org", r#"{"organization":"acme"}"#.into()),
        ("org-star", r#"{"organization":"*"}"#.into()),
        ("org-invalid", r#"{"organization":"bad org"}"#.into()),
        ("user-events", r#"{"user_events_only":true}"#.into()),
        ("pr", r#"{"pull_requests":["https://github.com/o/r/pull/1"]}"#.into()),
        ("pr-gitlab", r#"{"pull_requests":["https://gitlab.com/a/b/pull/1"]}"#.into()),
        ("prs", serde_json::json!({"organization": "acme", "pull_requests": long_ok}).to_string()),
        ("event-types", r#"{"organization":"acme","event_types":["push"]}"#.into()),
        ("event-type-invalid", r#"{"event_types":["Push"]}"#.into()),
        ("everything", r#"{"organization":"acme","event_types":["pull_request"],"pull_requests":["https://github.com/acme/api/pull/7"],"user_events_only":true,"client_version":"9","organization_id":null}"#.into()),
        ("nulls", r#"{"organization":null,"event_types":null,"pull_requests":null,"user_events_only":null}"#.into()),
        ("username-ignored", r#"{"organization":"acme","username":"mallory"}"#.into()),
        ("resume", r#"{"organization":"acme","resume":{"epoch":"6f1c9e2a","after":1030}}"#.into()),
        ("resume-null", r#"{"resume":null}"#.into()),
        ("resume-not-object", r#"{"resume":5}"#.into()),
        ("resume-no-after", r#"{"resume":{"epoch":"e"}}"#.into()),
        ("resume-bad-epoch", r#"{"resume":{"epoch":"a b","after":1}}"#.into()),
        ("resume-negative", r#"{"resume":{"epoch":"e","after":-1}}"#.into()),
        ("resume-float", r#"{"resume":{"epoch":"e","after":1.5}}"#.into()),
        ("unknown-fields", r#"{"org":"acme","event_type":["push"],"pullRequests":[],"user_event_only":true,"colour":"blue"}"#.into()),
        ("unknown-many", format!("{{{}}}", (0..12).map(|i| format!("\"x{i}\":{i}")).collect::<Vec<_>>().join(","))),
        ("array", "[]".into()),
        ("ping", r#"{"type":"ping","seq":41}"#.into()),
        ("escapes", r#" {"organization":"ac\u006de","event_types":["pull_request","check_run"]}"#.into()),
    ];
    let files: Vec<(String, Vec<u8>)> = messages
        .into_iter()
        .map(|(name, m)| (name.to_owned(), m.into_bytes()))
        .collect();
    write("subscription", &files);
}

/// A client frame, masked as a browser masks it; `long` forces the 64-bit
/// length form.
fn masked(opcode: u8, fin: bool, payload: &[u8], long: bool) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n < 126 && !long => out.push(0x80 | n as u8),
        n if n < 65536 && !long => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

fn ws_frame() {
    let sub = br#"{"organization":"acme"}"#;
    let close = |code: u16, reason: &[u8]| {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason);
        p
    };
    let streams: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("text", vec![masked(1, true, sub, false)]),
        (
            "text-then-ping-pong",
            vec![
                masked(1, true, sub, false),
                masked(9, true, b"hi", false),
                masked(10, true, b"", false),
            ],
        ),
        (
            "client-ping-message",
            vec![masked(1, true, br#"{"type":"ping","seq":41}"#, false)],
        ),
        ("binary", vec![masked(2, true, &[0, 1, 2, 255], false)]),
        (
            "close-1000",
            vec![masked(8, true, &close(1000, b"bye"), false)],
        ),
        ("close-empty", vec![masked(8, true, b"", false)]),
        (
            "close-4000",
            vec![masked(8, true, &close(4000, "é".as_bytes()), false)],
        ),
        (
            "fragmented-with-ping",
            vec![
                masked(1, false, b"{\"organiz", false),
                masked(9, true, b"p", false),
                masked(0, false, b"ation\":", false),
                masked(0, true, b"\"acme\"}", false),
            ],
        ),
        (
            "fragmented-binary",
            vec![
                masked(2, false, &[1; 10], false),
                masked(0, true, &[2; 10], false),
            ],
        ),
        ("len16", vec![masked(1, true, &[b'x'; 300], false)]),
        ("len64-short", vec![masked(1, true, b"hello", true)]),
        (
            "text-utf8",
            vec![masked(1, true, "ünïcödé ✓".as_bytes(), false)],
        ),
        (
            "partial-frame",
            vec![masked(1, true, sub, false)[..9].to_vec()],
        ),
    ];
    let mut files = Vec::new();
    // Mode: message limit (low 2 bits) and chunk length (next 4 bits).
    for (i, (name, frames)) in streams.into_iter().enumerate() {
        let mode = (i as u8 % 16) << 2;
        let mut input = vec![mode];
        input.extend(frames.concat());
        files.push((name.to_owned(), input));
    }
    // Found by this target (loadtest/RESULTS.md, "Fuzzing"): a continuation
    // declaring a length near u64::MAX.
    let mut huge = masked(1, false, b"a", false);
    huge.extend([0x80, 0x80 | 127]);
    huge.extend(u64::MAX.to_be_bytes());
    huge.extend([0x37, 0xfa, 0x21, 0x3d, b'x']);
    files.push((
        "regression.huge-continuation-length".to_owned(),
        [vec![0], huge].concat(),
    ));
    // The same fragmented message under the 16-byte limit: refused.
    let mut input = vec![2 | 1 << 2];
    input.extend(
        [
            masked(1, false, &[b'a'; 10], false),
            masked(0, true, &[b'a'; 10], false),
        ]
        .concat(),
    );
    files.push(("fragmented-too-large".to_owned(), input));
    write("ws_frame", &files);
}

fn config() {
    let dev = fs::read(root().join("config/hookfan.toml")).unwrap();
    let loadtest = r#"[server]
listen = "127.0.0.1:0"
[webhook]
secret_file = "secret"
[broker]
shards = 0
[auth]
provider = "static"
tokens_file = "tokens.toml"
[limits]
max_conns_per_ip = 100000
max_conns_total = 100000
[log]
level = "warn"
[cluster]
nats_url = "nats://127.0.0.1:4222"
"#;
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("hookfan.toml", dev),
        ("loadtest.toml", loadtest.into()),
        ("empty.toml", Vec::new()),
        ("github-provider.toml", b"[server]\nlisten = \"[::1]:8080\"\nmetrics_listen = \"127.0.0.1:9090\"\n[auth]\nprovider = \"github\"\ngithub_api_url = \"https://ghe.example.com/api/v3\"\ncache_ttl_s = 300\n[tiers]\nenforce = true\npro = [\"alice\", \"acme\"]\nflock = [\"bob-2\"]\n".to_vec()),
        ("cluster-full.toml", b"[cluster]\nnats_url = \"nats://a:4222, tls://b:4222\"\nstream = \"HOOKFAN_EVENTS\"\nsubject = \"hookfan.events\"\nreplicas = 3\nmax_age_s = 86400\nmax_bytes = 1073741824\nduplicate_window_s = 120\npublish_timeout_s = 5\nnode_name = \"node1\"\ncreds_file = \"nats.creds\"\ntls_ca_file = \"/etc/hookfan/nats-ca.pem\"\n".to_vec()),
        ("replay-and-broker.toml", b"[replay]\nmax_events = 0\nmax_bytes = 1048576\nmax_age_s = 604800\n[broker]\nshards = 256\nclient_queue = 65536\nslow_client = \"disconnect\"\n".to_vec()),
        ("webhook-and-limits.toml", b"[webhook]\nallowed_events = [\"pull_request\", \"check_run\", \"status\"]\nmax_payload_bytes = 1024\ncommit_cache_entries = 0\ncommit_cache_ttl_s = 1\n[limits]\nmax_conns_per_ip = 1\nmax_conns_total = 1\ntrusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]\n".to_vec()),
        ("log-directives.toml", b"[log]\nlevel = \"info,hookfan=debug,hyper=off\"\nformat = \"json\"\n".to_vec()),
        ("dotted-keys.toml", b"development = true\nserver.listen = \"0.0.0.0:8080\"\nserver.ping_interval_s = 54\nlog = { level = \"trace\" }\n".to_vec()),
        ("tls.toml", b"[server]\nlisten = \"0.0.0.0:443\"\n[server.tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\nredirect_listen = \"0.0.0.0:80\"\n[server.tls.acme]\ndomains = [\"hooks.example.com\"]\ncontact = [\"mailto:ops@example.com\"]\ncache_dir = \"acme\"\nrenew_before_days = 30\n".to_vec()),
        ("bad-values.toml", b"[server]\nhandshake_timeout_s = 0\nping_interval_s = 90\nread_timeout_s = 60\n[webhook]\nallowed_events = [\"*\", \"push\"]\nmax_payload_bytes = 5\n[broker]\nshards = 1000\n[auth]\nprovider = \"static\"\ngithub_api_url = \"ftp://x\"\n[tiers]\npro = [\"not a login\"]\n[cluster]\nstream = \"a.b\"\nsubject = \"a.*\"\nnode_name = \"\"\n[log]\nlevel = \"loud\"\n".to_vec()),
        ("bad-types.toml", b"development = \"yes\"\n[server]\nlisten = 8080\n[broker]\nshards = -1\nslow_client = \"maybe\"\n[auth]\nprovider = \"ldap\"\nextra = 1\n[nonsense]\nx = 1\n".to_vec()),
        ("bad-listen.toml", b"[server]\nlisten = \"no port\"\nmetrics_listen = \":99999\"\n".to_vec()),
        ("syntax-error.toml", b"[server\nlisten = \"127.0.0.1:8080\n\xc3\xa9 = 1\n".to_vec()),
        ("section-as-value.toml", b"server = 5\nlog = [1, 2]\n".to_vec()),
    ];
    let files: Vec<(String, Vec<u8>)> = variants
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text))
        .collect();
    write("config", &files);
}

fn stream_message() {
    // The facts intake would publish for each fixture, in file order
    // through one commit cache (as one node sees them), at a fixed time.
    let cache = CommitCache::new(100, Duration::from_secs(86_400));
    let at = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
    let mut files = Vec::new();
    for (stem, kind, mut body) in fixtures() {
        let parsed = parse_webhook(&kind, DELIVERY, &mut body, &cache).unwrap();
        if let Some(mut parts) = parsed {
            parts.accepted_at = Some(at);
            files.push((stem, encode_stream_message(&parts)));
        }
    }
    for (name, m) in [
        ("minimal", &br#"{"v":1,"kind":"push","at_ns":5,"url":"https://github.com/o/r"}"#[..]),
        ("unknown-fields", br#"{"v":1,"kind":"push","at_ns":5,"url":"https://github.com/o/r","later":[1,{"a":null}]}"#),
        ("version-2", br#"{"v":2,"anything":true}"#),
        ("version-3", br#"{"v":3,"anything":true}"#),
        ("with-payload", br#"{"v":2,"kind":"push","at_ns":5,"url":"https://github.com/o/r","headers":{"X-GitHub-Event":"push"},"payload_only":true,"payload_len":14}{"ref":"main"}"#),
        ("max-time", br#"{"v":1,"kind":"status","delivery_id":"d","at_ns":18446744073709551615,"url":"https://github.com/o/r/pull/1","org":"","repo":"O/R","private":true,"commit_sha":"","users":["A","a",""]}"#),
    ] {
        files.push((name.to_owned(), m.to_vec()));
    }
    write("stream_message", &files);
}

fn main() {
    webhook();
    subscription();
    ws_frame();
    config();
    stream_message();
}
