//! Covers: sets of disjoint subsets whose union is exactly the non-revoked leaves.
//!
//! A cover is computed from the revoked set alone, in O(r·h) time and memory for r revoked
//! leaves of a height-h tree: it walks the Steiner tree of the revoked leaves (the union of
//! their paths to the root) and never looks at the other leaves or at any key.
//!
//! ```
//! use treecast_keytree::{Cover, RevocationSet, Scheme, Subset, TreeHeight};
//! # fn main() -> Result<(), treecast_keytree::Error> {
//! let h = TreeHeight::new(3)?;
//! let revoked = RevocationSet::from_leaves(h, [2])?;
//! let cover = Cover::compute(Scheme::COMPLETE_SUBTREE, &revoked)?;
//! // Leaves 0..2 (node 4), leaf 3 (node 11) and leaves 4..8 (node 3).
//! let nodes: Vec<u64> = cover.subsets().iter().map(|s| match s {
//!     Subset::Complete(n) => n.get(),
//!     _ => unreachable!(),
//! }).collect();
//! assert_eq!(nodes, [4, 11, 3]);
//! # Ok(()) }
//! ```

use core::fmt;

#[cfg(feature = "authority")]
use crate::Error;
#[cfg(feature = "authority")]
use crate::revocation::RevocationSet;
use crate::treemath::{NodeIndex, TreeHeight};

#[cfg(feature = "authority")]
mod cs;
#[cfg(feature = "authority")]
mod sd;

/// A broadcast-encryption scheme, as carried on the wire.
///
/// A `struct` around the byte, not an `enum`, so that a value this version does not know still
/// decodes and prints.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Scheme(pub u8);

impl Scheme {
    /// Complete Subtree (Naor–Naor–Lotspiech 2001; Sony's EKB): subsets are whole subtrees.
    pub const COMPLETE_SUBTREE: Self = Self(1);
    /// Subset Difference (Naor–Naor–Lotspiech 2001; AACS): subsets are a subtree minus a
    /// subtree below it.
    pub const SUBSET_DIFFERENCE: Self = Self(2);

    /// The short name used by the CLI and in reports: `cs`, `sd`, or the number.
    pub fn name(self) -> &'static str {
        match self {
            Self::COMPLETE_SUBTREE => "cs",
            Self::SUBSET_DIFFERENCE => "sd",
            _ => "unknown",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "unknown" => write!(f, "scheme {}", self.0),
            name => f.write_str(name),
        }
    }
}

/// One subset of a cover.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Subset {
    /// Every leaf under the node (Complete Subtree).
    Complete(NodeIndex),
    /// Every leaf under `u` but not under `v`, where `v` is a proper descendant of `u`
    /// (Subset Difference).
    Difference {
        /// The top of the subset.
        u: NodeIndex,
        /// The subtree taken out.
        v: NodeIndex,
    },
}

impl Subset {
    /// Whether the subset holds `leaf_node` (the node of a leaf).
    pub fn contains(&self, leaf_node: NodeIndex) -> bool {
        match *self {
            Self::Complete(n) => n.contains(leaf_node),
            Self::Difference { u, v } => u.contains(leaf_node) && !v.contains(leaf_node),
        }
    }

    /// The top node: the subtree for [`Subset::Complete`], `u` for [`Subset::Difference`].
    pub fn top(&self) -> NodeIndex {
        match *self {
            Self::Complete(n) | Self::Difference { u: n, .. } => n,
        }
    }

    /// The number of leaves in the subset, for a tree of height `height`.
    pub fn leaf_count(&self, height: TreeHeight) -> u64 {
        let size = |n: NodeIndex| 1u64 << (height.get().saturating_sub(n.depth()));
        match *self {
            Self::Complete(n) => size(n),
            Self::Difference { u, v } => size(u) - size(v),
        }
    }
}

/// A cover of the non-revoked leaves of a tree, in the order an EKB lists its subsets.
#[cfg(feature = "authority")]
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Cover {
    scheme: Scheme,
    height: TreeHeight,
    subsets: Vec<Subset>,
}

#[cfg(feature = "authority")]
impl Cover {
    /// The minimal cover of the leaves not in `revoked` under `scheme`.
    ///
    /// With nothing revoked it is one subset (the whole tree); with everything revoked it is
    /// empty.
    ///
    /// # Errors
    /// [`Error::UnsupportedScheme`] for a scheme this version cannot compute.
    pub fn compute(scheme: Scheme, revoked: &RevocationSet) -> Result<Self, Error> {
        let subsets = match scheme {
            Scheme::COMPLETE_SUBTREE => cs::cover(revoked),
            Scheme::SUBSET_DIFFERENCE => sd::cover(revoked),
            other => return Err(Error::UnsupportedScheme(other)),
        };
        Ok(Self {
            scheme,
            height: revoked.height(),
            subsets,
        })
    }

    /// A cover from subsets already sorted as an EKB lists them (tracing builds one).
    pub(crate) fn from_subsets(scheme: Scheme, height: TreeHeight, subsets: Vec<Subset>) -> Self {
        Self {
            scheme,
            height,
            subsets,
        }
    }

    /// The scheme of this cover.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The height of the tree.
    pub fn height(&self) -> TreeHeight {
        self.height
    }

    /// The subsets in preorder of their top node (for Complete Subtree: by first leaf).
    pub fn subsets(&self) -> &[Subset] {
        &self.subsets
    }

    /// The number of subsets.
    pub fn len(&self) -> usize {
        self.subsets.len()
    }

    /// Whether the cover is empty (every leaf revoked).
    pub fn is_empty(&self) -> bool {
        self.subsets.is_empty()
    }
}
