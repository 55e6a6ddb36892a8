//! Access that stays checked. Every connected client's token is checked
//! again every `auth.recheck_interval_s`, and at once after a reload
//! (SIGHUP), through the auth provider, so through its cache, single
//! flight and cap on API requests. The outcome is applied to the live
//! sessions:
//!
//! - a token rejected now closes its clients with the handshake's error
//!   (`authentication_failed`, or `access_denied` for a forbidden token)
//!   and 1008;
//! - an account that no longer belongs to the organization a client
//!   subscribed to closes that client with `access_denied` and 1008;
//! - a changed organization list or tier changes what the clients receive
//!   from the next event on.
//!
//! A token's connections share one entry and one check. At most
//! `recheck_concurrency` checks run at once, so that a hundred thousand
//! clients coming due together are rechecked as a steady stream, not a
//! burst of API calls: a token is due again `auth.recheck_interval_s` after
//! its last check ended.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ahash::AHashMap;
use smallvec::SmallVec;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::WsContext;
use super::messages::revocation_frame;
use crate::auth::{AuthError, Identity, Token};
use crate::broker::{AccessUpdate, ClientId, Revocation};

/// A token's key: its SHA-256 (the token itself is kept once, in its entry).
type Key = [u8; 32];

/// The tokens of the connected clients, and when each is due for a check.
pub(crate) struct AccessWatch {
    state: Mutex<State>,
    interval: Duration,
    concurrency: usize,
    /// Wakes the recheck loop early (a reload made every token due).
    wake: Notify,
    started: AtomicBool,
}

#[derive(Default)]
struct State {
    tokens: AHashMap<Key, Slot>,
    /// Due times, earliest first. Lazy: an item whose time is no longer its
    /// token's (rescheduled, forgotten) is skipped when it comes up.
    queue: BinaryHeap<Reverse<(Instant, Key)>>,
}

struct Slot {
    entry: Arc<TokenEntry>,
    /// When the next check is due (while `checking`: when the running one
    /// was).
    due: Instant,
    /// A check of the token is running.
    checking: bool,
    /// A reload asked for a check while one was running: the token is due
    /// again as soon as it ends.
    again: bool,
}

impl Slot {
    /// Whether a queued `(due, key)` item is this slot's next check.
    fn is_due_at(&self, due: Instant) -> bool {
        !self.checking && self.due == due
    }
}

/// One token and the clients connected with it.
pub(crate) struct TokenEntry {
    key: Key,
    token: Token,
    clients: Mutex<SmallVec<[ClientId; 2]>>,
    watch: Weak<AccessWatch>,
}

/// A client's place under its token; dropping it (when the connection
/// ends) takes the client out, and the token once its last client is gone.
pub(crate) struct Watching {
    entry: Arc<TokenEntry>,
    id: ClientId,
}

