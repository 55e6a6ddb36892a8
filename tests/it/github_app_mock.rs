//! The GitHub-like App API of tests/common/github_app.rs checks what
//! GitHub checks and answers as GitHub answers: the App's JWT (signature,
//! `iss`, `iat`, `exp`), the headers, pagination by `Link`, redeliveries
//! that reach a real hookfan signed, canned answers and a held list.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::HeaderMap;
use serde_json::{Value, json};

const APP_ID: u64 = 424201;
const LIST: &str = "/app/hook/deliveries";

fn key(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/github-app/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A JWT as hookfan makes one: `iat` 60 s back, `exp` 9 minutes ahead.
fn good_jwt() -> String {
    app_jwt(
        &key("app-key.pem"),
        &APP_ID.to_string(),
        now() - 60,
        now() + 540,
    )
}

async fn mock() -> GithubAppMock {
    GithubAppMock::start(APP_ID, &key("app-key.pem"), SECRET).await
}

fn mock_addr(mock: &GithubAppMock) -> SocketAddr {
    mock.url().strip_prefix("http://").unwrap().parse().unwrap()
}

/// The headers of a correct API request with `jwt`.
fn api_headers(jwt: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {jwt}")),
        ("accept", "application/vnd.github+json".to_owned()),
        ("x-github-api-version", "2022-11-28".to_owned()),
        ("user-agent", "hookfan-test".to_owned()),
    ]
}

/// One request to the mock: status, headers, body as JSON.
async fn call(
    mock: &GithubAppMock,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
) -> (u16, HeaderMap, Value) {
    let addr = mock_addr(mock);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let resp = http1(stream)
        .await
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (parts.status.as_u16(), parts.headers, json)
}

fn delivery(guid: &str, age_s: u64, status_code: u16) -> MockDelivery {
    MockDelivery {
        guid: guid.to_owned(),
        event: "pull_request".to_owned(),
        body: fixture("pull_request.opened.json"),
        status_code,
        age: Duration::from_secs(age_s),
        redelivery: false,
    }
}

