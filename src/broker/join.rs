//! Join: a client is registered for live events and, when it resumes, given
//! what it missed: replayed from the hub's window, backfilled from the
//! cluster's stream (a [`Backfill`]) for what the window no longer holds, or
//! refused (`too_old`, `unknown_epoch`, or the stream cannot be read now).
//! Replay first, then live: the hub decides the boundary in one step.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::clients::{ClientProfile, Registered};
use super::filter::{Filter, Verdict};
use super::outbox::Outbox;
use super::replay::{self, Backfill, Backfilled, Replay, ResumeRefusal, StreamState};
use super::routes::{add_routes, remove_routes};
use super::shard::{ShardMsg, Subscriber};
use super::{ClientId, Hub};
use crate::event::Event;
use crate::subscription::ResumeFrom;

/// What joining the hub gave a client.
pub(crate) struct Joined {
    /// Unregisters the client when dropped.
    pub registration: Registration,
    /// The stream when the client went live.
    pub stream: StreamState,
    /// With a resume request: the events it missed (before any filtering),
    /// or why they cannot be replayed.
    pub resume: Option<Missed>,
}

/// What the hub holds of the events a resuming client missed.
pub(crate) enum Missed {
    /// All of them.
    Held(replay::Snapshot),
    /// Only those after `floor`: the older ones are no longer held here
    /// (a cluster node fetches them from the stream).
    Partly { floor: u64, held: replay::Snapshot },
    /// None: the resume is refused.
    Refused(ResumeRefusal),
}

/// Why a client could not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JoinError {
    /// The hub is stopping.
    #[error("the hub is stopping")]
    Stopped,
    /// `resume.after` is beyond the stream's last seq.
    #[error("resume.after ({after}) is beyond the stream's last seq ({last})")]
    ResumeAfterFuture { after: u64, last: u64 },
    /// A resume needs the cluster's stream, which cannot be read now
    /// (from [`Hub::join_client`] only). Nothing is lost: the client may
    /// come back.
    #[error("the stream cannot be read now")]
    StreamUnavailable,
}

/// A client that joined: live from now on, after its replay if it resumed.
pub(crate) struct Live {
    pub id: ClientId,
    /// Where the shard queues the client's live events.
    pub outbox: Arc<Outbox>,
    /// Unregisters the client when dropped.
    pub registration: Registration,
    /// The stream when the client went live (`oldest` reaching as far
    /// back as the backfill does).
    pub stream: StreamState,
    /// What it missed, to be written before anything from the outbox.
    pub replay: Option<Box<Replay>>,
    /// With a resume request: whether it is replayed, or why not (already
    /// counted).
    pub resume: Option<Result<(), ResumeRefusal>>,
}

/// A client's place in the hub; dropping it unregisters the client, so no
/// index entry outlives its connection whatever path the connection ends by.
pub(crate) struct Registration {
    hub: Hub,
    id: ClientId,
    shard: u16,
}

impl Registration {
    /// The shard the client lives on.
    pub fn shard(&self) -> u16 {
        self.shard
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self);
    }
}

