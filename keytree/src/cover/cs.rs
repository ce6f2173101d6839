//! The Complete Subtree cover.
//!
//! The cover is the set of nodes that hang off the Steiner tree of the revoked leaves: every
//! sibling of a Steiner-tree node that is not itself on the Steiner tree. It is the unique minimal
//! cover by complete subtrees, with at most r·(h − log2 r) subsets.
//!
//! 1) Walk the revoked leaves in increasing order. Let `c_prev` be the depth of the common
//!    ancestor of leaf `r_i` with `r_{i-1}`, and `c_next` the one with `r_{i+1}`.
//! 2) The nodes on `r_i`'s path below `c_prev` have `r_i` as their first revoked leaf, so `r_i`
//!    decides their left siblings: such a sibling holds a revoked leaf only if it holds
//!    `r_{i-1}`, which happens exactly at depth `c_prev + 1`. Likewise the nodes below `c_next`
//!    have `r_i` as their last revoked leaf and decide their right siblings, occupied only at
//!    depth `c_next + 1`. Each Steiner-tree node has one first and one last leaf, so each sibling
//!    is judged once, in O(h) per leaf.
//! 3) Left siblings are met in increasing leaf order going down the path and right siblings in
//!    decreasing order, so emitting the left ones on the way down and the right ones on the way
//!    back up yields the cover sorted by first leaf, which is what a device binary-searches.

use crate::cover::Subset;
use crate::revocation::RevocationSet;
use crate::treemath::{NodeIndex, common_ancestor_depth};

pub(super) fn cover(revoked: &RevocationSet) -> Vec<Subset> {
    let height = revoked.height();
    let h = height.get();
    let leaves = revoked.as_slice();
    if leaves.is_empty() {
        return vec![Subset::Complete(NodeIndex::ROOT)];
    }
    let mut out = Vec::with_capacity(estimate(leaves.len(), h));
    for (i, &leaf) in leaves.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| leaves.get(p)).copied();
        let next = leaves.get(i + 1).copied();
        // Depth of the common ancestor with each neighbour; 0 when there is none (the root,
        // whose sibling does not exist, is never judged).
        let c_prev = prev.map(|p| common_ancestor_depth(p, leaf, height));
        let c_next = next.map(|n| common_ancestor_depth(leaf, n, height));
        let node_of_leaf = u64::from(leaf) + height.leaf_count();
        let sibling_at = |depth: u8| (node_of_leaf >> (h - depth)) ^ 1;
        let is_left = |sibling: u64| sibling & 1 == 0;
        for depth in c_prev.map_or(1, |c| c + 1)..=h {
            let sibling = sibling_at(depth);
            if is_left(sibling) && c_prev.is_none_or(|c| depth != c + 1) {
                out.push(Subset::Complete(NodeIndex::new_unchecked(sibling)));
            }
        }
        for depth in (c_next.map_or(1, |c| c + 1)..=h).rev() {
            let sibling = sibling_at(depth);
            if !is_left(sibling) && c_next.is_none_or(|c| depth != c + 1) {
                out.push(Subset::Complete(NodeIndex::new_unchecked(sibling)));
            }
        }
    }
    out
}

/// An upper bound on the cover size, r·(h − ⌊log2 r⌋) + r, to size the output once.
fn estimate(r: usize, h: u8) -> usize {
    let log_r = usize::BITS - 1 - r.leading_zeros();
    r.saturating_mul(usize::from(h).saturating_sub(log_r as usize) + 1)
}