/// The `rel="next"` URL of a `Link` header, as a path on the mock.
fn next_link(mock: &GithubAppMock, headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().unwrap();
    let url = link.strip_prefix('<')?.strip_suffix(">; rel=\"next\"")?;
    let path = url.strip_prefix(&mock.url());
    Some(
        path.unwrap_or_else(|| panic!("{url} is not on the mock"))
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_jwt_lists_deliveries_newest_first_a_page_at_a_time() {
    let mock = mock().await;
    mock.set_page_size_cap(2);
    let codes = [200, 0, 503, 200, 202];
    let ids: Vec<u64> = (0..5)
        .map(|i| mock.add(delivery(&format!("g-{i}"), 50 - 10 * i, codes[i as usize])))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let mut path = Some(format!("{LIST}?per_page=100"));
    let (mut items, mut pages) = (Vec::new(), Vec::new());
    while let Some(p) = path {
        let (status, headers, body) = call(&mock, "GET", &p, &api_headers(&good_jwt())).await;
        assert_eq!(status, 200, "{p}: {body}");
        let page = body.as_array().unwrap().clone();
        pages.push(page.len());
        items.extend(page);
        path = next_link(&mock, &headers);
    }
    assert_eq!(pages, [2, 2, 1]);
    assert_eq!(mock.list_requests().len(), 3);
    let got: Vec<u64> = items.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    let newest_first: Vec<u64> = ids.iter().rev().copied().collect();
    assert_eq!(got, newest_first);

    let first = &items[4];
    for field in [
        "id",
        "guid",
        "delivered_at",
        "redelivery",
        "duration",
        "status",
        "status_code",
        "event",
        "action",
        "installation_id",
        "repository_id",
        "throttled_at",
    ] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    assert_eq!(
        (&first["guid"], &first["event"], &first["action"]),
        (&json!("g-0"), &json!("pull_request"), &json!("opened"))
    );
    assert_eq!(
        (
            &first["installation_id"],
            &first["repository_id"],
            &first["redelivery"]
        ),
        (&json!(4242), &json!(710000001), &json!(false))
    );
    let statuses: Vec<(&Value, &Value)> = items
        .iter()
        .rev()
        .map(|d| (&d["status_code"], &d["status"]))
        .collect();
    let want = [
        (json!(200), json!("OK")),
        (json!(0), json!("failed to connect to host")),
        (json!(503), json!("Invalid HTTP Response: 503")),
    ];
    assert!(
        statuses.iter().zip(&want).all(|(g, w)| *g == (&w.0, &w.1)),
        "{statuses:?}"
    );
    // 2019-06-03T00:57:16Z, 50 s back for the oldest.
    let at = first["delivered_at"].as_str().unwrap();
    let age = now() - unix_time(at);
    assert!((49..=52).contains(&age), "{at}: {age} s old");
    assert_eq!(mock.bad_requests(), Vec::<String>::new());
}

/// `2019-06-03T00:57:16Z` in Unix seconds; panics on any other shape.
fn unix_time(iso: &str) -> i64 {
    let n: Vec<u32> = iso
        .strip_suffix('Z')
        .unwrap()
        .split(['-', 'T', ':'])
        .map(|p| p.parse().unwrap())
        .collect();
    let [y, mo, d, h, mi, s] = n[..] else {
        panic!("{iso}")
    };
    let month = time::Month::try_from(mo as u8).unwrap();
    let date = time::Date::from_calendar_date(y as i32, month, d as u8).unwrap();
    let t = time::Time::from_hms(h as u8, mi as u8, s as u8).unwrap();
    date.with_time(t).assume_utc().unix_timestamp()
}

/// Headers of a request the mock refuses (or records): the test's name
/// for it, the headers, GitHub's status, a word of the recorded reason.
type Case = (&'static str, Vec<(&'static str, String)>, u16, &'static str);

/// A request with `jwt`, header `drop` left out and `set` added.
fn with(jwt: &str, drop: &str, set: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut h = api_headers(jwt);
    h.retain(|(k, _)| *k != drop);
    h.extend(set.iter().map(|(k, v)| (*k, v.to_string())));
    h
}

/// Sends each case to `mock` and checks that it is answered with its
/// status and recorded once, with a reason that never holds the JWT.
async fn refused(mock: &GithubAppMock, cases: &[Case]) {
    let before = mock.bad_requests().len();
    for (n, (name, headers, status, why)) in cases.iter().enumerate() {
        let (got, _, body) = call(mock, "GET", LIST, headers).await;
        assert_eq!(got, *status, "{name}: {body}");
        if *status != 200 {
            assert_eq!(body["documentation_url"], "https://docs.github.com/rest");
        }
        let bad = mock.bad_requests();
        assert_eq!(bad.len(), before + n + 1, "{name}: {bad:?}");
        let last = &bad[before + n];
        let right = last.starts_with("GET /app/hook/deliveries: ") && last.contains(why);
        assert!(right, "{name}: {last}");
        let jwt = headers.iter().find(|(k, _)| *k == "authorization");
        let sig = jwt.and_then(|(_, v)| v.rsplit('.').next()).unwrap_or("-");
        assert!(!last.contains(sig), "{name}: the JWT is in {last}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_github_refuses_is_answered_401_and_recorded() {
    let mock = mock().await;
    let (app, other, id, t) = (
        key("app-key.pem"),
        key("other-key.pem"),
        APP_ID.to_string(),
        now(),
    );
    let claims = json!({"iat": t - 60, "exp": t + 540, "iss": id});
    let hs256 = sign_jwt(&app, &json!({"alg": "HS256"}), &claims);
    let jwt =
        |key: &str, iss: &str, iat: i64, exp: i64| with(&app_jwt(key, iss, iat, exp), "", &[]);
    let token = [("authorization", "token x")];
    refused(
        &mock,
        &[
            (
                "other key",
                jwt(&other, &id, t - 60, t + 540),
                401,
                "signature",
            ),
            (
                "wrong iss",
                jwt(&app, "424202", t - 60, t + 540),
                401,
                "iss",
            ),
            ("expired", jwt(&app, &id, t - 700, t - 100), 401, "expired"),
            (
                "11 minutes ahead",
                jwt(&app, &id, t - 60, t + 660),
                401,
                "10 minutes",
            ),
            ("iat ahead", jwt(&app, &id, t + 60, t + 300), 401, "iat"),
            ("HS256", with(&hs256, "", &[]), 401, "alg"),
            ("no auth", with("x", "authorization", &[]), 401, "Bearer"),
            (
                "token scheme",
                with("x", "authorization", &token),
                401,
                "Bearer",
            ),
        ],
    )
    .await;
    // GitHub's messages: about the claim, or that the JWT is undecodable.
    let (_, _, body) = call(&mock, "GET", LIST, &jwt(&app, &id, t - 700, t - 100)).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("'Expiration time' claim ('exp')"),
        "{body}"
    );
    let (_, _, body) = call(&mock, "GET", LIST, &jwt(&other, &id, t - 60, t + 540)).await;
    assert_eq!(body["message"], "A JSON web token could not be decoded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_github_wants_are_checked_and_recorded() {
    let mock = mock().await;
    let version = [("x-github-api-version", "2021-01-01")];
    refused(
        &mock,
        &[
            (
                "wrong version",
                with(&good_jwt(), "x-github-api-version", &version),
                400,
                "2021-01-01",
            ),
            (
                "no User-Agent",
                with(&good_jwt(), "user-agent", &[]),
                403,
                "User-Agent",
            ),
            // GitHub serves these; the mock records them all the same.
            ("no Accept", with(&good_jwt(), "accept", &[]), 200, "Accept"),
            (
                "no version",
                with(&good_jwt(), "x-github-api-version", &[]),
                200,
                "X-GitHub-Api-Version",
            ),
        ],
    )
    .await;
    let (status, _, _) = call(
        &mock,
        "POST",
        "/app/hook/nothing",
        &api_headers(&good_jwt()),
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        mock.bad_requests()[4].contains("no such endpoint"),
        "{:?}",
        mock.bad_requests()
    );
}

/// GitHub takes `iss` as a number or a string; both pass, unrecorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iss_may_be_a_number_or_a_string() {
    let mock = mock().await;
    mock.add(delivery("g-1", 5, 200));
    let t = now();
    let claims = json!({"iat": t - 60, "exp": t + 540, "iss": APP_ID});
    let numeric = sign_jwt(&key("app-key.pem"), &json!({"alg": "RS256"}), &claims);
    for jwt in [numeric, good_jwt()] {
        let (status, _, body) = call(&mock, "GET", LIST, &api_headers(&jwt)).await;
        assert_eq!(
            (status, body[0]["guid"].as_str()),
            (200, Some("g-1")),
            "{body}"
        );
    }
    assert_eq!(mock.bad_requests(), Vec::<String>::new());
}

/// A redelivery reaches a real hookfan signed with the webhook secret and
/// the original delivery id: accepted once, then answered `duplicate`;
/// with hookfan unreachable it is recorded as status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_reaches_hookfan_signed_and_once_only() {
    let server = TestServer::start("").await;
    let mut ws = subscribe(server.addr, "alice", json!({"organization": "acme"})).await;
    let mock = mock().await;
    mock.deliver_to(server.addr);
    let id = mock.add(delivery("g-down", 30, 0));
    let attempt = format!("{LIST}/{id}/attempts");
    let headers = api_headers(&good_jwt());

    let (status, _, body) = call(&mock, "POST", &attempt, &headers).await;
    assert_eq!((status, body), (202, json!({})));
    mock.settled().await;
    assert_eq!(mock.attempt_statuses("g-down"), [200]);
    let event = next_event(&mut ws).await;
    assert_eq!(event["delivery_id"], "g-down", "{event}");

    let (status, _, _) = call(&mock, "POST", &attempt, &headers).await;
    assert_eq!(status, 202);
    mock.settled().await;
    // hookfan answers a known delivery id 200 `duplicate`, not broadcast.
    assert_eq!(mock.attempt_statuses("g-down"), [200, 200]);
    assert_eq!(mock.attempts("g-down"), 2);
    let text = metrics_text(server.addr).await;
    assert_eq!(
        metric(
            &text,
            "hookfan_webhook_outcomes_total{outcome=\"duplicate\"}"
        ),
        1.0
    );
    assert_eq!(server.hub().stats().events_accepted, 1);

    // Both redeliveries are in the list, newest first, same guid.
    let (_, _, list) = call(&mock, "GET", LIST, &headers).await;
    let rows: Vec<(&Value, &Value, &Value)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (&d["guid"], &d["redelivery"], &d["status_code"]))
        .collect();
    let (g, t, f) = (json!("g-down"), json!(true), json!(false));
    assert_eq!(
        rows,
        [
            (&g, &t, &json!(200)),
            (&g, &t, &json!(200)),
            (&g, &f, &json!(0))
        ]
    );

    // Nothing listening: GitHub records "failed to connect to host".
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    mock.deliver_to(closed.local_addr().unwrap());
    drop(closed);
    let (status, _, _) = call(&mock, "POST", &attempt, &headers).await;
    assert_eq!(status, 202);
    mock.settled().await;
    assert_eq!(mock.attempt_statuses("g-down"), [200, 200, 0]);
    let (_, _, list) = call(&mock, "GET", LIST, &headers).await;
    assert_eq!(list[0]["status"], "failed to connect to host", "{list}");

    let (status, _, _) = call(&mock, "POST", &format!("{LIST}/1/attempts"), &headers).await;
    assert_eq!(status, 404);
    assert_eq!(mock.attempts("g-down"), 3);
    assert_eq!(mock.bad_requests(), Vec::<String>::new());
}

/// `answer_next` answers the next requests as told, then the mock is
/// itself again; a held list answers only once released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_answers_are_served_as_many_times_as_asked_and_a_held_list_waits() {
    let mock = mock().await;
    let id = mock.add(delivery("g-1", 5, 0));
    let headers = api_headers(&good_jwt());
    mock.answer_next(
        1,
        429,
        &[("retry-after", "1"), ("x-ratelimit-remaining", "0")],
    );
    let (status, h, body) = call(&mock, "GET", LIST, &headers).await;
    assert_eq!(
        (status, &h["retry-after"], &h["x-ratelimit-remaining"]),
        (429, &"1".parse().unwrap(), &"0".parse().unwrap())
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit"),
        "{body}"
    );
    let (status, h, _) = call(&mock, "GET", LIST, &headers).await;
    assert_eq!(
        (status, &h["x-ratelimit-remaining"]),
        (200, &"4999".parse().unwrap())
    );

    // A refused redelivery is not one GitHub makes.
    mock.answer_next(2, 401, &[]);
    for _ in 0..2 {
        let (status, _, body) =
            call(&mock, "POST", &format!("{LIST}/{id}/attempts"), &headers).await;
        assert_eq!((status, &body["message"]), (401, &json!("Bad credentials")));
    }
    assert_eq!(mock.attempts("g-1"), 0);
    assert_eq!(mock.list_requests().len(), 2);

    mock.hold_list();
    let list = async {
        let answer = call(&mock, "GET", LIST, &headers).await;
        (answer.0, std::time::Instant::now())
    };
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Arrived, and not answered.
        assert_eq!(mock.list_requests().len(), 3);
        mock.release_list();
        std::time::Instant::now()
    };
    let ((status, answered), released) = tokio::join!(list, release);
    assert_eq!(status, 200);
    assert!(answered >= released, "a held list was answered");
}
