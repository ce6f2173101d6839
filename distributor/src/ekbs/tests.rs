use std::sync::{Arc, Barrier};

use ed25519_dalek::SigningKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use treecast_keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
use treecast_protocol::ids::{ClientId, ServerId};
use treecast_protocol::time::{ManualClock, UnixTime};
use treecast_registry::MemoryRegistry;

use crate::billing::Tariff;
use crate::server::LicenseServer;
use crate::{Distributor, DistributorConfig};

/// A distributor on a memory registry, with `clients` clients of one user.
fn shop(config: DistributorConfig, clients: u8) -> (Distributor<MemoryRegistry>, Vec<ClientId>) {
    let height = TreeHeight::new(16).unwrap();
    let tree = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1));
    let shop = Distributor::new(
        Authority::new(&MasterSecret::from_bytes([3; 32]), tree).unwrap(),
        [LicenseServer::generate(
            ServerId(1),
            &mut ChaCha20Rng::seed_from_u64(1),
        )],
        MemoryRegistry::new(height),
        Tariff::default(),
        Arc::new(ManualClock::new(UnixTime(1_800_000_000))),
        config.with_max_clients_per_user(usize::from(clients)),
    )
    .unwrap();
    let user = shop.register_user().unwrap();
    let ids = (0..clients)
        .map(|i| {
            let key = SigningKey::from_bytes(&[i.wrapping_add(1); 32]).verifying_key();
            shop.register_client(user, ServerId(1), &key)
                .unwrap()
                .client_id
        })
        .collect();
    (shop, ids)
}

/// Many requests for the EKB just after a revocation: without a single flight each built the
/// same EKB (about 0.2 s and 40 MB at 1.7 M subsets). Now the authority builds it once, and
/// every caller gets that one EKB.
#[test]
fn concurrent_callers_after_a_revocation_wait_for_one_build() {
    const THREADS: usize = 8;
    let (shop, clients) = shop(DistributorConfig::default(), 200);
    for round in 0..5 {
        // Many revoked leaves make a cover of a few thousand subsets: a build long enough
        // that the callers overlap it.
        for &c in clients.iter().skip(round * 40).take(40) {
            shop.revoke_client(c).unwrap();
        }
        let before = shop.ekb_stats().builds;
        let barrier = Barrier::new(THREADS);
        let served: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        shop.current_ekb().unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(shop.ekb_stats().builds, before + 1, "round {round}");
        let (epoch, first) = &served[0];
        for (e, ekb) in &served {
            assert_eq!(e, epoch);
            assert!(
                Arc::ptr_eq(ekb, first),
                "round {round}: one EKB for every caller"
            );
        }
    }
}

/// After many revocations the process keeps at most the configured number of epochs' EKBs,
/// the current one among them; an older epoch's EKB is still served, read back from the
/// registry, and is the very EKB served in its epoch.
#[test]
fn the_ekb_cache_keeps_at_most_its_bound_and_older_epochs_come_from_the_registry() {
    let (shop, clients) = shop(
        DistributorConfig::default().with_ekb_cache(3, usize::MAX),
        12,
    );
    let mut served = Vec::new();
    for &c in &clients[..10] {
        shop.revoke_client(c).unwrap();
        let (epoch, ekb) = shop.current_ekb().unwrap();
        served.push((epoch, ekb.as_bytes().to_vec()));
        let stats = shop.ekb_stats();
        assert!(stats.cached_epochs <= 3, "{stats:?}");
        assert!(
            shop.cached_ekb(epoch).unwrap().is_some(),
            "the current epoch stays"
        );
    }
    let stats = shop.ekb_stats();
    assert_eq!(stats.cached_epochs, 3);
    assert_eq!(stats.builds, 10);
    assert_eq!(stats.stored_reads, 0);
    let (oldest, bytes) = &served[0];
    assert!(shop.cached_ekb(*oldest).unwrap().is_none(), "evicted");
    assert_eq!(shop.ekb(*oldest).unwrap().as_bytes(), &bytes[..]);
    let stats = shop.ekb_stats();
    assert_eq!(stats.stored_reads, 1, "read back from the registry");
    assert_eq!(stats.builds, 10, "not built again");
    assert!(stats.cached_epochs <= 3);
    // Every epoch served is still served, each as it was.
    for (epoch, bytes) in &served {
        assert_eq!(shop.ekb(*epoch).unwrap().as_bytes(), &bytes[..]);
    }
    assert!(shop.ekb_stats().cached_epochs <= 3);
}

