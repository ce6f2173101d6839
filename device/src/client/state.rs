//! What a client keeps in its own storage: [`ClientState`], its collections, and what it keeps
//! of each license.

use std::collections::BTreeSet;
use std::sync::Arc;

use litemap::LiteMap;
use treecast_keytree::VerifiedEkbBuf;
use treecast_protocol::Error;
use treecast_protocol::ids::{CertificateId, ClientId, ContentId, LicenseId, ServerId, UserId};
use treecast_protocol::license::{LicenseTbs, Rights, WRAPPED_LEN};
use treecast_protocol::registration::Registration;
use treecast_protocol::release::ReleaseKey;
use treecast_protocol::terms::Terms;
use treecast_protocol::time::UnixTime;

use super::inline::Inline;

/// A client's sorted map: its first entry inline ([`Inline`]).
pub(super) type Map<K, V> = LiteMap<K, V, Inline<K, V>>;

/// What a client keeps in its own storage besides its keys: its identity, contents, licenses,
/// verified EKBs, used certificates, moved-away licenses and request counter.
///
/// A device that powers off saves it ([`Client::into_state`](super::Client::into_state)) and
/// restores it later with its keys ([`Client::restore`](super::Client::restore), or
/// [`Device::restore`](super::Device::restore) without the signing key), without verifying its
/// licenses and EKBs again: they were verified when they were stored, and only a
/// [`Client`](super::Client) makes a `ClientState`. The simulator keeps
/// millions of clients this way, with their key sets re-provisioned by the authority when they
/// act.
#[derive(Clone)]
pub struct ClientState {
    pub(super) id: ClientId,
    pub(super) user: UserId,
    pub(super) server: ServerId,
    pub(super) leaf: u32,
    /// The first bytes of the client's public key: enough for [`Client::restore`] to tell a
    /// signing key that is not this client's, in a quarter of the space (the certificate and the
    /// registry keep the whole key).
    pub(super) key_check: [u8; KEY_CHECK_LEN],
    /// What the client stores; boxed, and absent while empty, so that an idle client costs
    /// 8 bytes for it.
    pub(super) stores: Option<Box<Stores>>,
    /// What it remembers of its moves; boxed apart, and absent until the client takes part in
    /// a move, which most never do. A source that moved its only license out keeps this box and
    /// no stores.
    moves: Option<Box<Moves>>,
    pub(super) next_nonce: u64,
}

/// A client's collections. Sorted vectors, not B-trees: a client holds a few of each, and a
/// B-tree node is allocated for 11 entries (4 KiB for licenses), which millions of clients
/// cannot afford.
#[derive(Clone, Default)]
pub(super) struct Stores {
    pub(super) contents: Map<ContentId, Arc<[u8]>>,
    pub(super) licenses: Map<ContentId, Held>,
    pub(super) ekbs: Map<u64, Arc<VerifiedEkbBuf>>,
}

/// What a client remembers of its moves, and of time (issue 27): both are rare among
/// millions of clients, so they share one box that most clients never allocate.
#[derive(Clone, Default)]
pub(super) struct Moves {
    pub(super) used_certificates: Map<CertificateId, ()>,
    pub(super) moved_out: Map<LicenseId, ()>,
    /// The releases of the licenses that arrived by a move, by content: kept here, not with
    /// each license, because most licenses were bought and have none.
    pub(super) releases: Map<ContentId, ReleaseKey>,
    /// The terms of the licenses that have some, by content.
    pub(super) timed: Map<ContentId, Terms>,
    /// The playback windows started, by license, kept after the license goes (so that the
    /// same license acquired again does not start its window again) until its renewal limit
    /// has passed.
    pub(super) windows: Map<LicenseId, Window>,
    /// The floor on time beyond the licenses held (each held license's issue time counts too:
    /// [`ClientState::trusted_time`]): the times of licenses gone and of certificates, and the
    /// clock's readings when it played a license with terms.
    pub(super) trusted: UnixTime,
}

/// A license's terms and, once it has played, when it first did.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timed {
    pub(super) license: LicenseId,
    pub(super) terms: Terms,
    pub(super) first_play: Option<UnixTime>,
}

/// A playback window started: when, and the end of its license (after which it is forgotten).
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub(super) first_play: UnixTime,
    pub(super) until: UnixTime,
}

/// The moves of a client that took part in none.
static NO_MOVES: Moves = Moves {
    used_certificates: LiteMap::new(),
    moved_out: LiteMap::new(),
    releases: LiteMap::new(),
    timed: LiteMap::new(),
    windows: LiteMap::new(),
    trusted: UnixTime(0),
};

impl Moves {
    fn is_empty(&self) -> bool {
        self.used_certificates.is_empty()
            && self.moved_out.is_empty()
            && self.releases.is_empty()
            && self.timed.is_empty()
            && self.windows.is_empty()
            && self.trusted == UnixTime(0)
    }
}

