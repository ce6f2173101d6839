//! Index arithmetic of the complete binary tree: pure, no keys, no I/O.
//!
//! Nodes are heap-ordered: the root is 1 and the children of `v` are `2v` and `2v + 1`. A node's
//! depth is the position of its highest set bit, so the bits below it spell the path from the
//! root (0 = left, 1 = right, most significant first). The leaf with index `i` of a tree of height
//! `h` is the node `2^h + i`. A height-32 tree has `2^33 - 1` nodes, so [`NodeIndex`] holds a
//! `u64`; leaves fit a `u32`.
//!
//! ```
//! use treecast_keytree::treemath::{LeafIndex, NodeIndex, TreeHeight};
//! # fn main() -> Result<(), treecast_keytree::Error> {
//! let h = TreeHeight::new(3)?;
//! let leaf = LeafIndex::new(5, h)?;
//! let node = leaf.node(h);
//! assert_eq!(node.get(), 13);
//! assert_eq!(node.parent().map(NodeIndex::get), Some(6));
//! assert_eq!(node.ancestor(1).map(NodeIndex::get), Some(3));
//! assert_eq!(node.parent().and_then(|p| p.leaf_range(h)), Some(4..6));
//! # Ok(()) }
//! ```

use core::fmt;
use core::ops::Range;

use crate::Error;

/// The height of a key tree: the number of edges from the root to a leaf, `1..=MAX_HEIGHT`.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct TreeHeight(u8);

impl TreeHeight {
    /// Checks that `height` is in `1..=MAX_HEIGHT`.
    ///
    /// # Errors
    /// [`Error::InvalidHeight`] otherwise.
    pub const fn new(height: u8) -> Result<Self, Error> {
        if height >= 1 && height <= MAX_HEIGHT {
            Ok(Self(height))
        } else {
            Err(Error::InvalidHeight(height))
        }
    }

    /// The height of the AACS tree, 31.
    pub const AACS: Self = Self(31);

    /// The height as a number.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The number of leaves, `2^height`.
    pub const fn leaf_count(self) -> u64 {
        1 << self.0
    }

    /// The number of nodes, `2^(height+1) - 1`.
    pub const fn node_count(self) -> u64 {
        (1 << (self.0 + 1)) - 1
    }
}

impl TryFrom<u8> for TreeHeight {
    type Error = Error;

    fn try_from(height: u8) -> Result<Self, Error> {
        Self::new(height)
    }
}

impl fmt::Display for TreeHeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A leaf of a tree: a number below `2^height`.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct LeafIndex(u32);

impl LeafIndex {
    /// Checks that `leaf` is a leaf of a tree of height `height`.
    ///
    /// # Errors
    /// [`Error::InvalidLeaf`] when `leaf >= 2^height`.
    pub const fn new(leaf: u32, height: TreeHeight) -> Result<Self, Error> {
        if (leaf as u64) < height.leaf_count() {
            Ok(Self(leaf))
        } else {
            Err(Error::InvalidLeaf {
                leaf: leaf as u64,
                height: height.0,
            })
        }
    }

    /// Wraps `leaf` without a check; the caller knows it is below `2^height` of its tree.
    #[cfg(feature = "authority")]
    pub(crate) const fn new_unchecked(leaf: u32) -> Self {
        Self(leaf)
    }

    /// The leaf as a number.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The node of this leaf in a tree of height `height`.
    pub const fn node(self, height: TreeHeight) -> NodeIndex {
        NodeIndex(height.leaf_count() + self.0 as u64)
    }
}

impl fmt::Display for LeafIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A node of a tree in heap order: the root is 1, the children of `v` are `2v` and `2v + 1`.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct NodeIndex(u64);

impl NodeIndex {
    /// The root of every tree.
    pub const ROOT: Self = Self(1);

    /// Checks that `node` is a node of a tree of height `height`.
    ///
    /// # Errors
    /// [`Error::InvalidNode`] when `node` is 0 or deeper than `height`.
    pub const fn new(node: u64, height: TreeHeight) -> Result<Self, Error> {
        if node >= 1 && node <= height.node_count() {
            Ok(Self(node))
        } else {
            Err(Error::InvalidNode(node))
        }
    }

    /// Wraps `node` without a check; the caller knows it is a node of its tree.
    #[cfg(feature = "authority")]
    pub(crate) const fn new_unchecked(node: u64) -> Self {
        Self(node)
    }

    /// The node as a number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The number of edges from the root to this node (the root has depth 0).
    pub const fn depth(self) -> u8 {
        // The constructor guarantees node >= 1, so leading_zeros <= 63.
        (63 - self.0.leading_zeros()) as u8
    }

    /// The parent, or `None` for the root.
    pub const fn parent(self) -> Option<Self> {
        if self.0 > 1 {
            Some(Self(self.0 >> 1))
        } else {
            None
        }
    }

    /// The other child of this node's parent, or `None` for the root.
    pub const fn sibling(self) -> Option<Self> {
        if self.0 > 1 {
            Some(Self(self.0 ^ 1))
        } else {
            None
        }
    }

