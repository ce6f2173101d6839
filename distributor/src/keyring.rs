//! The tree keys a distributor process holds: the authority's, from the full key file, or one
//! license server's subtree, from a key file exported for it (issue 29, `docs/service.md`,
//! "Which process holds which secret").
//!
//! A license server of a delegated subtree registers its subtree's devices and signs their
//! licenses without the master secret. Two things it cannot derive, it reads:
//! - the EKB of each epoch, which the authority publishes into the registry
//!   (`treecast authority publish-ekb`);
//! - the payload key of each epoch, which it gets as every device does: by opening that EKB,
//!   with the key set of its subtree's last leaf, kept for the server and never handed out.
//!   Revoking that leaf with the subtree would cut a stolen license server off from every later
//!   epoch (not a command yet: `docs/service.md`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;
use treecast_keytree::{
    Authority, Delegation, Derivation, DeviceKey, DeviceKeys, DistributorSecret, EkbIn, LeafIndex,
    NodeIndex, PayloadKey, SignedEkb, TreeConfig,
};
use treecast_protocol::Error;
use treecast_protocol::binding::KeyFingerprint;
use treecast_protocol::ids::ServerId;

/// What a license server of a delegated subtree holds of the tree: its [`Delegation`] and the
/// distributor secret (which protects what the registry stores, and which every license server
/// needs to supply contents).
pub struct DelegatedKeys {
    /// The subtree.
    pub delegation: Delegation,
    /// The distributor secret of the tree.
    pub distributor: DistributorSecret,
}

impl core::fmt::Debug for DelegatedKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DelegatedKeys")
            .field("delegation", &self.delegation)
            .finish_non_exhaustive()
    }
}

/// The subtree of license server `server` when the leaves are split into subtrees at depth
/// `split` (server 1 gets the leftmost): the node `2^split + server - 1`.
///
/// # Errors
/// [`Error::UnknownServer`] for server 0 or beyond `2^split`; [`Error::KeyTree`] when `split`
/// is not above the leaves.
pub fn server_subtree(
    config: &TreeConfig,
    split: u8,
    server: ServerId,
) -> Result<NodeIndex, Error> {
    if split >= config.height.get() || split > 16 {
        return Err(Error::KeyTree(treecast_keytree::Error::InvalidNode(
            u64::from(split),
        )));
    }
    if server.0 == 0 || u64::from(server.0) > 1u64 << split {
        return Err(Error::UnknownServer(server));
    }
    Ok(NodeIndex::new(
        (1u64 << split) + u64::from(server.0) - 1,
        config.height,
    )?)
}

/// The leaves a license server hands out of its subtree: all but the last, which is its own
/// (the module's text).
pub(crate) fn registration_leaves(subtree: NodeIndex, config: &TreeConfig) -> Range<u64> {
    let all = subtree.leaf_range(config.height).unwrap_or(0..0);
    all.start..all.end.saturating_sub(1)
}

#[allow(
    clippy::large_enum_variant,
    reason = "one a distributor, read on every supply: not worth a box"
)]
pub(crate) enum Keyring {
    /// The authority, with the depth its leaves are split at between the license servers
    /// (`None`: one counter for all, as every tree of the flat derivation).
    Authority {
        authority: Authority,
        split: Option<u8>,
    },
    /// One license server's subtree.
    Delegated(Box<Delegated>),
}

pub(crate) struct Delegated {
    keys: DelegatedKeys,
    /// The key set of the subtree's last leaf: the server's own, for opening EKBs.
    own: DeviceKeys,
    /// The payload keys of the epochs opened so far.
    epoch_keys: Mutex<BTreeMap<u64, PayloadKey>>,
}

impl Keyring {
    pub(crate) fn authority(authority: Authority) -> Self {
        Self::Authority {
            authority,
            split: None,
        }
    }

    pub(crate) fn delegated(keys: DelegatedKeys) -> Result<Self, Error> {
        let d = &keys.delegation;
        let last = d.leaves().end.saturating_sub(1);
        let leaf = LeafIndex::new(
            u32::try_from(last).map_err(|_| Error::Internal("leaf beyond u32"))?,
            d.config().height,
        )?;
        let own = d.device_keys(leaf)?;
        Ok(Self::Delegated(Box::new(Delegated {
            keys,
            own,
            epoch_keys: Mutex::new(BTreeMap::new()),
        })))
    }

