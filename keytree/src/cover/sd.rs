//! The Subset Difference cover of Naor, Naor and Lotspiech.
//!
//! Take the Steiner tree of the revoked leaves and compress its chains: its nodes are the
//! revoked leaves, the branching nodes (both children on the Steiner tree) and the root. Every
//! compressed edge from `x` down to `y` that skips at least one node is one subset
//! `S(child of x toward y, y)`: the leaves under that child minus those under `y`, none of them
//! revoked. When the root does not branch, the chain from the root to the topmost compressed node
//! `t` gives `S(root, t)`. This is the NNL cover, at most 2r − 1 subsets.
//!
//! 1) With the revoked leaves sorted, the branching nodes are exactly the common ancestors `a_i`
//!    of adjacent leaves `l_i, l_{i+1}` (r − 1 distinct nodes, depths `d_i` from an XOR).
//! 2) A leaf's compressed parent is the deeper of `a_{i-1}` and `a_i`. A branching node's parent
//!    is the deeper of its nearest shallower `a_j` on either side, found for all nodes with one
//!    monotonic-stack pass each way.
//! 3) Each edge gives its subset in O(1); the output is sorted in preorder of `u`, the order
//!    in which a device finds its subset with at most two binary searches.
//!
//! O(r) memory and O(r log r) time for the final sort, never a scan of the leaves.

use crate::cover::Subset;
use crate::revocation::RevocationSet;
use crate::treemath::{NodeIndex, common_ancestor_depth};

pub(super) fn cover(revoked: &RevocationSet) -> Vec<Subset> {
    let height = revoked.height();
    let h = height.get();
    let leaves = revoked.as_slice();
    if leaves.is_empty() {
        // The all-leaves subset, which has its own key.
        return vec![Subset::Complete(NodeIndex::ROOT)];
    }
    let node_of_leaf = |leaf: u32| u64::from(leaf) + height.leaf_count();
    // 1) Depths of the common ancestors of adjacent leaves, and the nodes themselves.
    let depths: Vec<u8> = leaves
        .windows(2)
        .map(|w| match *w {
            [a, b] => common_ancestor_depth(a, b, height),
            _ => 0,
        })
        .collect();
    let branch_node = |i: usize, d: u8| leaves.get(i).map_or(1, |&l| node_of_leaf(l) >> (h - d));

    let mut out = Vec::with_capacity(2 * leaves.len());
    let mut edge = |parent_depth: u8, child: u64, child_depth: u8| {
        if child_depth > parent_depth + 1 {
            let u = child >> (child_depth - parent_depth - 1);
            out.push(Subset::Difference {
                u: NodeIndex::new_unchecked(u),
                v: NodeIndex::new_unchecked(child),
            });
        }
    };

    // 2a) Leaves: the parent is the deeper adjacent common ancestor.
    for (i, &leaf) in leaves.iter().enumerate() {
        let before = i.checked_sub(1).and_then(|j| depths.get(j)).copied();
        let after = depths.get(i).copied();
        if let Some(parent) = before.max(after) {
            edge(parent, node_of_leaf(leaf), h);
        }
    }

    // 2b) Branching nodes: the parent is the deeper of the nearest shallower on either side.
    let left = nearest_shallower(depths.iter().copied().enumerate());
    let right = nearest_shallower(depths.iter().copied().enumerate().rev());
    let mut top = None;
    for (i, &d) in depths.iter().enumerate() {
        let parent = left
            .get(i)
            .copied()
            .flatten()
            .max(right.get(i).copied().flatten());
        match parent {
            Some(p) => edge(p, branch_node(i, d), d),
            None => top = Some((branch_node(i, d), d)),
        }
    }

    // 2c) The chain from the root to the topmost compressed node (a lone leaf when r = 1).
    let (top, top_depth) =
        top.unwrap_or_else(|| (leaves.first().map_or(1, |&l| node_of_leaf(l)), h));
    if top_depth > 0 {
        out.push(Subset::Difference {
            u: NodeIndex::ROOT,
            v: NodeIndex::new_unchecked(top),
        });
    }

    // 3) Preorder of u.
    out.sort_unstable_by_key(|s| s.top().preorder_key(height));
    out
}

/// For each position, the depth of the nearest earlier element (in iteration order) that is
/// strictly shallower, by a monotonic stack. Indexed by the original position.
fn nearest_shallower(items: impl ExactSizeIterator<Item = (usize, u8)>) -> Vec<Option<u8>> {
    let mut result = vec![None; items.len()];
    let mut stack: Vec<u8> = Vec::new();
    for (i, d) in items {
        while stack.last().is_some_and(|&top| top >= d) {
            stack.pop();
        }
        if let Some(slot) = result.get_mut(i) {
            *slot = stack.last().copied();
        }
        stack.push(d);
    }
    result
}