    /// The two children `(left, right)`, or `None` for a leaf of a tree of height `height`.
    pub const fn children(self, height: TreeHeight) -> Option<(Self, Self)> {
        if self.depth() < height.0 {
            Some((Self(self.0 << 1), Self((self.0 << 1) | 1)))
        } else {
            None
        }
    }

    /// The ancestor at depth `depth` (the node itself at its own depth), or `None` when `depth`
    /// is below this node.
    pub const fn ancestor(self, depth: u8) -> Option<Self> {
        let own = self.depth();
        if depth <= own {
            Some(Self(self.0 >> (own - depth)))
        } else {
            None
        }
    }

    /// Whether this node is `other` or one of its ancestors.
    pub const fn contains(self, other: Self) -> bool {
        match other.ancestor(self.depth()) {
            Some(a) => a.0 == self.0,
            None => false,
        }
    }

    /// The deepest node that contains both `self` and `other`.
    pub const fn common_ancestor(self, other: Self) -> Self {
        let (da, db) = (self.depth(), other.depth());
        let (a, b) = if da >= db {
            (self.0 >> (da - db), other.0)
        } else {
            (self.0, other.0 >> (db - da))
        };
        // Equal-depth nodes share the bits above their highest differing bit.
        let diff = a ^ b;
        let up = if diff == 0 {
            0
        } else {
            64 - diff.leading_zeros()
        };
        Self(a >> up)
    }

    /// The sort key of preorder (depth-first, parent before children, left before right): the
    /// first leaf, then the depth. Entries of an EKB are sorted by it.
    pub(crate) const fn preorder_key(self, height: TreeHeight) -> u64 {
        let depth = self.depth();
        let shift = height.0.saturating_sub(depth);
        let first = (self.0 << shift).wrapping_sub(height.leaf_count());
        (first << 6) | depth as u64
    }

    /// The leaves under this node as a range of leaf numbers (a leaf's range holds itself), or
    /// `None` when the node is deeper than `height`.
    pub const fn leaf_range(self, height: TreeHeight) -> Option<Range<u64>> {
        let depth = self.depth();
        if depth > height.0 {
            return None;
        }
        let shift = height.0 - depth;
        let start = (self.0 << shift) - height.leaf_count();
        Some(start..start + (1 << shift))
    }

    /// The first leaf under this node, or `None` when the node is deeper than `height`.
    pub const fn first_leaf(self, height: TreeHeight) -> Option<u64> {
        match self.leaf_range(height) {
            Some(r) => Some(r.start),
            None => None,
        }
    }

    /// The node of leaf `leaf`'s ancestor at depth `depth`, for a tree of height `height`.
    #[cfg(feature = "authority")]
    pub(crate) const fn leaf_ancestor(leaf: LeafIndex, height: TreeHeight, depth: u8) -> Self {
        Self(leaf.node(height).0 >> (height.0 - depth))
    }
}

impl fmt::Display for NodeIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The depth of the deepest common ancestor of two distinct leaves of a tree of height `height`.
#[cfg(feature = "authority")]
pub(crate) const fn common_ancestor_depth(a: u32, b: u32, height: TreeHeight) -> u8 {
    // The highest differing bit k (0-based from the leaf level) splits the paths just below
    // depth height - 1 - k.
    let k = 31 - (a ^ b).leading_zeros() as u8;
    height.0 - 1 - k
}

/// The number of labels of an SD device: h(h+1)/2.
pub(crate) const fn sd_label_count(h: u8) -> usize {
    (h as usize) * (h as usize + 1) / 2
}

/// A mask of the `n` low bits.
pub(crate) const fn low_bits(n: u8) -> u64 {
    if n >= 64 { u64::MAX } else { (1 << n) - 1 }
}