impl AccessWatch {
    /// Tokens are checked again `interval` after their last check, at most
    /// `concurrency` at once.
    pub fn new(interval: Duration, concurrency: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            interval,
            concurrency: concurrency.max(1),
            wake: Notify::new(),
            started: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a single map or heap step: consistent after a panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches client `id`, connected with `token`, until the returned
    /// guard is dropped. Starts the recheck loop on first use (on the
    /// caller's runtime).
    pub fn watch(self: &Arc<Self>, ctx: &Arc<WsContext>, token: Token, id: ClientId) -> Watching {
        if !self.started.swap(true, Relaxed) {
            tokio::spawn(recheck_loop(self.clone(), Arc::downgrade(ctx)));
        }
        self.add(token, id)
    }

    /// Lists client `id` under `token`, whose first check is due one
    /// interval from now.
    fn add(self: &Arc<Self>, token: Token, id: ClientId) -> Watching {
        let key = token.sha256();
        let mut st = self.lock();
        let entry = match st.tokens.get(&key) {
            Some(slot) => slot.entry.clone(),
            None => {
                let entry = Arc::new(TokenEntry {
                    key,
                    token,
                    clients: Mutex::new(SmallVec::new()),
                    watch: Arc::downgrade(self),
                });
                let due = Instant::now() + self.interval;
                let slot = Slot {
                    entry: entry.clone(),
                    due,
                    checking: false,
                    again: false,
                };
                st.tokens.insert(key, slot);
                st.queue.push(Reverse((due, key)));
                entry
            }
        };
        entry.clients().push(id);
        Watching { entry, id }
    }

    /// Makes every token due now (after a reload) and wakes the loop.
    pub fn recheck_all(&self) {
        let now = Instant::now();
        let mut st = self.lock();
        let State { tokens, queue } = &mut *st;
        queue.clear();
        for (key, slot) in tokens.iter_mut() {
            if slot.checking {
                slot.again = true;
            } else {
                slot.due = now;
                queue.push(Reverse((now, *key)));
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    /// The next token due by `now`, marked as being checked.
    fn take_due(&self, now: Instant) -> Option<Arc<TokenEntry>> {
        let mut st = self.lock();
        while let Some(&Reverse((due, key))) = st.queue.peek() {
            if due > now {
                return None;
            }
            st.queue.pop();
            if let Some(slot) = st.tokens.get_mut(&key)
                && slot.is_due_at(due)
            {
                slot.checking = true;
                return Some(slot.entry.clone());
            }
        }
        None
    }

    /// When the next token is due, if any is.
    fn next_due(&self) -> Option<Instant> {
        self.lock().queue.peek().map(|Reverse((due, _))| *due)
    }

    /// A check of `entry` ended: it is due again one interval from now,
    /// or at once if a reload asked for it meanwhile.
    fn checked(&self, entry: &TokenEntry) {
        let now = Instant::now();
        let mut st = self.lock();
        let Some(slot) = st.tokens.get_mut(&entry.key) else {
            return;
        };
        let due = if slot.again { now } else { now + self.interval };
        *slot = Slot {
            entry: slot.entry.clone(),
            due,
            checking: false,
            again: false,
        };
        st.queue.push(Reverse((due, entry.key)));
        // Rescheduling leaves stale items behind: keep the heap
        // proportional to the tokens.
        if st.queue.len() > 2 * st.tokens.len() + 64 {
            let State { tokens, queue } = &mut *st;
            queue.retain(|Reverse((due, key))| tokens.get(key).is_some_and(|s| s.is_due_at(*due)));
        }
    }

    /// Forgets `entry` if it has no client left (under the map's lock, so
    /// that a client joining the token meanwhile keeps it).
    fn forget(&self, entry: &Arc<TokenEntry>) {
        let mut st = self.lock();
        let ours = st
            .tokens
            .get(&entry.key)
            .is_some_and(|s| Arc::ptr_eq(&s.entry, entry));
        if ours && entry.clients().is_empty() {
            st.tokens.remove(&entry.key);
        }
    }
}

impl TokenEntry {
    fn clients(&self) -> MutexGuard<'_, SmallVec<[ClientId; 2]>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let empty = {
            let mut clients = self.entry.clients();
            if let Some(i) = clients.iter().position(|c| *c == self.id) {
                clients.swap_remove(i);
            }
            clients.is_empty()
        };
        if empty && let Some(watch) = self.entry.watch.upgrade() {
            watch.forget(&self.entry);
        }
    }
}

/// Checks the tokens as they come due, `concurrency` at a time, until the
/// endpoint is gone or its hub stopped.
async fn recheck_loop(watch: Arc<AccessWatch>, ctx: Weak<WsContext>) {
    let mut running: JoinSet<Arc<TokenEntry>> = JoinSet::new();
    loop {
        let Some(strong) = ctx.upgrade().filter(|c| !c.hub.is_stopped()) else {
            return;
        };
        while running.len() < watch.concurrency {
            let Some(entry) = watch.take_due(Instant::now()) else {
                break;
            };
            let ctx = strong.clone();
            running.spawn(async move {
                recheck(&ctx, &entry).await;
                entry
            });
        }
        drop(strong);
        let full = running.len() >= watch.concurrency;
        let wake_at = match watch.next_due() {
            Some(due) if !full => due,
            _ => Instant::now() + watch.interval,
        };
        tokio::select! {
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(entry) = done {
                    watch.checked(&entry);
                }
            }
            () = tokio::time::sleep_until(wake_at) => {}
            () = watch.wake.notified() => {}
        }
    }
}

/// Checks one token and applies the outcome to each of its clients.
async fn recheck(ctx: &WsContext, entry: &TokenEntry) {
    let limit = ctx.settings.auth_timeout;
    let checked = tokio::time::timeout(limit, ctx.auth.authenticate(&entry.token))
        .await
        .unwrap_or_else(|_| Err(AuthError::Unavailable("the recheck timed out".into())));
    let clients: SmallVec<[ClientId; 2]> = entry.clients().clone();
    let token = entry.token.fingerprint();
    let revocation = match checked {
        Ok(identity) => {
            ctx.metrics.access_recheck("ok");
            for id in clients {
                apply(ctx, id, &identity, &token);
            }
            return;
        }
        Err(AuthError::InvalidToken) => Revocation::TokenRejected,
        Err(AuthError::Forbidden) => Revocation::TokenForbidden,
        Err(e @ (AuthError::RateLimited | AuthError::Unavailable(_))) => {
            // Not the client's doing: it keeps its access until a check
            // can be made.
            ctx.metrics.access_recheck("unavailable");
            tracing::warn!(%token, clients = clients.len(), error = %e, "token recheck failed; its clients stay connected");
            return;
        }
    };
    ctx.metrics.access_recheck(match revocation {
        Revocation::TokenRejected => "rejected",
        _ => "forbidden",
    });
    for id in clients {
        if let Some(client) = ctx.hub.client(id) {
            let sub = client.subscription();
            revoke(
                ctx,
                id,
                revocation,
                (&sub.username, &sub.organization),
                &token,
            );
        }
    }
}

/// Applies a token's identity of now to one of its clients.
fn apply(ctx: &WsContext, id: ClientId, identity: &Identity, token: &str) {
    let Some(client) = ctx.hub.client(id) else {
        return;
    };
    let sub = client.subscription();
    let who = (sub.username.as_str(), sub.organization.as_str());
    if sub.username != identity.login {
        // The token stands for another account now (a reloaded table).
        return revoke(ctx, id, Revocation::TokenRejected, who, token);
    }
    let org = sub.organization.as_str();
    if !org.is_empty() && org != "*" && !identity.is_member_of(org) {
        return revoke(ctx, id, Revocation::NotMember, who, token);
    }
    if sub.include_payload
        && let Err(why) = ctx.settings.payloads.allows(identity.tier)
    {
        return revoke(ctx, id, Revocation::PayloadNotAllowed(why), who, token);
    }
    let can_see_private = identity.tier.can_see_private();
    if ctx.hub.update_access(id, &identity.orgs, can_see_private) == AccessUpdate::Updated {
        ctx.metrics.access_change("updated");
        tracing::info!(
            client = id, login = %identity.login, orgs = identity.orgs.len(),
            tier = identity.tier.as_str(), "access rechecked: organizations or tier changed"
        );
    }
}

/// Closes client `id` (`who`: its login and subscribed organization) with
/// the error `why`.
fn revoke(ctx: &WsContext, id: ClientId, why: Revocation, who: (&str, &str), token: &str) {
    let (login, org) = who;
    if ctx.hub.revoke(id, why, revocation_frame(why, login, org)) {
        ctx.metrics.access_change(match why {
            Revocation::TokenRejected => "token_rejected",
            Revocation::TokenForbidden => "token_forbidden",
            Revocation::NotMember => "not_member",
            Revocation::PayloadNotAllowed(_) => "payload_not_allowed",
        });
        tracing::info!(client = id, %login, %token, error = why.code(), "access revoked at a recheck: closing the client");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn token(c: char) -> Token {
        Token::new(format!("ghp_{}", c.to_string().repeat(36)))
    }

    fn ids(e: &TokenEntry) -> Vec<ClientId> {
        e.clients().to_vec()
    }

    #[test]
    fn clients_of_one_token_share_one_check_due_an_interval_later() {
        let w = AccessWatch::new(MINUTE, 4);
        let start = Instant::now();
        let a1 = w.add(token('a'), 1);
        let a2 = w.add(token('a'), 2);
        let _b = w.add(token('b'), 3);
        assert_eq!(w.lock().tokens.len(), 2);
        assert!(w.take_due(start).is_none(), "nothing is due yet");
        let later = Instant::now() + MINUTE;
        let mut due: Vec<_> = std::iter::from_fn(|| w.take_due(later)).collect();
        due.sort_by_key(|e| e.key);
        let mut want = vec![token('a').sha256(), token('b').sha256()];
        want.sort();
        assert_eq!(due.iter().map(|e| e.key).collect::<Vec<_>>(), want);
        let a = due.iter().find(|e| e.key == token('a').sha256()).unwrap();
        assert_eq!(ids(a), [1, 2]);
        assert!(w.take_due(later).is_none(), "each is taken once");

        // Done: due again one interval after the check ended.
        w.checked(a);
        assert!(w.take_due(later).is_none());
        assert!(w.take_due(Instant::now() + MINUTE).is_some());

        // The token goes with its last client.
        drop(a1);
        assert_eq!(w.lock().tokens.len(), 2);
        drop(a2);
        assert_eq!(w.lock().tokens.len(), 1);
        assert!(!w.lock().tokens.contains_key(&token('a').sha256()));
    }

    #[test]
    fn a_reload_makes_every_token_due_now_even_one_being_checked() {
        let w = AccessWatch::new(MINUTE, 4);
        let _a = w.add(token('a'), 1);
        let _b = w.add(token('b'), 2);
        let running = w.take_due(Instant::now() + MINUTE).unwrap();
        w.recheck_all();
        let now = Instant::now();
        let other = w.take_due(now).expect("the idle token is due at once");
        assert_ne!(other.key, running.key);
        assert!(
            w.take_due(now).is_none(),
            "the running check is not doubled"
        );
        // The running one is due again as soon as it ends, not an interval later.
        w.checked(&running);
        assert_eq!(w.take_due(Instant::now()).map(|e| e.key), Some(running.key));
    }

    #[test]
    fn the_due_queue_stays_proportional_to_the_tokens() {
        let w = AccessWatch::new(Duration::ZERO, 4);
        let _a = w.add(token('a'), 1);
        for _ in 0..1000 {
            w.recheck_all();
            let e = w.take_due(Instant::now()).unwrap();
            w.checked(&e);
        }
        assert!(w.lock().queue.len() <= 2 + 64, "{}", w.lock().queue.len());
    }

    #[test]
    fn a_client_joining_while_the_last_one_leaves_keeps_the_token() {
        let w = AccessWatch::new(MINUTE, 4);
        let first = w.add(token('a'), 1);
        let entry = first.entry.clone();
        let second = w.add(token('a'), 2);
        drop(first);
        // forget() finds a client left and keeps the entry.
        w.forget(&entry);
        assert_eq!(ids(&w.lock().tokens[&token('a').sha256()].entry), [2]);
        drop(second);
        assert!(w.lock().tokens.is_empty());
    }
}
