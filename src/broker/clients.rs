//! The hub's registry of its clients: what an embedder reads or
//! disconnects, and what rechecks of a client's access change.

use std::sync::Arc;

use ahash::AHashMap;
use bytes::Bytes;
use crossbeam_channel::Sender;

use super::filter::Family;
use super::index::FamilyMaps;
use super::outbox::{CloseReason, Outbox, Outgoing, Revocation};
use super::replay::ReplayWindow;
use super::routes::{ShardCounts, add_routes, remove_routes};
use super::shard::ShardMsg;
use super::{ClientId, Hub};
use crate::auth::OrgSet;
use crate::event::Event;
use crate::subscription::Subscription;

/// What the hub changes under its one routing lock: the stream's last seq
/// and replay window, the routes to shards, the taps, and the registry of
/// clients. Here, with the registry, because the registry's code takes it
/// apart and the hub only holds it.
pub(super) struct Routing {
    pub(super) seq: u64,
    pub(super) window: ReplayWindow,
    pub(super) routes: FamilyMaps<ShardCounts>,
    pub(super) taps: Vec<Sender<Arc<Event>>>,
    pub(super) clients: AHashMap<ClientId, Registered>,
}

/// The hub's record of a registered client.
pub(super) struct Registered {
    pub(super) shard: u16,
    /// Its index keys, to take its routes back out.
    pub(super) keys: Option<(Family, Box<[Box<str>]>)>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) profile: Arc<ClientProfile>,
}

impl Registered {
    pub(super) fn snapshot(&self, id: ClientId) -> Client {
        Client {
            id,
            shard: self.shard,
            closing: self.outbox.is_closing(),
            profile: self.profile.clone(),
        }
    }
}

/// What is known about a client beyond its filter, for [`Client`] and
/// for rechecks of its access.
#[derive(Debug)]
pub(crate) struct ClientProfile {
    /// The subscription as accepted (username filled in, org pinned).
    pub subscription: Subscription,
    /// Its tier may see private repositories.
    pub can_see_private: bool,
    /// The organizations its account belongs to, as last checked.
    pub orgs: OrgSet,
}

/// What a recheck of a client's access changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessUpdate {
    /// Its organizations and tier are as they were.
    Unchanged,
    /// It receives by its new organizations or tier from the next event on.
    Updated,
    /// It is not registered (any more).
    Gone,
}

/// What an embedder can read about a connected client: a snapshot.
#[derive(Debug, Clone)]
pub struct Client {
    id: ClientId,
    shard: u16,
    closing: bool,
    profile: Arc<ClientProfile>,
}

impl Client {
    /// The client's id (unique for the life of the hub).
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Its subscription, as accepted: `username` is the authenticated
    /// login, and an app installation that named no organization has its
    /// installation's.
    pub fn subscription(&self) -> &Subscription {
        &self.profile.subscription
    }

    /// Whether the client is being closed (disconnected, too slow, or the
    /// hub is stopping) and receives no further events.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether its tier may receive events of private repositories.
    pub fn can_see_private(&self) -> bool {
        self.profile.can_see_private
    }

    /// The shard it lives on.
    pub fn shard(&self) -> usize {
        self.shard as usize
    }
}

/// What became of a broadcast event.
impl Hub {
    /// Applies a recheck of a client's account: the organizations it
    /// belongs to and whether its tier may see private repositories now.
    /// A client subscribed to every organization of its account (`*`) is
    /// routed by the new list. Ordered with the events like everything the
    /// hub sends its shards: every event accepted after the call is judged
    /// with the new values.
    pub(crate) fn update_access(
        &self,
        id: ClientId,
        orgs: &OrgSet,
        can_see_private: bool,
    ) -> AccessUpdate {
        let mut r = self.routing();
        let Routing {
            clients, routes, ..
        } = &mut *r;
        let Some(client) = clients.get_mut(&id) else {
            return AccessUpdate::Gone;
        };
        let old = &client.profile;
        if old.orgs == *orgs && old.can_see_private == can_see_private {
            return AccessUpdate::Unchanged;
        }
        let subscription = old.subscription.clone();
        // Subscribed to every organization of the account: routed by them.
        if let Some((Family::Org, keys)) = &mut client.keys
            && subscription.organization == "*"
        {
            let new_keys: Box<[Box<str>]> = orgs.lowercase().into();
            remove_routes(routes, Family::Org, keys, client.shard);
            add_routes(routes, Family::Org, &new_keys, client.shard);
            *keys = new_keys;
        }
        client.profile = Arc::new(ClientProfile {
            subscription,
            can_see_private,
            orgs: orgs.clone(),
        });
        let _ = self.inner.shards[client.shard as usize]
            .tx
            .send(ShardMsg::Access {
                id,
                orgs: orgs.clone(),
                can_see_private,
            });
        AccessUpdate::Updated
    }

    /// Closes a client whose access a recheck refused: its queued events
    /// are discarded, it gets `farewell` (the error message) and a close
    /// frame 1008 whose reason is `why`'s error code. Returns whether such
    /// a client was connected.
    pub(crate) fn revoke(&self, id: ClientId, why: Revocation, farewell: Bytes) -> bool {
        let outbox = self.routing().clients.get(&id).map(|c| c.outbox.clone());
        outbox.is_some_and(|o| {
            o.close_with(CloseReason::Revoked(why), Outgoing::control(farewell));
            true
        })
    }

    /// A snapshot of one client, if it is connected.
    pub fn client(&self, id: ClientId) -> Option<Client> {
        self.routing().clients.get(&id).map(|c| c.snapshot(id))
    }

    /// Snapshots of every connected client, in no particular order.
    pub fn clients(&self) -> Vec<Client> {
        self.routing()
            .clients
            .iter()
            .map(|(id, c)| c.snapshot(*id))
            .collect()
    }

    /// Subscribed clients now.
    pub fn client_count(&self) -> usize {
        self.routing().clients.len()
    }

    /// Closes a client: it gets what is already queued for it, then a close
    /// frame 1000, and is unregistered when its connection ends. Returns
    /// whether such a client was connected.
    pub fn disconnect(&self, id: ClientId) -> bool {
        let outbox = self.routing().clients.get(&id).map(|c| c.outbox.clone());
        match outbox {
            Some(o) => {
                o.close(CloseReason::Disconnected, false);
                true
            }
            None => false,
        }
    }
}