/// The largest supported tree height: 2^32 leaves.
pub const MAX_HEIGHT: u8 = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> TreeHeight {
        TreeHeight::new(n).unwrap()
    }

    #[test]
    fn heights_are_checked() {
        assert_eq!(TreeHeight::new(0), Err(Error::InvalidHeight(0)));
        assert_eq!(TreeHeight::new(33), Err(Error::InvalidHeight(33)));
        assert_eq!(h(32).leaf_count(), 1 << 32);
        assert_eq!(h(32).node_count(), (1 << 33) - 1);
        assert_eq!(h(1).node_count(), 3);
    }

    #[test]
    fn leaves_and_nodes_are_checked() {
        assert!(LeafIndex::new(7, h(3)).is_ok());
        assert!(LeafIndex::new(8, h(3)).is_err());
        assert!(LeafIndex::new(u32::MAX, h(32)).is_ok());
        assert!(NodeIndex::new(0, h(3)).is_err());
        assert!(NodeIndex::new(15, h(3)).is_ok());
        assert!(NodeIndex::new(16, h(3)).is_err());
        assert!(NodeIndex::new((1 << 33) - 1, h(32)).is_ok());
        assert!(NodeIndex::new(1 << 33, h(32)).is_err());
    }

    #[test]
    fn table_height_two() {
        type Row = (u64, u8, Option<u64>, Option<u64>, Range<u64>);
        // node, depth, parent, sibling, leaf range
        let table: [Row; 7] = [
            (1, 0, None, None, 0..4),
            (2, 1, Some(1), Some(3), 0..2),
            (3, 1, Some(1), Some(2), 2..4),
            (4, 2, Some(2), Some(5), 0..1),
            (5, 2, Some(2), Some(4), 1..2),
            (6, 2, Some(3), Some(7), 2..3),
            (7, 2, Some(3), Some(6), 3..4),
        ];
        for (v, depth, parent, sibling, range) in table {
            let n = NodeIndex::new(v, h(2)).unwrap();
            assert_eq!(n.depth(), depth, "depth of {v}");
            assert_eq!(n.parent().map(NodeIndex::get), parent, "parent of {v}");
            assert_eq!(n.sibling().map(NodeIndex::get), sibling, "sibling of {v}");
            assert_eq!(n.leaf_range(h(2)), Some(range), "range of {v}");
        }
    }

    /// Every node of every tree up to height 10: the relations agree with each other.
    #[test]
    fn exhaustive_small_trees() {
        for height in 1..=10 {
            let ht = h(height);
            for v in 1..=ht.node_count() {
                let n = NodeIndex::new(v, ht).unwrap();
                let range = n.leaf_range(ht).unwrap();
                assert_eq!(range.end - range.start, 1 << (height - n.depth()));
                match n.children(ht) {
                    Some((l, r)) => {
                        assert_eq!(l.parent(), Some(n));
                        assert_eq!(r.parent(), Some(n));
                        assert_eq!(l.sibling(), Some(r));
                        let (lr, rr) = (l.leaf_range(ht).unwrap(), r.leaf_range(ht).unwrap());
                        assert_eq!(
                            (lr.start, lr.end, rr.end),
                            (range.start, rr.start, range.end)
                        );
                    }
                    None => {
                        assert_eq!(n.depth(), height);
                        let leaf = LeafIndex::new((v - ht.leaf_count()) as u32, ht).unwrap();
                        assert_eq!(leaf.node(ht), n);
                        assert_eq!(range, leaf.get() as u64..leaf.get() as u64 + 1);
                    }
                }
                for d in 0..=n.depth() {
                    let a = n.ancestor(d).unwrap();
                    assert_eq!(a.depth(), d);
                    assert!(a.contains(n));
                    let ar = a.leaf_range(ht).unwrap();
                    assert!(ar.start <= range.start && range.end <= ar.end);
                }
                assert_eq!(n.ancestor(n.depth() + 1), None);
            }
        }
    }

    #[test]
    fn node_common_ancestor_and_preorder() {
        let ht = h(4);
        let nodes: Vec<NodeIndex> = (1..=ht.node_count())
            .map(|v| NodeIndex::new(v, ht).unwrap())
            .collect();
        for &a in &nodes {
            for &b in &nodes {
                let c = a.common_ancestor(b);
                assert!(c.contains(a) && c.contains(b), "{a} {b} -> {c}");
                if let Some((l, r)) = c.children(ht) {
                    let both_in = |n: NodeIndex| n.contains(a) && n.contains(b);
                    assert!(!both_in(l) && !both_in(r));
                }
            }
        }
        // Preorder: sorting by the key visits parents before children, left before right.
        let mut sorted = nodes.clone();
        sorted.sort_by_key(|n| n.preorder_key(ht));
        fn preorder(n: NodeIndex, ht: TreeHeight, out: &mut Vec<NodeIndex>) {
            out.push(n);
            if let Some((l, r)) = n.children(ht) {
                preorder(l, ht, out);
                preorder(r, ht, out);
            }
        }
        let mut expected = Vec::new();
        preorder(NodeIndex::ROOT, ht, &mut expected);
        assert_eq!(sorted, expected);
    }

    #[test]
    fn common_ancestor() {
        let ht = h(3);
        assert_eq!(common_ancestor_depth(0, 7, ht), 0);
        assert_eq!(common_ancestor_depth(0, 1, ht), 2);
        assert_eq!(common_ancestor_depth(2, 3, ht), 2);
        assert_eq!(common_ancestor_depth(1, 2, ht), 1);
        assert_eq!(common_ancestor_depth(0, u32::MAX, h(32)), 0);
        for a in 0..8u32 {
            for b in 0..8u32 {
                if a == b {
                    continue;
                }
                let d = common_ancestor_depth(a, b, ht);
                let (na, nb) = (
                    LeafIndex::new(a, ht).unwrap().node(ht),
                    LeafIndex::new(b, ht).unwrap().node(ht),
                );
                assert_eq!(na.ancestor(d), nb.ancestor(d));
                assert_ne!(na.ancestor(d + 1), nb.ancestor(d + 1));
            }
        }
    }
}
