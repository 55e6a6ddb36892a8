//! The subscription a client sends as its first message: parsing and
//! validation, with one error variant per rule of PROTOCOL.md.

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::checks::is_event_type;
use crate::event::parse_pr_url;

/// Most event types in one subscription.
pub const MAX_EVENT_TYPES: usize = 50;
/// Most pull requests in one subscription.
pub const MAX_PULL_REQUESTS: usize = 200;
/// Longest pull request URL accepted.
pub const MAX_PR_URL_LEN: usize = 500;

/// A validated subscription, as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Empty, `*` (every org of the user), or an organization name.
    pub organization: String,
    /// Event types asked for; empty means every allowed type.
    pub event_types: Vec<String>,
    /// Pull request URLs (`https://github.com/OWNER/REPO/pull/N`).
    pub pull_requests: Vec<String>,
    /// Only events the user is involved in.
    pub user_events_only: bool,
    /// The authenticated login, filled in by the server (never read from
    /// the client's message).
    pub username: String,
    /// Where to resume from: replay what was missed since this point.
    pub resume: Option<ResumeFrom>,
    /// Events should carry the webhook's headers and body (`[payloads]`).
    pub include_payload: bool,
}

/// `"resume": {"epoch": ..., "after": N}`: the last event a client saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeFrom {
    /// The stream history the client's events came from.
    pub epoch: String,
    /// The last sequence number the client received.
    pub after: u64,
}

/// Longest epoch accepted in a resume request.
pub const MAX_EPOCH_LEN: usize = 64;

/// Why a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionError {
    /// Not a JSON object of the expected shape.
    Malformed(String),
    /// `organization` is not `*` nor 1..39 of `[A-Za-z0-9_-]`.
    InvalidOrganization,
    /// More than 50 event types.
    TooManyEventTypes,
    /// An event type that is not 1..50 of `[a-z0-9_]`.
    InvalidEventType(String),
    /// More than 200 pull requests.
    TooManyPullRequests,
    /// A pull request URL over 500 characters.
    PullRequestUrlTooLong,
    /// A pull request URL not of the form `https://github.com/OWNER/REPO/pull/N`.
    InvalidPullRequestUrl(String),
    /// `username` is not a GitHub login (1..39 of `[A-Za-z0-9_-]`, or such a
    /// name followed by `[bot]`, or `app[installation]`).
    InvalidUsername(String),
    /// `resume` is not `{"epoch": 1..64 of [A-Za-z0-9_-], "after": integer >= 0}`.
    InvalidResume(&'static str),
    /// `resume.after` is beyond the last event of the stream it names
    /// (found by the server at registration, not by [`Subscription::validate`]).
    ResumeAfterFuture {
        /// What the client asked for.
        after: u64,
        /// The stream's last sequence number.
        last: u64,
    },
}

impl fmt::Display for SubscriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "subscription is not valid JSON: {why}"),
            Self::InvalidOrganization => f.write_str(
                "invalid organization name (use \"*\" or 1-39 letters, digits, '-' or '_')",
            ),
            Self::TooManyEventTypes => {
                write!(f, "too many event types specified (max {MAX_EVENT_TYPES})")
            }
            Self::InvalidEventType(t) => write!(
                f,
                "invalid event type {:?} (1-50 of a-z, 0-9, '_')",
                truncate(t, 60)
            ),
            Self::TooManyPullRequests => {
                write!(f, "too many PR URLs specified (max {MAX_PULL_REQUESTS})")
            }
            Self::PullRequestUrlTooLong => {
                write!(f, "PR URL too long (max {MAX_PR_URL_LEN} characters)")
            }
            Self::InvalidPullRequestUrl(u) => write!(
                f,
                "invalid PR URL {:?} (expected https://github.com/OWNER/REPO/pull/N)",
                truncate(u, 120)
            ),
            Self::InvalidUsername(u) => write!(f, "invalid username {:?}", truncate(u, 60)),
            Self::InvalidResume(why) => write!(
                f,
                "invalid resume: {why} (expected {{\"epoch\": 1-{MAX_EPOCH_LEN} of A-Z, a-z, 0-9, '-', '_', \"after\": an integer >= 0}})"
            ),
            Self::ResumeAfterFuture { after, last } => write!(
                f,
                "resume.after {after} is beyond the last event of this stream ({last})"
            ),
        }
    }
}

