//! `Subscription::validate`: one test per error variant, through the public
//! API.

use hookfan::{Subscription, SubscriptionError};

fn valid() -> Subscription {
    Subscription {
        organization: "acme".into(),
        event_types: vec!["pull_request".into()],
        pull_requests: vec!["https://github.com/acme/api/pull/7".into()],
        user_events_only: false,
        username: "alice".into(),
        resume: Some(hookfan::ResumeFrom {
            epoch: "6f1c9e2a".into(),
            after: 7,
        }),
        include_payload: false,
    }
}

#[test]
fn a_valid_subscription_passes() {
    assert_eq!(valid().validate(), Ok(()));
    assert_eq!(Subscription::default().validate(), Ok(()));
    let mut star = valid();
    star.organization = "*".into();
    assert_eq!(star.validate(), Ok(()));
    for username in ["app[installation]", "dependabot[bot]", "a-b_c"] {
        let mut s = valid();
        s.username = username.into();
        assert_eq!(s.validate(), Ok(()), "{username}");
    }
}

#[test]
fn invalid_organization() {
    let mut s = valid();
    s.organization = "not an org".into();
    assert_eq!(s.validate(), Err(SubscriptionError::InvalidOrganization));
}

#[test]
fn invalid_username() {
    let mut s = valid();
    s.username = "alice smith".into();
    assert_eq!(
        s.validate(),
        Err(SubscriptionError::InvalidUsername("alice smith".into()))
    );
}

#[test]
fn too_many_event_types() {
    let mut s = valid();
    s.event_types = (0..51).map(|i| format!("t{i}")).collect();
    assert_eq!(s.validate(), Err(SubscriptionError::TooManyEventTypes));
}

#[test]
fn invalid_event_type() {
    let mut s = valid();
    s.event_types = vec!["Pull-Request".into()];
    assert_eq!(
        s.validate(),
        Err(SubscriptionError::InvalidEventType("Pull-Request".into()))
    );
}

#[test]
fn too_many_pull_requests() {
    let mut s = valid();
    s.pull_requests = (1..=201)
        .map(|n| format!("https://github.com/acme/api/pull/{n}"))
        .collect();
    assert_eq!(s.validate(), Err(SubscriptionError::TooManyPullRequests));
}

#[test]
fn pull_request_url_too_long() {
    let mut s = valid();
    s.pull_requests = vec![format!(
        "https://github.com/acme/{}/pull/1",
        "r".repeat(480)
    )];
    assert_eq!(s.validate(), Err(SubscriptionError::PullRequestUrlTooLong));
}

#[test]
fn invalid_pull_request_url() {
    let mut s = valid();
    s.pull_requests = vec!["https://gitlab.com/acme/api/pull/1".into()];
    assert_eq!(
        s.validate(),
        Err(SubscriptionError::InvalidPullRequestUrl(
            "https://gitlab.com/acme/api/pull/1".into()
        ))
    );
}

#[test]
fn malformed_json_is_refused_by_parse() {
    assert!(matches!(
        Subscription::parse("{\"organization\":"),
        Err(SubscriptionError::Malformed(_))
    ));
    assert_eq!(
        Subscription::parse(r#"{"organization":"acme","username":"mallory"}"#).map(|s| s.username),
        Ok(String::new()),
        "the username is never read from the client"
    );
}

#[test]
fn invalid_resume_epoch() {
    for epoch in ["", "a b", &"e".repeat(65)] {
        let mut s = valid();
        s.resume.as_mut().unwrap().epoch = epoch.into();
        assert_eq!(
            s.validate(),
            Err(SubscriptionError::InvalidResume("malformed epoch")),
            "{epoch:?}"
        );
    }
}
