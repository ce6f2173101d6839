//! Claim 1, registration, in batches: `register_clients` gives each request the result
//! `register_client` would give it in turn (IDs and leaves in order, the client limit, unknown
//! users and servers), and its clients work as any other.

use treecast::keytree::Scheme;
use treecast::license::registry::audit;
use treecast::license::{Client, Error, NewClient, Registry, ServerId, SigningKey, UserId};

#[test]
fn a_batch_registers_in_order_with_the_results_of_one_by_one() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let (alice, bob) = (w.user(), w.user());
    // One client before the batch: the batch's IDs follow it.
    let first = w.client(alice, 1);
    let keys: Vec<SigningKey> = (0..7u8)
        .map(|i| SigningKey::from_bytes(&[40 + i; 32]))
        .collect();
    let plan: [(UserId, u32); 7] = [
        (alice, 2),
        (bob, 1),
        (alice, 1),
        (alice, 1),    // Alice's fourth client: over the limit of 3
        (UserId(99), 1), // nobody
        (bob, 7),      // no such server
        (bob, 2),
    ];
    let batch: Vec<NewClient> = plan
        .iter()
        .zip(&keys)
        .map(|(&(user, server), key)| NewClient {
            user,
            server: ServerId(server),
            public_key: key.verifying_key(),
        })
        .collect();
    let results = w.distributor.register_clients(&batch);
    assert_eq!(results.len(), 7);
    let next = first.id().0 + 1;
    let expected_ids = [Some(next), Some(next + 1), Some(next + 2), None, None, None, Some(next + 3)];
    for (i, (result, expected)) in results.iter().zip(expected_ids).enumerate() {
        match (result, expected) {
            (Ok(r), Some(id)) => {
                assert_eq!(r.client_id.0, id, "request {i}");
                assert_eq!(r.device_keys.leaf().get(), (id - 1) as u32, "request {i}");
                assert_eq!((r.user_id, r.server_id), (batch[i].user, batch[i].server));
            }
            (Err(_), None) => {}
            other => panic!("request {i}: {other:?}"),
        }
    }
    assert_eq!(results[3].as_ref().unwrap_err(), &Error::ClientLimit(alice));
    assert_eq!(results[4].as_ref().unwrap_err(), &Error::UserNotFound(UserId(99)));
    assert_eq!(results[5].as_ref().unwrap_err(), &Error::UnknownServer(ServerId(7)));

    // The registry holds what one-by-one registration would have written.
    let r = w.distributor.registry();
    assert_eq!(
        r.clients_of(alice).unwrap().iter().map(|c| c.0).collect::<Vec<_>>(),
        [first.id().0, next, next + 2]
    );
    assert_eq!(
        r.clients_of(bob).unwrap().iter().map(|c| c.0).collect::<Vec<_>>(),
        [next + 1, next + 3]
    );
    assert!(audit(r, 10).unwrap().is_empty());

    // Each registered client is a working client: it buys and plays.
    let content = w.publish(500);
    for (result, key) in results.into_iter().zip(keys) {
        let Ok(registration) = result else {
            continue;
        };
        let mut client = Client::new(key, registration).unwrap();
        w.give_current_ekb(&mut client);
        w.buy(&mut client, content);
        w.play(&client, content).unwrap();
    }
    // And the next single registration takes the next ID.
    assert_eq!(w.client(bob, 1).id().0, next + 4);
}
