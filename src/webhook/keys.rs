//! The webhook secrets in force, swapped whole when `webhook.secret_file`
//! is reloaded, and how often each line's secret verified a delivery: what
//! lets an operator see the old secret fall out of use during a rotation.
//!
//! A request takes the set in force once (a read lock held only to clone
//! an `Arc`) and keeps it to the end; a reload builds the new set aside and
//! swaps it in, so that a request never waits on a reload nor sees half of
//! one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::config::WebhookSecret;
use super::signature::{Signature, SignatureError, WebhookVerifier};

/// The webhook secrets in force, shared by the endpoint (which checks
/// with them) and whoever reloads them ([`WebhookKeys::set`]). Its `Debug`
/// output names lines only.
pub struct WebhookKeys {
    current: RwLock<Arc<KeySet>>,
    /// Signatures verified, by the line of the secret that verified them;
    /// kept across swaps so that a line's counter never goes back.
    matches: Mutex<BTreeMap<usize, Arc<AtomicU64>>>,
}

/// One generation of secrets: the verifier and each key's counter.
pub(crate) struct KeySet {
    pub(crate) verifier: WebhookVerifier,
    /// One per key of the verifier, in its order.
    counters: Vec<Arc<AtomicU64>>,
}

impl KeySet {
    /// Whether `signature` is the HMAC of `body` under one of the secrets;
    /// the match is counted under its line.
    pub(crate) fn check(&self, signature: &Signature, body: &[u8]) -> Result<(), SignatureError> {
        let i = self.verifier.matching(signature, body)?;
        self.counters[i].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl std::fmt::Debug for WebhookKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookKeys(****, lines {:?})", self.lines())
    }
}

impl WebhookKeys {
    /// The secrets of `secret` in force.
    pub fn new(secret: &WebhookSecret) -> Self {
        let matches = Mutex::default();
        let current = RwLock::new(Arc::new(key_set(secret, &matches)));
        Self { current, matches }
    }

    /// Puts the secrets of `secret` in force: requests from now on are
    /// checked against them, those in progress end with the ones they
    /// started with.
    pub fn set(&self, secret: &WebhookSecret) {
        let set = Arc::new(key_set(secret, &self.matches));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = set;
    }

    /// The lines of the secrets in force, in the order they are tried.
    pub fn lines(&self) -> Vec<usize> {
        self.current().verifier.lines().collect()
    }

    /// The set in force.
    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Signatures verified by each line that has held a secret since the
    /// start, in line order.
    pub(crate) fn matches(&self) -> Vec<(usize, u64)> {
        let matches = self.matches.lock().unwrap_or_else(PoisonError::into_inner);
        (matches.iter())
            .map(|(line, n)| (*line, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// The verifier for `secret`, each key counting into its line's counter
/// (made at the first use of the line).
fn key_set(secret: &WebhookSecret, matches: &Mutex<BTreeMap<usize, Arc<AtomicU64>>>) -> KeySet {
    let verifier = WebhookVerifier::with_secrets(secret.secrets());
    let mut matches = matches.lock().unwrap_or_else(PoisonError::into_inner);
    let counters = (verifier.lines())
        .map(|line| matches.entry(line).or_default().clone())
        .collect();
    KeySet { verifier, counters }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::sign;

    fn file(dir: &tempfile::TempDir, text: &str) -> WebhookSecret {
        let path = dir.path().join("secret");
        std::fs::write(&path, text).unwrap();
        WebhookSecret::read_file(&path).unwrap()
    }

    /// Checks a body signed with `secret` against the set in force.
    fn check(keys: &WebhookKeys, secret: &str) -> Result<(), SignatureError> {
        let set = keys.current();
        let header = sign(secret.as_bytes(), b"{}");
        let sig = set.verifier.parse_header(Some(header.as_bytes()))?;
        set.check(&sig, b"{}")
    }

    #[test]
    fn a_swap_changes_the_secrets_and_keeps_each_lines_count() {
        let dir = tempfile::tempdir().unwrap();
        let keys = WebhookKeys::new(&file(&dir, "old\n"));
        assert_eq!(check(&keys, "old"), Ok(()));
        assert_eq!(check(&keys, "new"), Err(SignatureError::Wrong));
        assert_eq!(keys.matches(), [(1, 1)]);

        keys.set(&file(&dir, "new\nold\n"));
        assert_eq!(keys.lines(), [1, 2]);
        for s in ["old", "new", "new"] {
            assert_eq!(check(&keys, s), Ok(()), "{s}");
        }
        assert_eq!(keys.matches(), [(1, 3), (2, 1)], "line 1 counts on");

        // A request that took the set before the swap ends with it.
        let before = keys.current();
        keys.set(&file(&dir, "new\n"));
        assert_eq!(check(&keys, "old"), Err(SignatureError::Wrong));
        let header = sign(b"old", b"{}");
        let sig = before
            .verifier
            .parse_header(Some(header.as_bytes()))
            .unwrap();
        assert_eq!(before.check(&sig, b"{}"), Ok(()));
        assert_eq!(keys.matches(), [(1, 3), (2, 2)], "line 2 is still shown");
        assert_eq!(format!("{keys:?}"), "WebhookKeys(****, lines [1])");
    }
}
