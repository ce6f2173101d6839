//! How a tree's node values are derived from the master secret: each node's value independently
//! (the first derivation, [`Derivation::Flat`]), or down a tree of seeds
//! ([`Derivation::SeedTree`]), so that a subtree's values can be handed to a license server as
//! one seed ([`crate::Delegation`]).
//!
//! A node's *value* is what devices get from it: in Complete Subtree its node key, in Subset
//! Difference its root label `L(u, u)`. In a seed tree, the seed of the root comes from HKDF; a
//! node's seed gives its children's seeds and its value through AES-G3 (left child, value, right
//! child), as Subset Difference's labels do. Devices get values, never seeds (`docs/design.md`, "Keys as an
//! authority keeps them").

#[cfg(feature = "authority")]
use crate::crypto::{G3, g3};
#[cfg(feature = "authority")]
use crate::secret::NodeKey;
#[cfg(feature = "authority")]
use crate::treemath::{NodeIndex, low_bits};

/// How a tree's node values and device keys are derived from the master secret.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum Derivation {
    /// Every node value and device key is `AES-128(K, node)` under a key of its own purpose:
    /// the derivation of every tree made before seed trees, kept for them and for the AACS
    /// profile. A subtree of it cannot be delegated.
    #[default]
    Flat,
    /// Values and device keys come down a tree of seeds: a subtree can be delegated to a
    /// license server as its root's seed plus what its devices share from above.
    SeedTree,
}

impl Derivation {
    /// The name a key file gives it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Flat => "flat",
            Self::SeedTree => "seed-tree",
        }
    }

    /// The derivation a key file names, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "flat" => Some(Self::Flat),
            "seed-tree" => Some(Self::SeedTree),
            _ => None,
        }
    }
}

#[cfg(feature = "authority")]
/// The seeds of one subtree, from the seed of its root.
#[derive(Clone)]
pub(crate) struct Seeds {
    root: NodeIndex,
    seed: NodeKey,
}

#[cfg(feature = "authority")]
impl Seeds {
    pub(crate) const fn new(root: NodeIndex, seed: NodeKey) -> Self {
        Self { root, seed }
    }

    /// The subtree's root.
    pub(crate) const fn root(&self) -> NodeIndex {
        self.root
    }

    /// The seed of the subtree's root.
    pub(crate) const fn root_seed(&self) -> &NodeKey {
        &self.seed
    }

    /// The seed of `node`, which the subtree contains.
    pub(crate) fn seed(&self, node: NodeIndex) -> NodeKey {
        let steps = node.depth() - self.root.depth();
        let bits = node.get() & low_bits(steps);
        let mut seed = self.seed.clone();
        for i in (0..steps).rev() {
            seed = child(&seed, bits >> i);
        }
        seed
    }

    /// The value of `node` (its CS key, its SD root label).
    pub(crate) fn value(&self, node: NodeIndex) -> NodeKey {
        g3(&self.seed(node), G3::Key)
    }

    /// The values of the nodes on the path from the subtree's root down to `node`, root first.
    pub(crate) fn path_values(&self, node: NodeIndex) -> Vec<NodeKey> {
        let steps = node.depth() - self.root.depth();
        let bits = node.get() & low_bits(steps);
        let mut values = Vec::with_capacity(usize::from(steps) + 1);
        let mut seed = self.seed.clone();
        values.push(g3(&seed, G3::Key));
        for i in (0..steps).rev() {
            seed = child(&seed, bits >> i);
            values.push(g3(&seed, G3::Key));
        }
        values
    }
}

/// The seed of a node's child: its left child when the lowest bit of `bit` is 0, else its
/// right.
#[cfg(feature = "authority")]
fn child(seed: &NodeKey, bit: u64) -> NodeKey {
    g3(seed, if bit & 1 == 0 { G3::Left } else { G3::Right })
}

/// Values of many nodes of one seed tree, for an EKB build: keeps the seeds of the last path
/// walked, so that nodes met in preorder (a cover's order) share their common prefix.
#[cfg(feature = "authority")]
pub(crate) struct Walker<'a> {
    seeds: &'a Seeds,
    /// The seeds from the subtree's root down to the last node asked for.
    path: Vec<(NodeIndex, NodeKey)>,
}

#[cfg(feature = "authority")]
impl<'a> Walker<'a> {
    pub(crate) fn new(seeds: &'a Seeds) -> Self {
        // Room for a whole path up front: a vector that grew would leave copies of seeds in
        // freed memory.
        let mut path = Vec::with_capacity(65);
        path.push((seeds.root, seeds.seed.clone()));
        Self { seeds, path }
    }

    /// The value of `node`, which the subtree contains.
    pub(crate) fn value(&mut self, node: NodeIndex) -> NodeKey {
        // Keep the longest prefix of the path that leads to `node`.
        while let Some((last, _)) = self.path.last() {
            if last.contains(node) {
                break;
            }
            self.path.pop();
        }
        if self.path.is_empty() {
            self.path.push((self.seeds.root, self.seeds.seed.clone()));
        }
        while let Some((last, seed)) = self.path.last() {
            if *last == node {
                return g3(seed, G3::Key);
            }
            let next_depth = last.depth() + 1;
            let Some(next) = node.ancestor(next_depth) else {
                break;
            };
            let seed = child(seed, next.get());
            self.path.push((next, seed));
        }
        // Not reached for a node of the subtree; computed afresh should it be.
        self.seeds.value(node)
    }
}
