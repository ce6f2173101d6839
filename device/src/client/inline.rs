//! A [`LiteMap`](litemap::LiteMap) store that keeps its first entry inline.
//!
//! Most clients hold one content, one license and one EKB. With each collection in a vector of
//! its own, such a client costs four allocations (its stores and three vectors); with the first
//! entry of each kept inline, its stores are one allocation, about a hundred bytes smaller. A
//! client with more entries spills them to the heap as a vector would.

use core::cmp::Ordering;

use litemap::store::{
    Store, StoreBulkMut, StoreConstEmpty, StoreIntoIterator, StoreIterable, StoreMut,
};
use smallvec::SmallVec;

/// Sorted entries, the first inline.
#[derive(Clone, Debug)]
pub(super) struct Inline<K, V>(SmallVec<[(K, V); 1]>);

impl<K, V> Inline<K, V> {
    /// The same entries with no spare capacity (inline again when one or none is left).
    pub(super) fn shrunk(mut self) -> Self {
        self.0.shrink_to_fit();
        self
    }
}

impl<K, V> Default for Inline<K, V> {
    fn default() -> Self {
        Self(SmallVec::new())
    }
}

impl<K, V> FromIterator<(K, V)> for Inline<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<K, V> StoreConstEmpty<K, V> for Inline<K, V> {
    const EMPTY: Self = Self(SmallVec::new_const());
}

impl<K, V> Store<K, V> for Inline<K, V> {
    fn lm_len(&self) -> usize {
        self.0.len()
    }

    fn lm_is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn lm_get(&self, index: usize) -> Option<(&K, &V)> {
        self.0.get(index).map(|(k, v)| (k, v))
    }

    fn lm_last(&self) -> Option<(&K, &V)> {
        self.0.last().map(|(k, v)| (k, v))
    }

    fn lm_binary_search_by<F>(&self, mut cmp: F) -> Result<usize, usize>
    where
        F: FnMut(&K) -> Ordering,
    {
        self.0.binary_search_by(|(k, _)| cmp(k))
    }
}

impl<K, V> StoreMut<K, V> for Inline<K, V> {
    fn lm_with_capacity(capacity: usize) -> Self {
        Self(SmallVec::with_capacity(capacity))
    }

    fn lm_reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }

    fn lm_get_mut(&mut self, index: usize) -> Option<(&K, &mut V)> {
        self.0.get_mut(index).map(|(k, v)| (&*k, v))
    }

    fn lm_push(&mut self, key: K, value: V) {
        self.0.push((key, value));
    }

    fn lm_insert(&mut self, index: usize, key: K, value: V) {
        self.0.insert(index, (key, value));
    }

    fn lm_remove(&mut self, index: usize) -> (K, V) {
        self.0.remove(index)
    }

    fn lm_clear(&mut self) {
        self.0.clear();
    }
}

impl<K, V> StoreBulkMut<K, V> for Inline<K, V> {
    fn lm_retain<F>(&mut self, mut predicate: F)
    where
        F: FnMut(&K, &V) -> bool,
    {
        self.0.retain(|(k, v)| predicate(k, v));
    }

    fn lm_extend<I>(&mut self, other: I)
    where
        I: IntoIterator<Item = (K, V)>,
    {
        self.0.extend(other);
    }
}

/// The iterator over an [`Inline`]'s entries.
pub(super) type Iter<'a, K, V> =
    core::iter::Map<core::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

impl<'a, K: 'a, V: 'a> StoreIterable<'a, K, V> for Inline<K, V> {
    type KeyValueIter = Iter<'a, K, V>;

    fn lm_iter(&'a self) -> Self::KeyValueIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<K, V> StoreIntoIterator<K, V> for Inline<K, V> {
    type KeyValueIntoIter = smallvec::IntoIter<[(K, V); 1]>;

    fn lm_into_iter(self) -> Self::KeyValueIntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use litemap::LiteMap;

    use super::Inline;

    #[test]
    fn keeps_entries_sorted_and_one_inline() {
        let mut map: LiteMap<u64, u8, Inline<u64, u8>> = LiteMap::new();
        for k in [5, 1, 9, 3] {
            assert_eq!(map.insert(k, k as u8), None);
        }
        assert_eq!(map.insert(3, 30), Some(3));
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), [1, 3, 5, 9]);
        assert_eq!(map.get(&3), Some(&30));
        assert_eq!(map.last(), Some((&9, &9)));
        map.retain(|k, _| *k > 3);
        assert_eq!(map.remove(&5), Some(5));
        assert!(!map.contains_key(&1));
        let store: Inline<u64, u8> = map.into_iter().collect::<Inline<_, _>>().shrunk();
        assert!(!store.0.spilled(), "one entry left is kept inline");
        assert_eq!(store.0.as_slice(), [(9, 9)]);
    }
}
