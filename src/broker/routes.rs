//! The hub's routing table: per index key, how many subscribers each shard
//! holds, and the set of shards an event goes to.

use smallvec::SmallVec;

use super::MAX_SHARDS;
use super::filter::Family;
use super::index::FamilyMaps;

/// Subscriber counts per shard for one index key.
#[derive(Debug, Default)]
pub(super) struct ShardCounts(pub(super) SmallVec<[(u16, u32); 2]>);

/// Counts a client of `shard` under each of `keys`.
pub(super) fn add_routes(
    routes: &mut FamilyMaps<ShardCounts>,
    family: Family,
    keys: &[Box<str>],
    shard: u16,
) {
    for k in keys {
        let counts = &mut routes.entry(family, k).0;
        match counts.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, n)) => *n += 1,
            None => counts.push((shard, 1)),
        }
    }
}

/// Takes a client of `shard` back out of each of `keys`.
pub(super) fn remove_routes(
    routes: &mut FamilyMaps<ShardCounts>,
    family: Family,
    keys: &[Box<str>],
    shard: u16,
) {
    for k in keys {
        routes.update(family, k, |counts| {
            if let Some(i) = counts.0.iter().position(|(s, _)| *s == shard) {
                counts.0[i].1 -= 1;
                if counts.0[i].1 == 0 {
                    counts.0.swap_remove(i);
                }
            }
            counts.0.is_empty()
        });
    }
}

/// A set of shard numbers below [`MAX_SHARDS`].
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ShardSet([u64; MAX_SHARDS / 64]);

impl ShardSet {
    pub(super) fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    pub(super) fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, bits)| {
            (0..64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| w * 64 + b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_set() {
        let mut s = ShardSet::default();
        for i in [0, 63, 64, 200, 255, 64] {
            s.insert(i);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), [0, 63, 64, 200, 255]);
        assert_eq!(s.len(), 5);
    }
}
