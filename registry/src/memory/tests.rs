//! The memory store's own tests.

use treecast_keytree::TreeHeight;
use treecast_protocol::ids::ServerId;

use super::*;

fn registry_with_users(n: usize) -> (MemoryRegistry, Vec<UserId>) {
    let registry = MemoryRegistry::new(TreeHeight::new(8).unwrap());
    let users = (0..n).map(|_| registry.add_user().unwrap()).collect();
    (registry, users)
}

fn record(id: ClientId, user: UserId, leaf: LeafIndex) -> ClientRecord {
    ClientRecord::new(id, user, leaf, ServerId(1), Vec::new(), [id.0 as u8; 32])
}

/// A batch whose builder fails for one request is added one by one: that request gets the
/// builder's error and takes no ID, the others get what `add_client` gives them.
#[test]
fn a_failed_build_in_a_batch_costs_only_its_own_request() {
    let (registry, users) = registry_with_users(2);
    let batch = [users[0], users[1], users[0], users[1]];
    let results = registry.add_clients(&batch, 4, &|i, id, leaf| {
        if i == 1 {
            return Err(Error::Internal("planted"));
        }
        Ok(record(id, batch[i], leaf))
    });
    let ids: Vec<Option<u64>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|c| c.id.0))
        .collect();
    assert_eq!(ids, [Some(1), None, Some(2), Some(3)]);
    assert_eq!(results[1], Err(Error::Internal("planted")));
    assert_eq!(
        registry.clients_of(users[0]).unwrap(),
        [ClientId(1), ClientId(2)]
    );
    assert_eq!(registry.clients_of(users[1]).unwrap(), [ClientId(3)]);

    // A batch that builds: the same IDs a one-by-one registration gives, the limit counted
    // across the batch.
    let results = registry.add_clients(&[users[0], users[0], users[1]], 3, &|i, id, leaf| {
        Ok(record(id, [users[0], users[0], users[1]][i], leaf))
    });
    let ids: Vec<Option<u64>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|c| c.id.0))
        .collect();
    assert_eq!(ids, [Some(4), None, Some(5)]);
    assert_eq!(results[1], Err(Error::ClientLimit(users[0])));
    assert_eq!(
        registry
            .client_by_leaf(LeafIndex::new(4, TreeHeight::new(8).unwrap()).unwrap())
            .unwrap(),
        Some(ClientId(5))
    );
}

/// Under steady traffic a tag or two expire between two requests. A scan that frees little
/// grows the table, so that it is full again (and scanned whole) only after as many inserts
/// as it holds: without the growth this run leaves it full 22 times, with it twice.
#[test]
fn a_request_log_under_steady_traffic_is_not_scanned_at_every_request() {
    let mut t = MemoryRegistry::new(TreeHeight::new(8).unwrap())
        .tables
        .into_inner()
        .unwrap();
    // Request i, made at time i, may be forgotten after time i + window: about as many
    // requests stay fresh as the table holds, and one expires per request.
    t.used_requests.reserve(1_000);
    let full = t.used_requests.capacity() as u64;
    let window = full - 2;
    let mut i = 0;
    let mut left_full = 0;
    for _ in 0..4 * full {
        let tag = RequestTag::new(i, [0; 16]).with_window(UnixTime(i), UnixTime(i + window));
        t.record_request(ClientId(1), tag, i);
        i += 1;
        if t.used_requests.len() == t.used_requests.capacity() {
            left_full += 1;
        }
    }
    // A full table is scanned at the next request.
    assert!(
        left_full <= 4,
        "left full after {left_full} of {} requests",
        4 * full
    );
    // No fresh request was forgotten.
    for j in i - window..i {
        assert!(t.used_requests.contains_key(&(ClientId(1), j)), "{j}");
    }
}