    pub(crate) fn config(&self) -> &TreeConfig {
        match self {
            Self::Authority { authority, .. } => authority.config(),
            Self::Delegated(d) => d.keys.delegation.config(),
        }
    }

    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        match self {
            Self::Authority { authority, .. } => authority.verifying_key(),
            Self::Delegated(d) => *d.keys.delegation.verifying_key(),
        }
    }

    pub(crate) fn fingerprint(&self) -> KeyFingerprint {
        KeyFingerprint::of_parts(&self.verifying_key(), self.config())
    }

    pub(crate) fn distributor_secret(&self) -> &DistributorSecret {
        match self {
            Self::Authority { authority, .. } => authority.distributor_secret(),
            Self::Delegated(d) => &d.keys.distributor,
        }
    }

    pub(crate) fn full(&self) -> Option<&Authority> {
        match self {
            Self::Authority { authority, .. } => Some(authority),
            Self::Delegated(_) => None,
        }
    }

    pub(crate) fn derivation(&self) -> Derivation {
        match self {
            Self::Authority { authority, .. } => authority.derivation(),
            Self::Delegated(_) => Derivation::SeedTree,
        }
    }

    pub(crate) fn device_keys(&self, leaf: LeafIndex) -> Result<DeviceKeys, Error> {
        match self {
            Self::Authority { authority, .. } => Ok(authority.device_keys(leaf)),
            Self::Delegated(d) => Ok(d.keys.delegation.device_keys(leaf)?),
        }
    }

    pub(crate) fn device_key(&self, leaf: LeafIndex) -> Result<DeviceKey, Error> {
        match self {
            Self::Authority { authority, .. } => Ok(authority.device_key(leaf)),
            Self::Delegated(d) => Ok(d.keys.delegation.device_key(leaf)),
        }
    }

    /// Splits the leaves between the license servers at depth `split` (a tree of the seed-tree
    /// derivation only: its leaves are delegated by subtree).
    pub(crate) fn set_split(&mut self, depth: u8) -> Result<(), Error> {
        if let Self::Authority { authority, split } = self {
            if authority.derivation() != Derivation::SeedTree {
                return Err(Error::KeyTree(treecast_keytree::Error::NotDelegable));
            }
            server_subtree(authority.config(), depth, ServerId(1))?;
            *split = Some(depth);
        }
        Ok(())
    }

    /// Whether registrations take leaves from ranges of their own (a split or a delegation).
    pub(crate) const fn splits_leaves(&self) -> bool {
        !matches!(self, Self::Authority { split: None, .. })
    }

    /// The leaves `server`'s registrations take, when they come from a range of their own.
    pub(crate) fn leaves_of(&self, server: ServerId) -> Result<Option<Range<u64>>, Error> {
        match self {
            Self::Authority { split: None, .. } => Ok(None),
            Self::Authority {
                authority,
                split: Some(depth),
            } => {
                let subtree = server_subtree(authority.config(), *depth, server)?;
                Ok(Some(registration_leaves(subtree, authority.config())))
            }
            Self::Delegated(d) => Ok(Some(registration_leaves(
                d.keys.delegation.root(),
                d.keys.delegation.config(),
            ))),
        }
    }

    /// The payload key of `epoch`, given its EKB (verified by the caller) when the keyring is
    /// delegated.
    pub(crate) fn epoch_key(
        &self,
        epoch: u64,
        ekb: impl FnOnce() -> Result<std::sync::Arc<SignedEkb>, Error>,
    ) -> Result<PayloadKey, Error> {
        match self {
            Self::Authority { authority, .. } => Ok(authority.epoch_key(epoch)),
            Self::Delegated(d) => {
                let poisoned = || Error::Internal("epoch key cache poisoned");
                if let Some(key) = d.epoch_keys.lock().map_err(|_| poisoned())?.get(&epoch) {
                    return Ok(key.clone());
                }
                let ekb = ekb()?;
                let verified =
                    EkbIn::from_bytes(ekb.as_bytes())?.verify(d.keys.delegation.verifying_key())?;
                if verified.header().epoch != epoch {
                    return Err(Error::Tampered("stored EKB"));
                }
                let key = d.own.open(&verified).map_err(|e| match e {
                    treecast_keytree::Error::Revoked => Error::Internal(
                        "this license server's own leaf is revoked: the authority cut it off",
                    ),
                    other => Error::KeyTree(other),
                })?;
                d.epoch_keys
                    .lock()
                    .map_err(|_| poisoned())?
                    .insert(epoch, key.clone());
                Ok(key)
            }
        }
    }
}
