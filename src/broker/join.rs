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