impl std::error::Error for SubscriptionError {}

fn valid_username(u: &str) -> bool {
    u == crate::auth::static_tokens::APP_LOGIN
        || crate::checks::is_login(u.strip_suffix("[bot]").unwrap_or(u))
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The wire form: every field optional, `null` the same as absent, unknown
/// fields ignored.
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    organization: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    pull_requests: Option<Vec<String>>,
    #[serde(default)]
    user_events_only: Option<bool>,
    #[serde(default)]
    resume: Option<Value>,
    #[serde(default)]
    include_payload: Option<bool>,
    /// Everything else: accepted, ignored, and warned about.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// The fields a subscription may have.
const FIELDS: [&str; 6] = [
    "organization",
    "event_types",
    "pull_requests",
    "user_events_only",
    "resume",
    "include_payload",
];

/// Most unknown fields named in warnings; the rest are counted.
const MAX_NAMED_UNKNOWN: usize = 10;

/// Names clients use by mistake, and the field they meant.
const ALIASES: &[(&str, &str)] = &[
    ("org", "organization"),
    ("orgs", "organization"),
    ("organisation", "organization"),
    ("organizations", "organization"),
    ("owner", "organization"),
    ("event_type", "event_types"),
    ("events", "event_types"),
    ("types", "event_types"),
    ("eventtypes", "event_types"),
    ("pull_request", "pull_requests"),
    ("prs", "pull_requests"),
    ("pr", "pull_requests"),
    ("pull_request_urls", "pull_requests"),
    ("pullrequests", "pull_requests"),
    ("user_events", "user_events_only"),
    ("my_events", "user_events_only"),
    ("usereventsonly", "user_events_only"),
    ("after", "resume"),
    ("epoch", "resume"),
    ("last_seq", "resume"),
    ("payload", "include_payload"),
    ("payloads", "include_payload"),
    ("include_payloads", "include_payload"),
    ("with_payload", "include_payload"),
    ("full_payload", "include_payload"),
];

/// The field `unknown` most likely stands for.
fn did_you_mean(unknown: &str) -> Option<&'static str> {
    let folded = unknown.to_ascii_lowercase().replace('-', "_");
    let squashed = folded.replace('_', "");
    if let Some((_, f)) = ALIASES
        .iter()
        .find(|(a, _)| *a == folded || a.replace('_', "") == squashed)
    {
        return Some(f);
    }
    FIELDS
        .iter()
        .map(|f| (edit_distance(&folded, f), *f))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, f)| f)
}

/// Levenshtein distance (short strings only: field names).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Warnings for a subscription's unknown fields, with a suggestion where
/// one is likely.
pub(crate) fn unknown_field_warnings(unknown: &[String]) -> Vec<String> {
    let mut out: Vec<String> = unknown
        .iter()
        .take(MAX_NAMED_UNKNOWN)
        .map(|k| {
            let name = truncate(k, 40);
            match did_you_mean(k) {
                Some(f) => format!("unknown field {name:?} ignored (did you mean {f:?}?)"),
                None => format!("unknown field {name:?} ignored"),
            }
        })
        .collect();
    if unknown.len() > MAX_NAMED_UNKNOWN {
        out.push(format!(
            "{} more unknown fields ignored",
            unknown.len() - MAX_NAMED_UNKNOWN
        ));
    }
    out
}