impl Stores {
    fn is_empty(&self) -> bool {
        self.contents.is_empty() && self.licenses.is_empty() && self.ekbs.is_empty()
    }
}

/// A license the client holds. Its signature was verified when it arrived, and is not kept:
/// what is kept is the fields that are not the client's own (the license names this client,
/// its user and its server, which the state holds, and its content, under which it is filed).
/// A saved state is sealed as a whole under a key only this device has (`docs/formats.md`,
/// "Saved client state"), so it needs no signature per license to be trusted on load. A
/// license that arrived by a move has a release too, kept in [`Moves::releases`].
#[derive(Clone)]
pub(super) struct Held {
    pub(super) license_id: LicenseId,
    pub(super) epoch: u64,
    pub(super) issued_at: UnixTime,
    pub(super) wrapped_key: [u8; WRAPPED_LEN],
    pub(super) rights: Rights,
}

/// The client a state belongs to, as its licenses name it.
#[derive(Clone, Copy)]
pub(super) struct Owner {
    client: ClientId,
    user: UserId,
    server: ServerId,
}

impl Held {
    /// What the client `owner` keeps of the license whose fields are `t`, which must name it,
    /// its user and its server.
    ///
    /// # Errors
    /// [`Error::NotForThisClient`] for a license of another client, user or server.
    pub(super) fn new(t: &LicenseTbs, owner: Owner) -> Result<Self, Error> {
        if t.client_id != owner.client || t.user_id != owner.user || t.server_id != owner.server {
            return Err(Error::NotForThisClient);
        }
        Ok(Self {
            license_id: t.license_id,
            epoch: t.epoch,
            issued_at: t.issued_at,
            wrapped_key: t.wrapped_key,
            rights: t.rights,
        })
    }

    /// The license's fields, for `content` held by `owner`, with its `terms`.
    pub(super) fn tbs(&self, content: ContentId, owner: Owner, terms: Option<Terms>) -> LicenseTbs {
        LicenseTbs {
            license_id: self.license_id,
            content_id: content,
            client_id: owner.client,
            user_id: owner.user,
            server_id: owner.server,
            epoch: self.epoch,
            rights: self.rights,
            issued_at: self.issued_at,
            terms,
            wrapped_key: self.wrapped_key,
        }
    }
}

/// Bytes of the public key a saved state keeps.
const KEY_CHECK_LEN: usize = 8;

/// What a saved state keeps of a public key.
pub(super) fn key_check(public_key: &[u8; 32]) -> [u8; KEY_CHECK_LEN] {
    let mut check = [0; KEY_CHECK_LEN];
    check.copy_from_slice(&public_key[..KEY_CHECK_LEN]);
    check
}

/// The stores of a client that holds nothing.
static EMPTY: Stores = Stores {
    contents: LiteMap::new(),
    licenses: LiteMap::new(),
    ekbs: LiteMap::new(),
};

impl ClientState {
    /// The state of a client just registered: nothing stored, the first request counter.
    pub(super) fn new(
        registration: &Registration,
        leaf: u32,
        key_check: [u8; KEY_CHECK_LEN],
    ) -> Self {
        Self {
            id: registration.client_id,
            user: registration.user_id,
            server: registration.server_id,
            leaf,
            key_check,
            stores: None,
            moves: None,
            next_nonce: 1,
        }
    }

    /// The client, user and server its licenses name.
    pub(super) const fn owner(&self) -> Owner {
        Owner {
            client: self.id,
            user: self.user,
            server: self.server,
        }
    }

    /// The next request counter, which is then used up.
    pub(super) fn take_nonce(&mut self) -> u64 {
        let n = self.next_nonce;
        self.next_nonce += 1;
        n
    }

    /// The client's ID.
    pub const fn id(&self) -> ClientId {
        self.id
    }

    /// The client's leaf in the key tree.
    pub const fn leaf(&self) -> u32 {
        self.leaf
    }

    /// Whether the client holds a license.
    pub fn holds_licenses(&self) -> bool {
        !self.stores().licenses.is_empty()
    }