impl Hub {
    /// Joins a client: registers it for live events and, with `resume`,
    /// gathers what it missed (from the window, then from `backfill` for
    /// what the window no longer holds) and counts the resume's outcome.
    pub(crate) async fn join_client(
        &self,
        profile: ClientProfile,
        filter: Filter,
        resume: Option<&ResumeFrom>,
        backfill: Option<&dyn Backfill>,
    ) -> Result<Live, JoinError> {
        let outbox = Arc::new(Outbox::new(self.config().client_queue));
        let id = self.next_client_id();
        // The replay judges events with the same filter as the shard.
        let replay_filter = resume.is_some().then(|| filter.clone());
        // In a cluster, a client may resume after a seq another node has
        // applied first: let this node catch up before judging `after`.
        if let (Some(from), Some(backfill)) = (resume, backfill)
            && from.after > self.stream_state().seq
            && let Err(e) = backfill.catch_up().await
        {
            tracing::warn!(error = %e, "could not catch up with the stream for a resume");
        }
        let mut joined = self.register(
            Subscriber {
                id,
                filter,
                outbox: outbox.clone(),
            },
            profile,
            resume,
        )?;
        if let Some(backfill) = backfill {
            joined.stream.oldest = joined.stream.oldest.min(backfill.oldest());
        }
        let (replay, outcome) = match (joined.resume.take(), resume, replay_filter) {
            (Some(missed), Some(from), Some(filter)) => {
                // On an error `joined` is dropped on the way out: the client
                // is unregistered before it is answered.
                let (replay, outcome) = self.replay_of(missed, from, filter, backfill).await?;
                (replay, Some(outcome))
            }
            _ => (None, None),
        };
        if let Some(outcome) = outcome {
            self.count_resume(outcome);
        }
        Ok(Live {
            id,
            outbox,
            registration: joined.registration,
            stream: joined.stream,
            replay,
            resume: outcome,
        })
    }

    /// What a resuming client is replayed: what the hub holds of what it
    /// missed, with (in a cluster) what only the stream still holds before
    /// it; or why it cannot be.
    async fn replay_of(
        &self,
        missed: Missed,
        from: &ResumeFrom,
        filter: Filter,
        backfill: Option<&dyn Backfill>,
    ) -> Result<(Option<Box<Replay>>, Result<(), ResumeRefusal>), JoinError> {
        let enforce = self.config().enforce_tiers;
        let (floor, mut held) = match missed {
            Missed::Refused(refusal) => return Ok((None, Err(refusal))),
            Missed::Held(held) => {
                return Ok((Some(Box::new(Replay::new(held, filter, enforce))), Ok(())));
            }
            Missed::Partly { floor, held } => (floor, held),
        };
        // What this node no longer holds comes from the stream.
        let fetched = match backfill {
            None => Ok(Backfilled::NotHeld),
            Some(backfill) => {
                let judge = filter.clone();
                let keep = Box::new(move |e: &Event| judge.judge(e, enforce) != Verdict::Skip);
                backfill.fetch(from.after + 1, floor, keep).await
            }
        };
        match fetched {
            Ok(Backfilled::Events(older)) => {
                held.prepend(older);
                Ok((Some(Box::new(Replay::new(held, filter, enforce))), Ok(())))
            }
            Ok(Backfilled::NotHeld | Backfilled::TooLarge) => {
                Ok((None, Err(ResumeRefusal::TooOld)))
            }
            Err(e) => {
                // Not "too_old": nothing is lost, it just cannot be read
                // now. The client is told to come back.
                tracing::warn!(error = %e, after = from.after, "resume could not read the stream");
                Err(JoinError::StreamUnavailable)
            }
        }
    }

    /// Registers a client: from now on it is offered every accepted event.
    /// With `resume`, also returns (decided in the same step, so that the
    /// boundary has no gap and no duplicate) the events after
    /// `resume.after` that it missed, or why they cannot be replayed.
    pub(crate) fn register(
        &self,
        sub: Subscriber,
        profile: ClientProfile,
        resume: Option<&ResumeFrom>,
    ) -> Result<Joined, JoinError> {
        let shard = self.shard_of(sub.id);
        let keys = sub
            .filter
            .index_keys()
            .map(|(family, keys)| (family, keys.to_vec().into_boxed_slice()));
        let id = sub.id;
        let mut r = self.routing();
        // Checked under the routing lock so that a client can never register
        // after `stop` has told the shards to close their clients.
        if self.inner.stopped.load(Relaxed) {
            return Err(JoinError::Stopped);
        }
        r.window.evict_expired(Instant::now());
        let missed = match resume {
            None => None,
            Some(from) if *from.epoch != *self.inner.epoch => {
                Some(Missed::Refused(ResumeRefusal::UnknownEpoch))
            }
            Some(from) if from.after > r.seq => {
                return Err(JoinError::ResumeAfterFuture {
                    after: from.after,
                    last: r.seq,
                });
            }
            Some(from) => Some(match r.window.held_after(from.after, r.seq) {
                None => Missed::Refused(ResumeRefusal::TooOld),
                Some(held) if from.after >= r.window.floor() => Missed::Held(held),
                Some(held) => Missed::Partly {
                    floor: r.window.floor(),
                    held,
                },
            }),
        };
        let stream = self.state_of(&r);
        if let Some((family, keys)) = &keys {
            add_routes(&mut r.routes, *family, keys, shard as u16);
        }
        r.clients.insert(
            id,
            Registered {
                shard: shard as u16,
                keys,
                outbox: sub.outbox.clone(),
                profile: Arc::new(profile),
            },
        );
        let _ = self.inner.shards[shard]
            .tx
            .send(ShardMsg::Register(Box::new(sub)));
        drop(r);
        Ok(Joined {
            registration: Registration {
                hub: self.clone(),
                id,
                shard: shard as u16,
            },
            stream,
            resume: missed,
        })
    }