/// 1..64 of `[A-Za-z0-9_-]`.
fn valid_epoch(e: &str) -> bool {
    (1..=MAX_EPOCH_LEN).contains(&e.len())
        && e.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

fn parse_resume(v: Value) -> Result<Option<ResumeFrom>, SubscriptionError> {
    let bad = SubscriptionError::InvalidResume;
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err(bad("not an object")),
    };
    let epoch = match obj.get("epoch") {
        Some(Value::String(e)) => e,
        Some(_) => return Err(bad("epoch is not a string")),
        None => return Err(bad("epoch is missing")),
    };
    let after = match obj.get("after") {
        Some(Value::Number(n)) => n.as_u64().ok_or(bad("after is not an integer >= 0"))?,
        Some(_) => return Err(bad("after is not an integer")),
        None => return Err(bad("after is missing")),
    };
    Ok(Some(ResumeFrom {
        epoch: epoch.clone(),
        after,
    }))
}

impl Subscription {
    /// Parses and validates the client's first message. Unknown fields are
    /// ignored (see [`Subscription::parse_with_unknown`]).
    pub fn parse(json: &str) -> Result<Subscription, SubscriptionError> {
        Self::parse_with_unknown(json).map(|(s, _)| s)
    }

    /// [`Subscription::parse`], also returning the names of the fields it
    /// ignored (sorted by name).
    pub fn parse_with_unknown(
        json: &str,
    ) -> Result<(Subscription, Vec<String>), SubscriptionError> {
        // serde would also read a struct from a JSON array; only objects count.
        if !json.trim_start().starts_with('{') {
            return Err(SubscriptionError::Malformed(
                "expected a JSON object".into(),
            ));
        }
        let wire: Wire =
            serde_json::from_str(json).map_err(|e| SubscriptionError::Malformed(e.to_string()))?;
        let sub = Subscription {
            organization: wire.organization.unwrap_or_default(),
            event_types: wire.event_types.unwrap_or_default(),
            pull_requests: wire.pull_requests.unwrap_or_default(),
            user_events_only: wire.user_events_only.unwrap_or(false),
            username: String::new(),
            resume: wire.resume.map(parse_resume).transpose()?.flatten(),
            include_payload: wire.include_payload.unwrap_or(false),
        };
        sub.validate()?;
        Ok((sub, wire.unknown.into_iter().map(|(k, _)| k).collect()))
    }

    /// Whether the subscription can match no event at all: no
    /// organization, no pull requests, and not `user_events_only`.
    pub fn matches_nothing(&self) -> bool {
        self.organization.is_empty() && self.pull_requests.is_empty() && !self.user_events_only
    }

    /// Checks every field against PROTOCOL.md's rules (and `username`,
    /// when set, against the shape of a GitHub login).
    pub fn validate(&self) -> Result<(), SubscriptionError> {
        if !self.username.is_empty() && !valid_username(&self.username) {
            return Err(SubscriptionError::InvalidUsername(self.username.clone()));
        }
        if let Some(r) = &self.resume
            && !valid_epoch(&r.epoch)
        {
            return Err(SubscriptionError::InvalidResume("malformed epoch"));
        }
        let org = &self.organization;
        if !org.is_empty() && org != "*" && !crate::checks::is_login(org) {
            return Err(SubscriptionError::InvalidOrganization);
        }
        if self.event_types.len() > MAX_EVENT_TYPES {
            return Err(SubscriptionError::TooManyEventTypes);
        }
        if let Some(bad) = self.event_types.iter().find(|t| !is_event_type(t)) {
            return Err(SubscriptionError::InvalidEventType(bad.clone()));
        }
        if self.pull_requests.len() > MAX_PULL_REQUESTS {
            return Err(SubscriptionError::TooManyPullRequests);
        }
        for url in &self.pull_requests {
            if url.len() > MAX_PR_URL_LEN {
                return Err(SubscriptionError::PullRequestUrlTooLong);
            }
            let ok = url.starts_with("https://github.com/")
                && parse_pr_url(url).is_some_and(|p| p.host == "github.com");
            if !ok {
                return Err(SubscriptionError::InvalidPullRequestUrl(url.clone()));
            }
        }
        Ok(())
    }

