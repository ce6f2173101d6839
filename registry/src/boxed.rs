//! `Box<dyn Registry>` is a registry, so callers can choose the store at run time.

use treecast_keytree::LeafIndex;
use treecast_protocol::Error;
use treecast_protocol::ServerId;
use treecast_protocol::binding::KeyFingerprint;
use treecast_protocol::ids::{ClientId, ContentId, LicenseId, UserId};

use super::{
    CertificateRecord, ClientBuilder, ClientRecord, ClientSummary, ClientsBuilder, ContentBuilder,
    ContentRecord, LicenseBuilder, LicenseChanger, LicenseRecord, LoanLimit, MoveBuilder,
    MoveIntent, Registry, RequestTag, Revoker, UsedRequest, UserRows,
};
use crate::billing::{Charge, LedgerEntry};
use crate::binding::StoreBinding;

/// A boxed registry is a registry, so callers can choose the store at run time.
impl<R: Registry + ?Sized> Registry for Box<R> {
    fn has_outside_writers(&self) -> bool {
        (**self).has_outside_writers()
    }
    fn bind(&self, keys: &KeyFingerprint) -> Result<StoreBinding, Error> {
        (**self).bind(keys)
    }
    fn add_user(&self) -> Result<UserId, Error> {
        (**self).add_user()
    }
    fn has_user(&self, user: UserId) -> Result<bool, Error> {
        (**self).has_user(user)
    }
    fn replace_envelope(&self, old: &ContentRecord, new: &ContentRecord) -> Result<bool, Error> {
        (**self).replace_envelope(old, new)
    }
    fn credential_epoch(&self, user: UserId) -> Result<Option<u64>, Error> {
        (**self).credential_epoch(user)
    }
    fn rotate_credential(&self, user: UserId) -> Result<u64, Error> {
        (**self).rotate_credential(user)
    }
    fn add_client(
        &self,
        user: UserId,
        limit: usize,
        build: ClientBuilder<'_>,
    ) -> Result<ClientRecord, Error> {
        (**self).add_client(user, limit, build)
    }
    fn supports_leaf_ranges(&self) -> bool {
        (**self).supports_leaf_ranges()
    }
    fn add_client_in(
        &self,
        user: UserId,
        limit: usize,
        leaves: core::ops::Range<u64>,
        build: ClientBuilder<'_>,
    ) -> Result<ClientRecord, Error> {
        (**self).add_client_in(user, limit, leaves, build)
    }
    fn add_clients(
        &self,
        users: &[UserId],
        limit: usize,
        build: ClientsBuilder<'_>,
    ) -> Vec<Result<ClientRecord, Error>> {
        (**self).add_clients(users, limit, build)
    }
    fn client(&self, id: ClientId) -> Result<Option<ClientRecord>, Error> {
        (**self).client(id)
    }
    fn supply_reads(
        &self,
        client: ClientId,
        content: ContentId,
    ) -> Result<(Option<ClientRecord>, Option<ContentRecord>, u64), Error> {
        (**self).supply_reads(client, content)
    }
    fn client_by_leaf(&self, leaf: LeafIndex) -> Result<Option<ClientId>, Error> {
        (**self).client_by_leaf(leaf)
    }
    fn clients_of(&self, user: UserId) -> Result<Vec<ClientId>, Error> {
        (**self).clients_of(user)
    }
    fn revoke_client(
        &self,
        id: ClientId,
        revoke: Revoker<'_>,
    ) -> Result<(ClientRecord, u64), Error> {
        (**self).revoke_client(id, revoke)
    }
    fn revoked_leaves(&self) -> Result<Vec<u32>, Error> {
        (**self).revoked_leaves()
    }
    fn stored_ekb(&self, epoch: u64) -> Result<Option<Vec<u8>>, Error> {
        (**self).stored_ekb(epoch)
    }
    fn keep_ekb(&self, epoch: u64, ekb: &[u8]) -> Result<Vec<u8>, Error> {
        (**self).keep_ekb(epoch, ekb)
    }
    fn server_key_lists(&self) -> Result<Vec<(ServerId, u64, Vec<u8>)>, Error> {
        (**self).server_key_lists()
    }
    fn keep_server_key_list(
        &self,
        server: ServerId,
        sequence: u64,
        list: &[u8],
    ) -> Result<bool, Error> {
        (**self).keep_server_key_list(server, sequence, list)
    }
    fn probe(&self, depth: crate::Probe) -> Result<(), Error> {
        (**self).probe(depth)
    }
    fn epoch(&self) -> Result<u64, Error> {
        (**self).epoch()
    }
    fn add_content(&self, build: ContentBuilder<'_>) -> Result<ContentRecord, Error> {
        (**self).add_content(build)
    }
    fn content(&self, id: ContentId) -> Result<Option<ContentRecord>, Error> {
        (**self).content(id)
    }
    fn contents(&self) -> Result<Vec<ContentRecord>, Error> {
        (**self).contents()
    }
    fn record_download(&self, user: UserId, content: ContentId) -> Result<(), Error> {
        (**self).record_download(user, content)
    }
    fn add_license(
        &self,
        client: ClientId,
        content: ContentId,
        request: RequestTag,
        charge: Charge,
        loans: Option<LoanLimit>,
        build: LicenseBuilder<'_>,
    ) -> Result<(LicenseRecord, LedgerEntry), Error> {
        (**self).add_license(client, content, request, charge, loans, build)
    }
    fn used_request(&self, client: ClientId, nonce: u64) -> Result<Option<UsedRequest>, Error> {
        (**self).used_request(client, nonce)
    }
    fn license(&self, id: LicenseId) -> Result<Option<LicenseRecord>, Error> {
        (**self).license(id)
    }
    fn change_license(
        &self,
        license: LicenseId,
        client: ClientId,
        request: RequestTag,
        charge: Option<Charge>,
        build: LicenseChanger<'_>,
    ) -> Result<(LicenseRecord, Option<LedgerEntry>), Error> {
        (**self).change_license(license, client, request, charge, build)
    }
    fn commit_move(
        &self,
        intent: &MoveIntent,
        charge: Charge,
        build: MoveBuilder<'_>,
    ) -> Result<(LicenseRecord, CertificateRecord, LedgerEntry), Error> {
        (**self).commit_move(intent, charge, build)
    }
    fn certificate_history(&self) -> Result<Vec<CertificateRecord>, Error> {
        (**self).certificate_history()
    }
    fn ledger(&self) -> Result<Vec<LedgerEntry>, Error> {
        (**self).ledger()
    }
    fn user_total(&self, user: UserId) -> Result<u64, Error> {
        (**self).user_total(user)
    }
    fn licenses_of_content(&self, content: ContentId) -> Result<Vec<LicenseId>, Error> {
        (**self).licenses_of_content(content)
    }
    fn contents_of_user(&self, user: UserId) -> Result<Vec<ContentId>, Error> {
        (**self).contents_of_user(user)
    }
    fn licenses_of_user(&self, user: UserId) -> Result<Vec<LicenseId>, Error> {
        (**self).licenses_of_user(user)
    }
    fn users(&self) -> Result<Vec<(UserId, u64)>, Error> {
        (**self).users()
    }
    fn all_clients(&self) -> Result<Vec<ClientRecord>, Error> {
        (**self).all_clients()
    }
    fn client_summaries(&self) -> Result<Vec<ClientSummary>, Error> {
        (**self).client_summaries()
    }
    fn all_licenses(&self) -> Result<Vec<LicenseRecord>, Error> {
        (**self).all_licenses()
    }
    fn scan_users(
        &self,
        visit: &mut dyn FnMut(UserRows) -> Result<(), Error>,
    ) -> Result<(), Error> {
        (**self).scan_users(visit)
    }
    fn scan_leaves(
        &self,
        visit: &mut dyn FnMut(LeafIndex, ClientId) -> Result<(), Error>,
    ) -> Result<(), Error> {
        (**self).scan_leaves(visit)
    }
    fn user_rows(&self, user: UserId) -> Result<Option<UserRows>, Error> {
        (**self).user_rows(user)
    }
}