    fn unregister(&self, reg: &Registration) {
        let mut r = self.routing();
        let Some(gone) = r.clients.remove(&reg.id) else {
            return;
        };
        if let Some((family, keys)) = &gone.keys {
            remove_routes(&mut r.routes, *family, keys, reg.shard);
        }
        let _ = self.inner.shards[reg.shard as usize]
            .tx
            .send(ShardMsg::Unregister(reg.id));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::broker::{BackfillError, BackfillFuture, HubConfig};
    use crate::event::EventParts;

    /// A cluster's stream as a resume sees it: what `fetch` answers, and
    /// the ranges asked for.
    struct Stream {
        answer: Mutex<Option<Result<Backfilled, BackfillError>>>,
        asked: Mutex<Vec<(u64, u64)>>,
    }

    impl Stream {
        fn answering(answer: Result<Backfilled, BackfillError>) -> Self {
            Self {
                answer: Mutex::new(Some(answer)),
                asked: Mutex::new(Vec::new()),
            }
        }
    }

    impl Backfill for Stream {
        fn oldest(&self) -> u64 {
            1
        }

        fn catch_up(&self) -> BackfillFuture<'_, ()> {
            Box::pin(std::future::ready(Ok(())))
        }

        fn fetch<'a>(
            &'a self,
            from: u64,
            to: u64,
            _keep: Box<dyn Fn(&Event) -> bool + Send + Sync + 'a>,
        ) -> BackfillFuture<'a, Backfilled> {
            self.asked.lock().unwrap().push((from, to));
            let answer = self.answer.lock().unwrap().take().expect("one fetch");
            Box::pin(std::future::ready(answer))
        }
    }

    fn new_event() -> Event {
        Event::new(EventParts {
            kind: "pull_request".into(),
            url: "https://github.com/acme/r/pull/1".into(),
            org: Some("acme".into()),
            ..EventParts::default()
        })
    }

    fn event(seq: u64) -> Arc<Event> {
        let mut e = new_event();
        e.set_seq(seq);
        Arc::new(e)
    }

    fn filter() -> Filter {
        Filter {
            login: "u".into(),
            orgs: crate::auth::OrgSet::new(["acme"]),
            organization: "acme".into(),
            can_see_private: true,
            ..Filter::default()
        }
        .normalized()
    }

    fn profile() -> ClientProfile {
        ClientProfile {
            subscription: Default::default(),
            can_see_private: true,
            orgs: crate::auth::OrgSet::default(),
        }
    }

    /// A hub that holds only seq 11: the stream started at 10 here.
    fn hub() -> Hub {
        let hub = Hub::start(HubConfig::default()).unwrap();
        hub.restart_at(10);
        hub.broadcast_at(new_event(), 11).unwrap();
        hub
    }

    fn from(hub: &Hub, after: u64) -> ResumeFrom {
        ResumeFrom {
            epoch: hub.epoch().to_owned(),
            after,
        }
    }

    /// How many frames the client's replay writes.
    fn replayed(live: &mut Live) -> usize {
        let mut out = VecDeque::new();
        let replay = live.replay.as_mut().expect("a replay");
        while replay.fill(&mut out, 64) {}
        out.len()
    }

    #[tokio::test]
    async fn what_the_window_lost_is_backfilled_from_the_stream() {
        let hub = hub();
        let stream = Stream::answering(Ok(Backfilled::Events(vec![event(7), event(9)])));
        let from = from(&hub, 6);
        let mut live = hub
            .join_client(profile(), filter(), Some(&from), Some(&stream))
            .await
            .unwrap();
        assert_eq!(*stream.asked.lock().unwrap(), [(7, 10)]);
        assert_eq!(live.resume, Some(Ok(())));
        assert_eq!(live.stream.oldest, 1, "as far back as the stream reaches");
        assert_eq!(replayed(&mut live), 3, "7 and 9 from the stream, then 11");
        assert_eq!(hub.stats().resumes_resumed, 1);
    }

    #[tokio::test]
    async fn a_resume_the_stream_no_longer_holds_is_too_old() {
        for (stream, asked) in [
            (Some(Stream::answering(Ok(Backfilled::NotHeld))), 1),
            (Some(Stream::answering(Ok(Backfilled::TooLarge))), 1),
            (None, 0),
        ] {
            let hub = hub();
            let from = from(&hub, 6);
            let backfill = stream.as_ref().map(|s| s as &dyn Backfill);
            let live = hub
                .join_client(profile(), filter(), Some(&from), backfill)
                .await
                .unwrap();
            let n = stream.as_ref().map_or(0, |s| s.asked.lock().unwrap().len());
            assert_eq!(n, asked);
            assert_eq!(live.resume, Some(Err(ResumeRefusal::TooOld)));
            assert!(live.replay.is_none());
            assert_eq!(hub.stats().resumes_too_old, 1);
        }
    }

    #[tokio::test]
    async fn an_unreadable_stream_refuses_the_client_and_unregisters_it() {
        let hub = hub();
        let stream = Stream::answering(Err(BackfillError::new("stream down")));
        let from = from(&hub, 6);
        let joined = hub
            .join_client(profile(), filter(), Some(&from), Some(&stream))
            .await;
        assert!(matches!(joined, Err(JoinError::StreamUnavailable)));
        assert_eq!(hub.client_count(), 0);
        let s = hub.stats();
        assert_eq!(
            (s.resumes_resumed, s.resumes_too_old),
            (0, 0),
            "not counted"
        );
    }

    #[tokio::test]
    async fn a_resume_the_window_holds_needs_no_stream() {
        let hub = hub();
        let stream = Stream::answering(Ok(Backfilled::NotHeld));
        let from = from(&hub, 10);
        let mut live = hub
            .join_client(profile(), filter(), Some(&from), Some(&stream))
            .await
            .unwrap();
        assert!(stream.asked.lock().unwrap().is_empty());
        assert_eq!(live.resume, Some(Ok(())));
        assert_eq!(replayed(&mut live), 1);
        let other = from_epoch(&hub, "another");
        let live = hub
            .join_client(profile(), filter(), Some(&other), None)
            .await
            .unwrap();
        assert_eq!(live.resume, Some(Err(ResumeRefusal::UnknownEpoch)));
        let plain = hub
            .join_client(profile(), filter(), None, None)
            .await
            .unwrap();
        assert_eq!(
            (plain.resume.is_none(), plain.replay.is_none()),
            (true, true)
        );
        let s = hub.stats();
        assert_eq!((s.resumes_resumed, s.resumes_unknown_epoch), (1, 1));
    }

    fn from_epoch(hub: &Hub, epoch: &str) -> ResumeFrom {
        ResumeFrom {
            epoch: epoch.to_owned(),
            after: hub.stream_state().seq,
        }
    }
}
