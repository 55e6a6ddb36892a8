//! Model-based test of routing: random sequences of registrations,
//! unregistrations, broadcasts and resumes run against the sharded hub
//! (1..8 shards) and against a reference model that applies PROTOCOL.md's
//! "Who receives an event" rules by scanning every client. The model is
//! written here from the protocol text and shares no matching code with
//! the broker (no `Filter::judge`, no index): after each sequence, every
//! client's received seqs must equal the model's.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use proptest::prelude::*;

use super::outbox::{Drained, Outbox, Outgoing};
use super::shard::Subscriber;
use super::{ClientProfile, Filter, Hub, HubConfig, Registration, Replay};
use crate::auth::OrgSet;
use crate::event::{Event, EventParts};
use crate::subscription::{ResumeFrom, Subscription};

/// Users: login, orgs, whether their tier may see private repositories.
const USERS: [(&str, &[&str], bool); 4] = [
    ("alice", &["acme"], false),
    ("bob", &["acme", "widgets"], true),
    ("carol", &["widgets"], true),
    ("dave", &[], false),
];
const ORGS: [&str; 3] = ["acme", "widgets", "zeta"];
const KINDS: [&str; 4] = ["pull_request", "issue_comment", "status", "check_run"];
/// (owner, repo, number): the pull requests events and subscriptions use.
const PRS: [(&str, &str, u64); 3] = [("acme", "api", 1), ("acme", "api", 2), ("widgets", "w", 1)];

#[derive(Debug, Clone)]
struct Sub {
    user: usize,
    /// "", "*" or an org name (any case).
    organization: String,
    event_types: Vec<&'static str>,
    prs: Vec<usize>,
    user_events_only: bool,
}

#[derive(Debug, Clone)]
struct Ev {
    kind: &'static str,
    org: Option<usize>,
    /// A pull request's URL, else the org's repository URL.
    pr: Option<usize>,
    users: Vec<usize>,
    private: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Register(Sub),
    Unregister(usize),
    Broadcast(Ev),
    /// Client n disconnects and comes back with a new subscription,
    /// resuming after the last seq it received.
    Resume(usize, Sub),
}

fn sub() -> impl Strategy<Value = Sub> {
    let org = prop_oneof![
        Just(String::new()),
        Just("*".to_owned()),
        (0..ORGS.len(), any::<bool>()).prop_map(|(i, upper)| if upper {
            ORGS[i].to_ascii_uppercase()
        } else {
            ORGS[i].to_owned()
        }),
    ];
    (
        0..USERS.len(),
        org,
        proptest::sample::subsequence(KINDS.to_vec(), 0..=2),
        proptest::sample::subsequence((0..PRS.len()).collect::<Vec<_>>(), 0..=2),
        proptest::bool::weighted(0.25),
    )
        .prop_map(
            |(user, organization, event_types, prs, user_events_only)| Sub {
                user,
                organization,
                event_types,
                prs,
                user_events_only,
            },
        )
}

