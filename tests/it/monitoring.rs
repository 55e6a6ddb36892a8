//! The shipped monitoring (deploy/prometheus/hookfan-rules.yml, the
//! Grafana dashboard deploy/grafana/hookfan.json) names only metrics the
//! daemon exports: a rule or panel on a misspelt or renamed metric would
//! never fire or draw, silently. The exported names are read from a real
//! daemon's `/metrics`, in cluster mode on a real nats-server and with the
//! GitHub redelivery sweeper on, after a client, a webhook and a token
//! recheck made every labelled family appear. promtool checks the rules'
//! syntax and behaviour (scripts/check-alerts.sh).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

fn deploy_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `expr:` of every rule, inline or a folded block (`>-` and the more
/// indented lines after it).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if !rest.starts_with('>') && !rest.starts_with('|') {
            exprs.push(rest.to_owned());
            continue;
        }
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
            .map(|l| l.trim())
            .collect();
        exprs.push(block.join(" "));
    }
    let rules = lines
        .iter()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("- alert:") || l.starts_with("- record:")
        })
        .count();
    assert_eq!(exprs.len(), rules, "one expr per rule: {exprs:#?}");
    exprs
}

/// Every query of the dashboard: each `expr` (panel targets) and each
/// query variable's `definition`.
fn dashboard_exprs(dashboard: &Value, out: &mut Vec<String>) {
    match dashboard {
        Value::Object(map) => {
            for (key, v) in map {
                let is_query = key == "expr"
                    || (key == "definition" && map.get("type") == Some(&json!("query")));
                match v {
                    Value::String(s) if is_query => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// `expr` with the insides of its string literals (label values) blanked.
fn without_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            Some(q) if !escaped && c == q => quote = None,
            Some(_) => {
                escaped = !escaped && c == '\\';
                out.push(' ');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

/// The `hookfan_*` identifiers in a PromQL expression, outside strings.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let expr = &without_strings(expr);
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    for (at, _) in expr.match_indices("hookfan_") {
        if expr[..at].chars().next_back().is_some_and(ident) {
            continue;
        }
        let end = expr[at..]
            .find(|c| !ident(c))
            .map_or(expr.len(), |n| at + n);
        names.insert(expr[at..end].to_owned());
    }
    names
}

/// The series names `/metrics` exports, from its `# TYPE` lines.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        match kind.trim() {
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            "counter" if !name.ends_with("_total") => {
                names.insert(format!("{name}_total"));
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Each query of `queries` (by where it is) with the metric names it uses;
/// a query naming none is a defect of the file.
fn names_by_query(queries: &[(String, String)]) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    for (place, expr) in queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no hookfan metric in `{expr}`");
        out.push((place.clone(), names));
    }
    out
}

fn shipped_queries() -> Vec<(String, String)> {
    let rules = "deploy/prometheus/hookfan-rules.yml";
    let mut queries: Vec<(String, String)> = rule_exprs(&deploy_file(rules))
        .into_iter()
        .map(|e| (rules.to_owned(), e))
        .collect();
    let path = "deploy/grafana/hookfan.json";
    let dashboard: Value = serde_json::from_str(&deploy_file(path))
        .unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    let panels = dashboard["panels"].as_array().expect("panels");
    let drawn = panels.iter().filter(|p| p["type"] != "row").count();
    assert!(exprs.len() >= drawn, "{path}: a panel without a query");
    queries.extend(exprs.into_iter().map(|e| (path.to_owned(), e)));
    queries
}

/// A node with the test's NATS, a token recheck every second, and the
/// redelivery sweeper; `auth.github_api_url` is a closed port, so that a
/// GitHub API call fails at once and reaches nobody.
fn monitored_daemon(nats: &Nats) -> Daemon {
    let key =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-app/app-key.pem");
    // The first lines continue spawn_daemon's [auth] section. GitHub's API
    // (for tokens, redelivery and the webhook sources) is unreachable: the
    // failure figures are exported, and loopback senders are listed.
    spawn_daemon(&format!(
        "recheck_interval_s = 1\ngithub_api_url = \"http://127.0.0.1:1\"\n\
         [cluster]\nnats_url = \"{}\"\nstream = \"MONITORING\"\n\
         [github_app]\napp_id = 1\nprivate_key_file = \"{}\"\n\
         [redelivery]\nenabled = true\n\
         [webhook]\nallowed_sources = [\"127.0.0.0/8\", \"github\"]\n",
        nats.url(),
        key.display()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_name_is_exported() {
    let queries = names_by_query(&shipped_queries());
    let wanted: BTreeSet<String> = queries.iter().flat_map(|(_, n)| n.clone()).collect();
    let nats = Nats::start();
    let daemon = monitored_daemon(&nats);
    let _ws = subscribe(daemon.addr, "bob", json!({"organization": "acme"})).await;
    let pr = pr_payload("acme", "api", 1, "alice", false);
    assert_eq!(
        daemon.webhook("pull_request", &pr, "monitoring-1").await,
        200
    );
    // Labelled families appear once counted (the recheck within a
    // second); poll until every wanted name is there, or 20 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let missing = loop {
        let exported = exported_names(&metrics_text(daemon.addr).await);
        let missing: BTreeSet<String> = wanted.difference(&exported).cloned().collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let offending: Vec<String> = queries
        .iter()
        .filter(|(_, names)| names.iter().any(|n| missing.contains(n)))
        .map(|(place, names)| format!("{place}: {names:?}"))
        .collect();
    assert!(
        missing.is_empty(),
        "not exported: {missing:?}\nused by:\n{}",
        offending.join("\n")
    );
}

#[test]
fn the_query_parsers_find_what_is_there() {
    let yaml = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(hookfan_a_total[5m]) > 0\n        for: 1m\n      - alert: B\n        expr: >-\n          hookfan_b > 0\n          unless on () hookfan_c:sum\n        for: 1m\n";
    assert_eq!(
        rule_exprs(yaml),
        [
            "rate(hookfan_a_total[5m]) > 0",
            "hookfan_b > 0 unless on () hookfan_c:sum"
        ]
    );
    let names = metric_names(
        "sum(x_hookfan_y) + hookfan_b{job=\"hookfan_z\",a=\"\\\"hookfan_q\"} or hookfan_c:sum",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["hookfan_b", "hookfan_c:sum"]
    );
    let text = "# TYPE hookfan_h histogram\n# TYPE hookfan_c counter\n# TYPE hookfan_d_total counter\n# TYPE hookfan_g gauge\n";
    let exported: Vec<String> = exported_names(text).into_iter().collect();
    assert_eq!(
        exported,
        [
            "hookfan_c_total",
            "hookfan_d_total",
            "hookfan_g",
            "hookfan_h_bucket",
            "hookfan_h_count",
            "hookfan_h_sum"
        ]
    );
}