    /// The routing keys (`owner/repo#n`, lowercased) of the subscribed PRs.
    pub(crate) fn pr_keys(&self) -> Vec<Box<str>> {
        self.pull_requests
            .iter()
            .filter_map(|u| parse_pr_url(u))
            .map(|p| p.key().into_boxed_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> SubscriptionError {
        Subscription::parse(json).unwrap_err()
    }

    #[test]
    fn all_fields_optional_and_unknown_fields_ignored() {
        assert_eq!(Subscription::parse("{}").unwrap(), Subscription::default());
        let s = Subscription::parse(
            r#"{"organization":"acme","event_types":["pull_request"],"pull_requests":["https://github.com/acme/api/pull/7"],"user_events_only":true,"client_version":"9","organization_id":null}"#,
        )
        .unwrap();
        assert_eq!(s.organization, "acme");
        assert_eq!(s.event_types, ["pull_request"]);
        assert!(s.user_events_only);
        assert_eq!(s.pr_keys(), vec![Box::from("acme/api#7")]);
        let nulls = r#"{"organization":null,"event_types":null,"pull_requests":null,"user_events_only":null,"include_payload":null}"#;
        assert_eq!(Subscription::parse(nulls).unwrap(), Subscription::default());
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "nope",
            "[]",
            "{\"organization\":5}",
            "{\"event_types\":\"push\"}",
            "{\"include_payload\":\"yes\"}",
            "{\"include_payload\":1}",
        ] {
            assert!(matches!(err(bad), SubscriptionError::Malformed(_)), "{bad}");
        }
    }

    #[test]
    fn organization_rules() {
        assert_eq!(
            Subscription::parse(r#"{"organization":"*"}"#)
                .unwrap()
                .organization,
            "*"
        );
        assert!(
            Subscription::parse(&format!(r#"{{"organization":"{}"}}"#, "a".repeat(39))).is_ok()
        );
        for bad in ["a b", "acme/x", "**", "ac.me"] {
            assert_eq!(
                err(&format!(r#"{{"organization":"{bad}"}}"#)),
                SubscriptionError::InvalidOrganization
            );
        }
        assert_eq!(
            err(&format!(r#"{{"organization":"{}"}}"#, "a".repeat(40))),
            SubscriptionError::InvalidOrganization
        );
    }

    #[test]
    fn event_type_rules() {
        let many: Vec<String> = (0..51).map(|i| format!("\"t{i}\"")).collect();
        assert_eq!(
            err(&format!(r#"{{"event_types":[{}]}}"#, many.join(","))),
            SubscriptionError::TooManyEventTypes
        );
        for bad in ["Push", "", "pull-request", &"a".repeat(51)] {
            assert_eq!(
                err(&format!(r#"{{"event_types":["{bad}"]}}"#)),
                SubscriptionError::InvalidEventType(bad.to_owned())
            );
        }
    }

    #[test]
    fn pull_request_rules() {
        let ok: Vec<String> = (1..=200)
            .map(|i| format!("\"https://github.com/o/r/pull/{i}\""))
            .collect();
        assert!(Subscription::parse(&format!(r#"{{"pull_requests":[{}]}}"#, ok.join(","))).is_ok());
        let many: Vec<String> = (1..=201)
            .map(|i| format!("\"https://github.com/o/r/pull/{i}\""))
            .collect();
        assert_eq!(
            err(&format!(r#"{{"pull_requests":[{}]}}"#, many.join(","))),
            SubscriptionError::TooManyPullRequests
        );
        let long = format!("https://github.com/o/{}/pull/1", "r".repeat(480));
        assert_eq!(
            err(&format!(r#"{{"pull_requests":["{long}"]}}"#)),
            SubscriptionError::PullRequestUrlTooLong
        );
        for bad in [
            "http://github.com/o/r/pull/1",
            "https://gitlab.com/o/r/pull/1",
            "https://github.com/o/r/issues/1",
            "https://github.com/o/r/pull/0",
            "https://github.com/o/r/pull/x",
            "https://github.com/o$/r/pull/1",
            "",
        ] {
            assert_eq!(
                err(&format!(r#"{{"pull_requests":["{bad}"]}}"#)),
                SubscriptionError::InvalidPullRequestUrl(bad.to_owned())
            );
        }
    }

    #[test]
    fn resume_rules() {
        let s = Subscription::parse(r#"{"resume":{"epoch":"6f1c9e2a","after":1030}}"#).unwrap();
        assert_eq!(
            s.resume,
            Some(ResumeFrom {
                epoch: "6f1c9e2a".into(),
                after: 1030
            })
        );
        assert_eq!(
            Subscription::parse(r#"{"resume":null}"#).unwrap().resume,
            None
        );
        let long = "e".repeat(65);
        for (bad, why) in [
            (r#"{"resume":5}"#.to_owned(), "not an object"),
            (r#"{"resume":{"after":1}}"#.to_owned(), "epoch is missing"),
            (
                r#"{"resume":{"epoch":7,"after":1}}"#.to_owned(),
                "epoch is not a string",
            ),
            (
                r#"{"resume":{"epoch":"","after":1}}"#.to_owned(),
                "malformed epoch",
            ),
            (
                r#"{"resume":{"epoch":"a b","after":1}}"#.to_owned(),
                "malformed epoch",
            ),
            (
                format!(r#"{{"resume":{{"epoch":"{long}","after":1}}}}"#),
                "malformed epoch",
            ),
            (r#"{"resume":{"epoch":"e"}}"#.to_owned(), "after is missing"),
            (
                r#"{"resume":{"epoch":"e","after":-1}}"#.to_owned(),
                "after is not an integer >= 0",
            ),
            (
                r#"{"resume":{"epoch":"e","after":1.5}}"#.to_owned(),
                "after is not an integer >= 0",
            ),
            (
                r#"{"resume":{"epoch":"e","after":"1"}}"#.to_owned(),
                "after is not an integer",
            ),
        ] {
            assert_eq!(err(&bad), SubscriptionError::InvalidResume(why), "{bad}");
        }
        assert!(
            err(r#"{"resume":5}"#)
                .to_string()
                .starts_with("invalid resume: not an object")
        );
    }

    #[test]
    fn unknown_fields_are_listed_with_suggestions() {
        let (_, unknown) = Subscription::parse_with_unknown(
            r#"{"org":"acme","event_type":["push"],"pullRequests":[],"user_event_only":true,"colour":"blue"}"#,
        )
        .unwrap();
        assert_eq!(
            unknown_field_warnings(&unknown),
            [
                r#"unknown field "colour" ignored"#,
                r#"unknown field "event_type" ignored (did you mean "event_types"?)"#,
                r#"unknown field "org" ignored (did you mean "organization"?)"#,
                r#"unknown field "pullRequests" ignored (did you mean "pull_requests"?)"#,
                r#"unknown field "user_event_only" ignored (did you mean "user_events_only"?)"#,
            ]
        );
        let many: Vec<String> = (0..12).map(|i| format!("x{i}")).collect();
        let w = unknown_field_warnings(&many);
        assert_eq!(w.len(), 11);
        assert_eq!(w[10], "2 more unknown fields ignored");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn matching_nothing() {
        assert!(Subscription::default().matches_nothing());
        for ok in [
            r#"{"organization":"acme"}"#,
            r#"{"user_events_only":true}"#,
            r#"{"pull_requests":["https://github.com/o/r/pull/1"]}"#,
        ] {
            assert!(!Subscription::parse(ok).unwrap().matches_nothing(), "{ok}");
        }
    }

    #[test]
    fn messages_are_for_people() {
        assert_eq!(
            SubscriptionError::TooManyPullRequests.to_string(),
            "too many PR URLs specified (max 200)"
        );
        let long = SubscriptionError::InvalidPullRequestUrl("x".repeat(1000)).to_string();
        assert!(long.len() < 250);
    }
}
