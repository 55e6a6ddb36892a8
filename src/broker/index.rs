//! The inverted index: org / PR key / user / repository -> something (the subscribers of
//! a shard, or the shards that hold subscribers, for the hub).
//!
//! Both the hub and the shards look an event up through [`FamilyMaps::for_event`],
//! so the shards an event is sent to and the clients it is offered to are
//! chosen by the same code.

use ahash::AHashMap;

use super::filter::Family;
use crate::event::Event;

/// One map per index family, keyed by lowercased name.
#[derive(Debug)]
pub(crate) struct FamilyMaps<V> {
    org: AHashMap<Box<str>, V>,
    pr: AHashMap<Box<str>, V>,
    user: AHashMap<Box<str>, V>,
    repo: AHashMap<Box<str>, V>,
}

impl<V> Default for FamilyMaps<V> {
    fn default() -> Self {
        Self {
            org: AHashMap::new(),
            pr: AHashMap::new(),
            user: AHashMap::new(),
            repo: AHashMap::new(),
        }
    }
}

impl<V: Default> FamilyMaps<V> {
    fn map(&self, f: Family) -> &AHashMap<Box<str>, V> {
        match f {
            Family::Org => &self.org,
            Family::Pr => &self.pr,
            Family::User => &self.user,
            Family::Repo => &self.repo,
        }
    }

    fn map_mut(&mut self, f: Family) -> &mut AHashMap<Box<str>, V> {
        match f {
            Family::Org => &mut self.org,
            Family::Pr => &mut self.pr,
            Family::User => &mut self.user,
            Family::Repo => &mut self.repo,
        }
    }

    /// The value under `key`, created empty if absent.
    pub fn entry(&mut self, family: Family, key: &str) -> &mut V {
        let map = self.map_mut(family);
        if !map.contains_key(key) {
            map.insert(key.into(), V::default());
        }
        map.get_mut(key).expect("inserted above")
    }

    /// Applies `update` to the value under `key`, and removes the key when
    /// `update` returns `true` (the value became empty).
    pub fn update(&mut self, family: Family, key: &str, update: impl FnOnce(&mut V) -> bool) {
        let map = self.map_mut(family);
        if let Some(v) = map.get_mut(key)
            && update(v)
        {
            map.remove(key);
        }
    }

    /// Calls `f` with the value under each key the event is indexed by: its
    /// org, its PR key, each involved user, and its repository.
    pub fn for_event(&self, e: &Event, mut f: impl FnMut(&V)) {
        if let Some(v) = e.org().and_then(|o| self.org.get(o)) {
            f(v);
        }
        if let Some(v) = e.pr_key().and_then(|k| self.pr.get(k)) {
            f(v);
        }
        if !self.user.is_empty() {
            for u in e.users() {
                if let Some(v) = self.user.get(&**u) {
                    f(v);
                }
            }
        }
        if let Some(v) = e.repo().and_then(|r| self.repo.get(r)) {
            f(v);
        }
    }

    /// Keys held, over all families.
    pub fn len(&self) -> usize {
        self.org.len() + self.pr.len() + self.user.len() + self.repo.len()
    }

    /// The value under `key`, if any (tests and stats).
    #[cfg(test)]
    pub fn get(&self, family: Family, key: &str) -> Option<&V> {
        self.map(family).get(key)
    }

    /// Sum of `size` over every value.
    pub fn total(&self, size: impl Fn(&V) -> usize) -> usize {
        [Family::Org, Family::Pr, Family::User, Family::Repo]
            .into_iter()
            .map(|f| self.map(f).values().map(&size).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventParts;

    #[test]
    fn event_lookup_visits_org_pr_each_user_and_repo() {
        let mut m: FamilyMaps<Vec<u32>> = FamilyMaps::default();
        m.entry(Family::Org, "acme").push(1);
        m.entry(Family::Pr, "acme/api#7").push(2);
        m.entry(Family::User, "alice").push(3);
        m.entry(Family::User, "bob").push(4);
        m.entry(Family::User, "carol").push(5);
        m.entry(Family::Repo, "acme/api").push(6);
        m.entry(Family::Repo, "acme/web").push(7);
        let e = Event::new(EventParts {
            kind: "pull_request".into(),
            url: "https://github.com/acme/api/pull/7".into(),
            org: Some("Acme".into()),
            repo: Some("Acme/API".into()),
            users: vec!["alice".into(), "Bob".into()],
            ..EventParts::default()
        });
        let mut seen = Vec::new();
        m.for_event(&e, |v| seen.extend_from_slice(v));
        assert_eq!(seen, [1, 2, 3, 4, 6]);
    }

    #[test]
    fn update_removes_emptied_keys() {
        let mut m: FamilyMaps<Vec<u32>> = FamilyMaps::default();
        m.entry(Family::Org, "acme").extend([1, 2]);
        m.update(Family::Org, "acme", |v| {
            v.retain(|&x| x != 1);
            v.is_empty()
        });
        assert_eq!(m.get(Family::Org, "acme"), Some(&vec![2]));
        m.update(Family::Org, "acme", |v| {
            v.clear();
            true
        });
        assert_eq!(m.len(), 0);
        assert_eq!(m.total(Vec::len), 0);
    }
}
