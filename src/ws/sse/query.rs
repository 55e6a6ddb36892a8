//! The subscription of `GET /events`, from its query string and its
//! `Last-Event-ID`, as the JSON message a WebSocket client would send: both
//! endpoints then check it the same way, with the same answers.

use serde_json::{Map, Value};

use crate::subscription::ResumeFrom;

/// Longest query accepted: the WebSocket subscription message's bound.
pub(super) const MAX_QUERY: usize = 8192;

/// The subscription message for `query` (the part after `?`) and a
/// reconnect's `Last-Event-ID` (`<epoch>:<seq>`), or why there is none.
/// Unknown parameters are kept, so that they are warned about as unknown
/// fields are.
pub(super) fn subscription_json(
    query: Option<&str>,
    last_event_id: Option<&[u8]>,
) -> Result<String, String> {
    let query = query.unwrap_or_default();
    if query.len() > MAX_QUERY {
        return Err(format!("query exceeds {MAX_QUERY} bytes"));
    }
    let mut fields = Map::new();
    let mut list = |name: &str, items: Vec<Value>| {
        let entry = fields
            .entry(name)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = entry {
            a.extend(items);
        }
    };
    let mut singles: Vec<(String, Value)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "pull_requests" => list("pull_requests", vec![Value::from(value.into_owned())]),
            "event_types" | "repositories" => list(
                &name,
                value
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(Value::from)
                    .collect(),
            ),
            "user_events_only" => singles.push((name.into_owned(), flag(&value)?)),
            "resume" => {
                return Err(
                    "a resume is asked with the Last-Event-ID header (<epoch>:<seq>), not the query"
                        .into(),
                );
            }
            "include_payload" => {
                return Err(
                    "include_payload is not available on /events (use /ws): a payload may hold line breaks, which a data: line cannot"
                        .into(),
                );
            }
            _ => singles.push((name.into_owned(), Value::from(value.into_owned()))),
        }
    }
    for (name, value) in singles {
        if fields.insert(name.clone(), value).is_some() {
            return Err(format!("{name} is given more than once"));
        }
    }
    if let Some(id) = last_event_id {
        let from = resume_from(id)?;
        fields.insert(
            "resume".into(),
            serde_json::json!({"epoch": from.epoch, "after": from.after}),
        );
    }
    Ok(Value::Object(fields).to_string())
}

/// `user_events_only`: `true` or `false`.
fn flag(value: &str) -> Result<Value, String> {
    match value {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        other => Err(format!(
            "user_events_only must be true or false, not {:?}",
            other.chars().take(20).collect::<String>()
        )),
    }
}

/// `<epoch>:<seq>`, as each event's `id:` line gives it. The epoch's own
/// rules are the subscription's (checked with it).
fn resume_from(id: &[u8]) -> Result<ResumeFrom, String> {
    let bad = || "Last-Event-ID must be <epoch>:<seq>, as an event's id: line gives it".to_owned();
    let id = std::str::from_utf8(id).map_err(|_| bad())?.trim();
    let (epoch, seq) = id.rsplit_once(':').ok_or_else(bad)?;
    let after = seq.parse::<u64>().map_err(|_| bad())?;
    Ok(ResumeFrom {
        epoch: epoch.to_owned(),
        after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::Subscription;

    fn parsed(query: &str, last: Option<&str>) -> Subscription {
        let json = subscription_json(Some(query), last.map(str::as_bytes)).unwrap();
        Subscription::parse(&json).unwrap()
    }

    #[test]
    fn every_field_of_the_message() {
        let pr1 = "https://github.com/acme/api/pull/1";
        let pr2 = "https://github.com/acme/api/pull/2";
        let s = parsed(
            &format!(
                "organization=acme&pull_requests={}&pull_requests={}&event_types=push,pull_request.closed&event_types=check_run&user_events_only=true&repositories=acme/api,acme/web&repositories=Acme%2FDocs",
                form_urlencoded::byte_serialize(pr1.as_bytes()).collect::<String>(),
                pr2
            ),
            Some("6f1c9e2a:1030"),
        );
        assert_eq!(s.organization, "acme");
        assert_eq!(s.pull_requests, [pr1, pr2]);
        assert_eq!(s.event_types, ["push", "pull_request.closed", "check_run"]);
        assert_eq!(s.repositories, ["acme/api", "acme/web", "Acme/Docs"]);
        assert!(s.user_events_only);
        let r = s.resume.unwrap();
        assert_eq!((r.epoch.as_str(), r.after), ("6f1c9e2a", 1030));
        // Nothing at all: the empty subscription.
        assert_eq!(parsed("", None), Subscription::parse("{}").unwrap());
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let err = |q: &str, last: Option<&str>| {
            subscription_json(Some(q), last.map(str::as_bytes)).unwrap_err()
        };
        assert_eq!(
            err("organization=a&organization=b", None),
            "organization is given more than once"
        );
        assert_eq!(
            err("user_events_only=yes", None),
            "user_events_only must be true or false, not \"yes\""
        );
        assert!(err("resume=x", None).contains("Last-Event-ID"));
        assert!(
            err("include_payload=true", None)
                .starts_with("include_payload is not available on /events (use /ws)")
        );
        for bad in ["1030", "e:", "e:-1", "e:x"] {
            assert!(
                err("", Some(bad)).starts_with("Last-Event-ID must be"),
                "{bad}"
            );
        }
        assert_eq!(
            err(&"a".repeat(MAX_QUERY + 1), None),
            "query exceeds 8192 bytes"
        );
    }

    #[test]
    fn unknown_parameters_are_kept_for_the_warnings() {
        let json = subscription_json(Some("org=acme"), None).unwrap();
        let (_, unknown) = Subscription::parse_with_unknown(&json).unwrap();
        assert_eq!(unknown, ["org"]);
    }
}