    /// The contents for which the client holds a license.
    pub fn licensed(&self) -> impl Iterator<Item = ContentId> + '_ {
        self.stores().licenses.keys().copied()
    }

    /// Makes the state as small as it can be for storage: drops the EKBs of epochs no held
    /// license needs (keeping the newest, unless the client holds nothing) and frees the spare
    /// capacity of every collection.
    pub fn compact(&mut self) {
        if let Some(moves) = self.moves.as_deref_mut() {
            shrink(&mut moves.used_certificates);
            shrink(&mut moves.moved_out);
            shrink(&mut moves.releases);
            shrink(&mut moves.timed);
            shrink(&mut moves.windows);
        }
        if self.moves.as_deref().is_some_and(Moves::is_empty) {
            self.moves = None;
        }
        let Some(s) = self.stores.as_deref_mut() else {
            return;
        };
        let newest = s.ekbs.last().map(|(e, _)| *e);
        let needed: BTreeSet<u64> = s.licenses.values().map(|h| h.epoch).collect();
        s.ekbs
            .retain(|e, _| needed.contains(e) || Some(*e) == newest);
        if s.licenses.is_empty() && s.contents.is_empty() {
            // Nothing to play: no EKB to keep either.
            s.ekbs.clear();
        }
        shrink(&mut s.contents);
        shrink(&mut s.licenses);
        shrink(&mut s.ekbs);
        if s.is_empty() {
            self.stores = None;
        }
    }

    /// The latest time a server signed that this client has seen: the issue times of the
    /// licenses it holds, and what it kept of licenses gone and of certificates.
    pub(super) fn trusted_time(&self) -> UnixTime {
        let held = self.stores().licenses.values().map(|h| h.issued_at).max();
        held.map_or(self.moves().trusted, |t| t.max(self.moves().trusted))
    }

    /// Raises the trusted time to `at` if it is later (a certificate's or a gone license's
    /// time; a held license's counts by itself).
    pub(super) fn trust(&mut self, at: UnixTime) {
        if at > self.trusted_time() {
            self.moves_mut().trusted = at;
        }
    }

    /// Keeps the issue time of `content`'s license, which is about to go, where no other held
    /// license's issue time or kept time covers it.
    pub(super) fn keep_time_of(&mut self, content: ContentId) {
        let licenses = &self.stores().licenses;
        let Some(at) = licenses.get(&content).map(|h| h.issued_at) else {
            return;
        };
        let others = licenses
            .iter()
            .filter(|(c, _)| **c != content)
            .map(|(_, h)| h.issued_at)
            .max();
        if others.is_none_or(|o| at > o) && at > self.moves().trusted {
            self.moves_mut().trusted = at;
        }
    }

    /// The terms of `content`'s license and its first play, if it has terms.
    pub(super) fn timed(&self, content: ContentId) -> Option<Timed> {
        let terms = *self.moves().timed.get(&content)?;
        let license = self.stores().licenses.get(&content)?.license_id;
        let first_play = self.moves().windows.get(&license).map(|w| w.first_play);
        Some(Timed {
            license,
            terms,
            first_play,
        })
    }

    /// Records that `license`'s window started at `at`, until `until`; forgets the windows of
    /// licenses whose end the trusted time has passed (they can never play again).
    pub(super) fn start_window(&mut self, license: LicenseId, at: UnixTime, until: UnixTime) {
        let trusted = self.trusted_time();
        let windows = &mut self.moves_mut().windows;
        windows.retain(|_, w| w.until > trusted);
        windows.insert(
            license,
            Window {
                first_play: at,
                until,
            },
        );
    }

    pub(super) fn moves(&self) -> &Moves {
        self.moves.as_deref().unwrap_or(&NO_MOVES)
    }

    pub(super) fn moves_mut(&mut self) -> &mut Moves {
        self.moves.get_or_insert_with(Box::default)
    }

    pub(super) fn stores(&self) -> &Stores {
        self.stores.as_deref().unwrap_or(&EMPTY)
    }

    pub(super) fn stores_mut(&mut self) -> &mut Stores {
        self.stores.get_or_insert_with(Box::default)
    }
}

/// Frees a sorted map's spare capacity (its one entry inline again, if one is left).
fn shrink<K, V>(map: &mut Map<K, V>) {
    let entries: Inline<K, V> = core::mem::take(map).into_iter().collect();
    *map = LiteMap::from_sorted_store_unchecked(entries.shrunk());
}

impl core::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientState")
            .field("id", &self.id)
            .field("licenses", &self.stores().licenses.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn license(user: u64, server: u32) -> LicenseTbs {
        LicenseTbs {
            license_id: LicenseId(7),
            content_id: ContentId(3),
            client_id: ClientId(5),
            user_id: UserId(user),
            server_id: ServerId(server),
            epoch: 2,
            rights: Rights::PLAY,
            issued_at: UnixTime(9),
            terms: None,
            wrapped_key: [4; WRAPPED_LEN],
        }
    }

    /// What millions of simulated clients cost (`docs/performance.md`, "Bytes per license under
    /// 400"): a held license is its own fields, and the stores of a client with one content,
    /// license and EKB are one allocation of 128 bytes.
    #[test]
    fn a_held_license_and_a_clients_stores_stay_compact() {
        assert!(size_of::<Held>() <= 56, "{}", size_of::<Held>());
        assert!(size_of::<Stores>() <= 128, "{}", size_of::<Stores>());
    }

    #[test]
    fn a_held_license_gives_back_its_fields_and_names_its_owner() {
        let owner = Owner {
            client: ClientId(5),
            user: UserId(6),
            server: ServerId(1),
        };
        let held = Held::new(&license(6, 1), owner).unwrap();
        assert_eq!(held.tbs(ContentId(3), owner, None), license(6, 1));
        for other in [license(8, 1), license(6, 2)] {
            assert!(matches!(
                Held::new(&other, owner),
                Err(Error::NotForThisClient)
            ));
        }
    }
}
