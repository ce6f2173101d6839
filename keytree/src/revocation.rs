//! The set of revoked leaves.

use crate::Error;
use crate::treemath::{LeafIndex, TreeHeight};

/// The revoked leaves of one tree, kept as a sorted vector of `u32`: four bytes a leaf, so 10^6
/// revoked leaves of a height-32 tree take 4 MB.
///
/// ```
/// use treecast_keytree::{RevocationSet, TreeHeight};
/// # fn main() -> Result<(), treecast_keytree::Error> {
/// let mut set = RevocationSet::from_leaves(TreeHeight::new(8)?, [9, 3, 9])?;
/// assert!(set.insert(200)?);
/// assert_eq!(set.as_slice(), &[3, 9, 200]);
/// assert!(set.insert(256).is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RevocationSet {
    height: TreeHeight,
    leaves: Vec<u32>,
}

impl RevocationSet {
    /// An empty set for a tree of height `height`.
    pub const fn new(height: TreeHeight) -> Self {
        Self {
            height,
            leaves: Vec::new(),
        }
    }

    /// A set holding `leaves` (in any order, duplicates allowed).
    ///
    /// # Errors
    /// [`Error::InvalidLeaf`] for the first leaf at or beyond `2^height`.
    pub fn from_leaves(
        height: TreeHeight,
        leaves: impl IntoIterator<Item = u32>,
    ) -> Result<Self, Error> {
        let mut set = Self::new(height);
        set.extend(leaves)?;
        Ok(set)
    }

    /// Adds one leaf; returns whether it was new. O(r) for the shift, so add many with
    /// [`RevocationSet::extend`].
    ///
    /// # Errors
    /// [`Error::InvalidLeaf`] when the leaf is outside the tree; the set is unchanged.
    pub fn insert(&mut self, leaf: u32) -> Result<bool, Error> {
        LeafIndex::new(leaf, self.height)?;
        match self.leaves.binary_search(&leaf) {
            Ok(_) => Ok(false),
            Err(at) => {
                self.leaves.insert(at, leaf);
                Ok(true)
            }
        }
    }

    /// Adds many leaves in O((r + n) log(r + n)).
    ///
    /// # Errors
    /// [`Error::InvalidLeaf`] for the first leaf outside the tree; the set is unchanged.
    pub fn extend(&mut self, leaves: impl IntoIterator<Item = u32>) -> Result<(), Error> {
        let old = self.leaves.len();
        for leaf in leaves {
            if let Err(e) = LeafIndex::new(leaf, self.height) {
                self.leaves.truncate(old);
                return Err(e);
            }
            self.leaves.push(leaf);
        }
        self.leaves.sort_unstable();
        self.leaves.dedup();
        Ok(())
    }

    /// Whether `leaf` is revoked.
    pub fn contains(&self, leaf: u32) -> bool {
        self.leaves.binary_search(&leaf).is_ok()
    }

    /// The number of revoked leaves.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether no leaf is revoked.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Whether every leaf of the tree is revoked.
    pub fn is_full(&self) -> bool {
        self.leaves.len() as u64 == self.height.leaf_count()
    }

    /// The revoked leaves in increasing order.
    pub fn as_slice(&self) -> &[u32] {
        &self.leaves
    }

    /// The revoked leaves in increasing order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = LeafIndex> + '_ {
        self.leaves.iter().map(|&l| LeafIndex::new_unchecked(l))
    }

    /// The height of the tree.
    pub const fn height(&self) -> TreeHeight {
        self.height
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_leaf_leaves_set_unchanged() {
        let h = TreeHeight::new(4).unwrap();
        let mut s = RevocationSet::from_leaves(h, [1, 2]).unwrap();
        assert!(s.extend([3, 16, 4]).is_err());
        assert_eq!(s.as_slice(), &[1, 2]);
        assert!(s.insert(99).is_err());
        assert_eq!(s.len(), 2);
        assert!(!s.insert(2).unwrap());
        assert!(s.contains(1) && !s.contains(3));
    }

    #[test]
    fn million_leaves_of_height_32_are_compact() {
        let h = TreeHeight::new(32).unwrap();
        let s =
            RevocationSet::from_leaves(h, (0..1_000_000u32).map(|i| i.wrapping_mul(2_654_435_761)))
                .unwrap();
        assert_eq!(s.len(), 1_000_000);
        assert!(s.leaves.capacity() * 4 <= 8_000_000);
        assert!(s.as_slice().windows(2).all(|w| w[0] < w[1]));
    }
}
