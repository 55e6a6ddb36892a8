//! The subscription a client sends as its first message: parsing and
//! validation, with one error variant per rule of PROTOCOL.md.

use std::fmt;

use serde::Deserialize;

use crate::config::is_event_type;
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
}

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
        }
    }
}

impl std::error::Error for SubscriptionError {}

fn valid_username(u: &str) -> bool {
    u == crate::auth::static_tokens::APP_LOGIN
        || crate::config::is_login(u.strip_suffix("[bot]").unwrap_or(u))
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
}

impl Subscription {
    /// Parses and validates the client's first message.
    pub fn parse(json: &str) -> Result<Subscription, SubscriptionError> {
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
        };
        sub.validate()?;
        Ok(sub)
    }

    /// Checks every field against PROTOCOL.md's rules (and `username`,
    /// when set, against the shape of a GitHub login).
    pub fn validate(&self) -> Result<(), SubscriptionError> {
        if !self.username.is_empty() && !valid_username(&self.username) {
            return Err(SubscriptionError::InvalidUsername(self.username.clone()));
        }
        let org = &self.organization;
        if !org.is_empty() && org != "*" && !crate::config::is_login(org) {
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
        let nulls = r#"{"organization":null,"event_types":null,"pull_requests":null,"user_events_only":null}"#;
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
    fn messages_are_for_people() {
        assert_eq!(
            SubscriptionError::TooManyPullRequests.to_string(),
            "too many PR URLs specified (max 200)"
        );
        let long = SubscriptionError::InvalidPullRequestUrl("x".repeat(1000)).to_string();
        assert!(long.len() < 250);
    }
}
