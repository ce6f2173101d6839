//! Handing out leaves to clients.

use crate::Error;
use crate::treemath::{LeafIndex, TreeHeight};

/// Hands out the leaves of one tree in order, each exactly once.
///
/// Leaves are never reused: a leaf whose client was revoked stays burnt, because the keys on its
/// path are known to whoever holds that client. The allocator's whole state is one counter, so a
/// registry persists it as a number ([`LeafAllocator::next_leaf`]) and restores it with
/// [`LeafAllocator::resume`].
///
/// ```
/// use treecast_keytree::{LeafAllocator, TreeHeight, Error};
/// # fn main() -> Result<(), Error> {
/// let mut alloc = LeafAllocator::new(TreeHeight::new(1)?);
/// assert_eq!(alloc.allocate()?.get(), 0);
/// assert_eq!(alloc.allocate()?.get(), 1);
/// assert_eq!(alloc.allocate(), Err(Error::TreeFull));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LeafAllocator {
    height: TreeHeight,
    next: u64,
}

impl LeafAllocator {
    /// An allocator for a fresh tree: the first leaf handed out is 0.
    pub const fn new(height: TreeHeight) -> Self {
        Self { height, next: 0 }
    }

    /// An allocator that continues after `next_leaf` leaves were handed out.
    ///
    /// # Errors
    /// [`Error::InvalidLeaf`] when `next_leaf > 2^height`.
    pub const fn resume(height: TreeHeight, next_leaf: u64) -> Result<Self, Error> {
        if next_leaf > height.leaf_count() {
            return Err(Error::InvalidLeaf {
                leaf: next_leaf,
                height: height.get(),
            });
        }
        Ok(Self {
            height,
            next: next_leaf,
        })
    }

    /// Hands out the next leaf.
    ///
    /// # Errors
    /// [`Error::TreeFull`] when every leaf has been handed out; the allocator is unchanged.
    pub fn allocate(&mut self) -> Result<LeafIndex, Error> {
        if self.next >= self.height.leaf_count() {
            return Err(Error::TreeFull);
        }
        let leaf = u32::try_from(self.next).map_err(|_| Error::Internal("leaf beyond u32"))?;
        self.next += 1;
        Ok(LeafIndex::new_unchecked(leaf))
    }

    /// The number of leaves handed out so far, which is also the next leaf to hand out.
    pub const fn next_leaf(&self) -> u64 {
        self.next
    }

    /// The number of leaves still free.
    pub const fn remaining(&self) -> u64 {
        self.height.leaf_count() - self.next
    }

    /// The height of the tree this allocator serves.
    pub const fn height(&self) -> TreeHeight {
        self.height
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_every_leaf_once_then_is_full() {
        let h = TreeHeight::new(4).unwrap();
        let mut a = LeafAllocator::new(h);
        let leaves: Vec<u32> = (0..16).map(|_| a.allocate().unwrap().get()).collect();
        assert_eq!(leaves, (0..16).collect::<Vec<_>>());
        assert_eq!(a.allocate(), Err(Error::TreeFull));
        assert_eq!(a.remaining(), 0);
        assert_eq!(a.allocate(), Err(Error::TreeFull));
    }

    #[test]
    fn resume_continues_and_checks() {
        let h = TreeHeight::new(32).unwrap();
        let mut a = LeafAllocator::resume(h, (1 << 32) - 1).unwrap();
        assert_eq!(a.allocate().unwrap().get(), u32::MAX);
        assert_eq!(a.allocate(), Err(Error::TreeFull));
        assert!(LeafAllocator::resume(h, (1 << 32) + 1).is_err());
    }
}
