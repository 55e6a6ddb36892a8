//! The organizations an account belongs to, shared by every connection of
//! that account.
//!
//! An account in a hundred organizations would otherwise cost every one of
//! its connections a hundred small allocations (several KiB); providers
//! build one `OrgSet` per account and clients clone the handle.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// A set of organization logins, compared case-insensitively. Cheap to
/// clone (a reference count); immutable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OrgSet(Arc<Inner>);

#[derive(Default, PartialEq, Eq)]
struct Inner {
    /// As the provider gave them, sorted case-insensitively, deduplicated.
    names: Box<[Box<str>]>,
    /// The same, lowercased (the form routing uses).
    lower: Box<[Box<str>]>,
}

fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

impl OrgSet {
    /// A set of `orgs` (duplicates differing only in case are merged).
    pub fn new<S: AsRef<str>>(orgs: impl IntoIterator<Item = S>) -> Self {
        let mut names: Vec<Box<str>> = orgs.into_iter().map(|s| Box::from(s.as_ref())).collect();
        names.sort_by(|a, b| cmp_ignore_case(a, b));
        names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        let lower = names
            .iter()
            .map(|n| n.to_ascii_lowercase().into_boxed_str())
            .collect();
        Self(Arc::new(Inner {
            names: names.into_boxed_slice(),
            lower,
        }))
    }

    /// Whether `org` is in the set, ignoring case.
    pub fn contains(&self, org: &str) -> bool {
        self.0
            .lower
            .binary_search_by(|o| cmp_ignore_case(o, org))
            .is_ok()
    }

    /// The logins, as given, in case-insensitive order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.names.iter().map(|n| &**n)
    }

    /// The logins lowercased, sorted: the form routing keys take.
    pub(crate) fn lowercase(&self) -> &[Box<str>] {
        &self.0.lower
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.names.is_empty()
    }
}

impl fmt::Debug for OrgSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for OrgSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self::new(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_sorted_and_shared() {
        let s = OrgSet::new(["Zeta", "acme", "ACME", "Beta"]);
        assert_eq!(s.names().collect::<Vec<_>>(), ["acme", "Beta", "Zeta"]);
        assert_eq!(
            s.lowercase(),
            &[Box::from("acme"), "beta".into(), "zeta".into()]
        );
        for yes in ["acme", "Acme", "BETA", "zeta"] {
            assert!(s.contains(yes), "{yes}");
        }
        assert!(!s.contains("acm") && !s.contains("") && !s.contains("gamma"));
        let t = s.clone();
        assert!(Arc::ptr_eq(&s.0, &t.0), "clones share the list");
        assert_eq!(format!("{s:?}"), r#"{"acme", "Beta", "Zeta"}"#);
        assert!(OrgSet::default().is_empty());
    }
}
