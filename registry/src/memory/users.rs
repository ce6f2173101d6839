//! The memory store's users: one vector, a user at index `ID − 1`.
//!
//! User IDs are handed out in order from one counter and a user is never removed, so a vector
//! holds them without a hash table's empty slots and per-entry key. A user's lists are boxed
//! slices of exactly their length: a user has a few clients and licenses, and a vector would
//! keep room for four of each from its first entry, and 8 bytes more for its capacity.

use treecast_protocol::ids::{ClientId, ContentId, LicenseId, UserId};

/// A user's row: the IDs of what the user owns, and the total billed.
#[derive(Debug, Default)]
pub(super) struct UserRow {
    pub(super) clients: Box<[ClientId]>,
    /// Sorted; a slice, not a B-tree, because a user downloads a few contents and a B-tree
    /// node holds 11.
    pub(super) contents: Box<[ContentId]>,
    pub(super) licenses: Box<[LicenseId]>,
    pub(super) total: u64,
}

/// Puts `value` at `at` in `list` (which must be at most its length), keeping the list exactly
/// as long as its entries.
pub(super) fn insert<T>(list: &mut Box<[T]>, at: usize, value: T) {
    let mut entries = core::mem::take(list).into_vec();
    entries.reserve_exact(1);
    entries.insert(at.min(entries.len()), value);
    *list = entries.into_boxed_slice();
}

/// Appends `value` to `list`, keeping the list exactly as long as its entries.
pub(super) fn push<T>(list: &mut Box<[T]>, value: T) {
    insert(list, list.len(), value);
}

/// The users, by ID.
#[derive(Debug, Default)]
pub(super) struct Users(Vec<UserRow>);

impl Users {
    fn index(id: UserId) -> Option<usize> {
        usize::try_from(id.0.checked_sub(1)?).ok()
    }

    /// The ID the next user gets.
    pub(super) fn next_id(&self) -> UserId {
        UserId(self.0.len() as u64 + 1)
    }

    /// Adds a user; its ID is [`Users::next_id`].
    pub(super) fn push(&mut self) -> UserId {
        let id = self.next_id();
        self.0.push(UserRow::default());
        id
    }

    pub(super) fn get(&self, id: UserId) -> Option<&UserRow> {
        self.0.get(Self::index(id)?)
    }

    pub(super) fn get_mut(&mut self, id: UserId) -> Option<&mut UserRow> {
        let at = Self::index(id)?;
        self.0.get_mut(at)
    }

    /// Every user, in ID order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (UserId, &UserRow)> {
        self.0.iter().zip(1..).map(|(row, id)| (UserId(id), row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_found_by_id_and_only_those_handed_out() {
        let mut users = Users::default();
        assert_eq!(users.push(), UserId(1));
        assert_eq!(users.push(), UserId(2));
        let row = users.get_mut(UserId(2)).unwrap();
        row.total = 5;
        push(&mut row.licenses, LicenseId(9));
        push(&mut row.licenses, LicenseId(7));
        insert(&mut row.contents, 0, ContentId(3));
        insert(&mut row.contents, 0, ContentId(2));
        insert(&mut row.contents, 5, ContentId(4));
        let row = users.get(UserId(2)).unwrap();
        assert_eq!(row.total, 5);
        assert_eq!(*row.licenses, [LicenseId(9), LicenseId(7)]);
        assert_eq!(*row.contents, [ContentId(2), ContentId(3), ContentId(4)]);
        assert!(users.get(UserId(1)).unwrap().clients.is_empty());
        for absent in [0, 3, u64::MAX] {
            assert!(users.get(UserId(absent)).is_none());
        }
        let ids: Vec<_> = users.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, [UserId(1), UserId(2)]);
    }
}