/// A byte bound smaller than one EKB keeps the current epoch's alone.
#[test]
fn a_byte_bound_keeps_the_current_epochs_ekb_whatever_its_size() {
    let (shop, clients) = shop(DistributorConfig::default().with_ekb_cache(8, 1), 3);
    for &c in &clients {
        shop.revoke_client(c).unwrap();
        let (epoch, ekb) = shop.current_ekb().unwrap();
        let stats = shop.ekb_stats();
        assert_eq!(stats.cached_epochs, 1);
        assert_eq!(stats.cached_bytes, ekb.as_bytes().len());
        assert!(shop.cached_ekb(epoch).unwrap().is_some());
    }
}

/// Review of issue 24, item 3: an earlier epoch's EKB read back from the registry used to be
/// evicted at once (the cache dropped the lowest epoch, the very one just read), so every
/// unauthenticated request for it read and verified a whole EKB again. Now it stays cached
/// while it is asked for: two requests cost one registry read. The current epoch always stays,
/// and the bound holds.
#[test]
fn an_earlier_epoch_asked_for_twice_is_read_from_the_registry_once() {
    let (shop, clients) = shop(
        DistributorConfig::default().with_ekb_cache(3, usize::MAX),
        12,
    );
    let mut epochs = Vec::new();
    for &c in &clients[..8] {
        shop.revoke_client(c).unwrap();
        epochs.push(shop.current_ekb().unwrap().0);
    }
    let current = shop.current_ekb().unwrap().0;
    let oldest = epochs[0];
    let reads = shop.ekb_stats().stored_reads;
    let first = shop.ekb(oldest).unwrap();
    let again = shop.ekb(oldest).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(
        shop.ekb_stats().stored_reads,
        reads + 1,
        "one registry read"
    );
    // Other earlier epochs come and go; the current one stays, and so does the one asked for
    // most recently.
    for &epoch in &epochs[1..5] {
        shop.ekb(epoch).unwrap();
        shop.ekb(oldest).unwrap();
        let stats = shop.ekb_stats();
        assert!(stats.cached_epochs <= 3, "{stats:?}");
        assert!(
            shop.cached_ekb(current).unwrap().is_some(),
            "the current epoch stays"
        );
    }
    assert_eq!(
        shop.ekb_stats().stored_reads,
        reads + 5,
        "one read for each epoch, none again for the oldest"
    );
}

/// Review of issue 24, item 5: where only cached EKBs may be used (a supply on a server's
/// reactor), a call that needs an uncached EKB is refused (`None`) without building it; the
/// same call with the EKB cached runs.
#[test]
fn a_cached_only_call_builds_no_ekb() {
    let (shop, clients) = shop(DistributorConfig::default(), 2);
    shop.current_ekb().unwrap();
    shop.revoke_client(clients[0]).unwrap();
    let builds = shop.ekb_stats().builds;
    assert!(shop.with_cached_ekbs_only(|| shop.current_ekb()).is_none());
    assert_eq!(shop.ekb_stats().builds, builds, "nothing built");
    let (epoch, _) = shop.current_ekb().unwrap();
    let cached = shop.with_cached_ekbs_only(|| shop.current_ekb()).unwrap();
    assert_eq!(cached.unwrap().0, epoch);
    // The bar is lifted afterwards.
    shop.revoke_client(clients[1]).unwrap();
    shop.current_ekb().unwrap();
    assert_eq!(shop.ekb_stats().builds, builds + 2);
}