fn ev() -> impl Strategy<Value = Ev> {
    (
        proptest::sample::select(KINDS.to_vec()),
        proptest::option::weighted(0.9, 0..ORGS.len()),
        proptest::option::weighted(0.7, 0..PRS.len()),
        proptest::sample::subsequence((0..USERS.len()).collect::<Vec<_>>(), 0..=2),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(kind, org, pr, users, private)| Ev {
            kind,
            org,
            pr,
            users,
            private,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => sub().prop_map(Op::Register),
        1 => (0..64usize).prop_map(Op::Unregister),
        6 => ev().prop_map(Op::Broadcast),
        1 => (0..64usize, sub()).prop_map(|(n, s)| Op::Resume(n, s)),
    ]
}

/// PROTOCOL.md, "Who receives an event", rules 1 to 7, for one client.
fn model_receives(s: &Sub, e: &Ev, enforce_tiers: bool) -> bool {
    let (login, orgs, paid) = USERS[s.user];
    let member = |org: usize| orgs.iter().any(|o| o.eq_ignore_ascii_case(ORGS[org]));
    // 1. Event types; status (like workflow_run) only when named.
    if s.event_types.is_empty() {
        if e.kind == "status" {
            return false;
        }
    } else if !s.event_types.contains(&e.kind) {
        return false;
    }
    // 2. Private events and tiers.
    if e.private && !paid && enforce_tiers {
        return false;
    }
    // 3. Pull requests: the event's PR is one of them, and the user belongs
    // to the event's org when it has one.
    if !s.prs.is_empty() {
        return e.pr.is_some_and(|p| s.prs.contains(&p)) && e.org.is_none_or(member);
    }
    // 4. Events involving the user, in the subscribed org(s).
    if s.user_events_only {
        let org_ok = match s.organization.as_str() {
            "" | "*" => e.org.is_some_and(member),
            named => e.org.is_some_and(|o| ORGS[o].eq_ignore_ascii_case(named)),
        };
        return org_ok && e.users.iter().any(|u| USERS[*u].0 == login);
    }
    match s.organization.as_str() {
        // 7. Nothing subscribed.
        "" => false,
        // 5. Every org of the user.
        "*" => e.org.is_some_and(member),
        // 6. One org, case-insensitive.
        named => e.org.is_some_and(|o| ORGS[o].eq_ignore_ascii_case(named)),
    }
}

/// The client's filter, built the way the WebSocket session builds it.
fn filter(s: &Sub) -> Filter {
    let (login, orgs, paid) = USERS[s.user];
    Filter {
        login: login.into(),
        orgs: OrgSet::new(orgs.iter().copied()),
        organization: s.organization.to_ascii_lowercase().into(),
        event_types: s.event_types.iter().map(|t| Box::from(*t)).collect(),
        pr_keys: s
            .prs
            .iter()
            .map(|p| {
                let (o, r, n) = PRS[*p];
                format!("{o}/{r}#{n}").into_boxed_str()
            })
            .collect(),
        user_events_only: s.user_events_only,
        can_see_private: paid,
        ..Filter::default()
    }
    .normalized()
}

fn event(e: &Ev) -> Event {
    let url = match e.pr {
        Some(p) => {
            let (o, r, n) = PRS[p];
            format!("https://github.com/{}/{r}/pull/{n}", o.to_ascii_uppercase())
        }
        None => "https://github.com/somewhere/repo".to_owned(),
    };
    Event::new(EventParts {
        kind: e.kind.into(),
        url,
        org: e.org.map(|o| ORGS[o].to_owned()),
        private: e.private,
        users: e.users.iter().map(|u| USERS[*u].0.to_owned()).collect(),
        ..EventParts::default()
    })
}

/// One client of the hub, and what the model says it should have.
struct Client {
    outbox: Arc<Outbox>,
    registration: Option<Registration>,
    /// Seqs written to it by a replay (before anything from its outbox).
    replayed: Vec<u64>,
    /// Seqs drained from its outbox so far.
    drained: Vec<u64>,
    expected: Vec<u64>,
    sub: Sub,
}

impl Client {
    fn drain(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = VecDeque::new();
        while let Poll::Ready(Drained::Frames) = self.outbox.poll_drain(&mut cx, &mut out) {
            for o in out.drain(..) {
                if let Outgoing::Event(e) = o {
                    self.drained.push(e.seq());
                }
            }
        }
    }

    fn received(&self) -> Vec<u64> {
        self.replayed.iter().chain(&self.drained).copied().collect()
    }
}

fn join(hub: &Hub, s: Sub, resume: Option<u64>, enforce_tiers: bool) -> Client {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let f = filter(&s);
    let joined = hub
        .register(
            Subscriber {
                id: hub.next_client_id(),
                filter: f.clone(),
                outbox: outbox.clone(),
            },
            ClientProfile {
                subscription: Subscription::default(),
                can_see_private: f.can_see_private,
                orgs: f.orgs.clone(),
            },
            resume
                .map(|after| ResumeFrom {
                    epoch: hub.epoch().to_owned(),
                    after,
                })
                .as_ref(),
        )
        .expect("hub running");
    let mut replayed = Vec::new();
    if let Some(r) = joined.resume {
        let super::join::Missed::Held(held) = r else {
            panic!("the window holds every event");
        };
        let mut replay = Replay::new(held, f, enforce_tiers);
        let mut out = VecDeque::new();
        while replay.fill(&mut out, 7) {
            for o in out.drain(..) {
                if let Outgoing::Event(e) = o {
                    replayed.push(e.seq());
                }
            }
        }
    }
    Client {
        outbox,
        registration: Some(joined.registration),
        replayed,
        drained: Vec::new(),
        expected: Vec::new(),
        sub: s,
    }
}

fn run(shards: usize, enforce_tiers: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let hub = Hub::start(HubConfig {
        shards,
        client_queue: 1 << 20,
        enforce_tiers,
        ..HubConfig::default()
    })
    .expect("hub");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut clients: Vec<Client> = Vec::new();
    let mut events: Vec<Ev> = Vec::new();
    for op in ops {
        match op {
            Op::Register(s) => clients.push(join(&hub, s.clone(), None, enforce_tiers)),
            Op::Unregister(n) if !clients.is_empty() => {
                let i = n % clients.len();
                clients[i].registration.take();
            }
            Op::Unregister(_) => {}
            Op::Broadcast(e) => {
                let seq = hub.broadcast(event(e)).seq;
                events.push(e.clone());
                for c in clients.iter_mut().filter(|c| c.registration.is_some()) {
                    if model_receives(&c.sub, e, enforce_tiers) {
                        c.expected.push(seq);
                    }
                }
            }
            Op::Resume(n, s) if !clients.is_empty() => {
                let i = n % clients.len();
                clients[i].registration.take();
                rt.block_on(hub.sync());
                clients[i].drain();
                let after = clients[i].received().last().copied().unwrap_or(0);
                let mut back = join(&hub, s.clone(), Some(after), enforce_tiers);
                // Everything it missed since `after`, by its new subscription.
                back.expected = (after + 1..=events.len() as u64)
                    .filter(|seq| model_receives(s, &events[*seq as usize - 1], enforce_tiers))
                    .collect();
                clients.push(back);
            }
            Op::Resume(..) => {}
        }
    }
    rt.block_on(hub.sync());
    for (i, c) in clients.iter_mut().enumerate() {
        c.drain();
        prop_assert_eq!(
            c.received(),
            c.expected.clone(),
            "client {} ({:?}), {} shards, enforce {}",
            i,
            c.sub,
            shards,
            enforce_tiers
        );
    }
    hub.stop();
    hub.join();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// 1,024 sequences of 1 to 119 operations each (about 60,000 in all).
    #[test]
    fn the_sharded_hub_delivers_what_the_protocol_says(
        shards in 1usize..=8,
        enforce_tiers in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(shards, enforce_tiers, &ops)?;
    }
}
