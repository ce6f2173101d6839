//! Existence is no oracle (issue 24, item 8): before a device request is authenticated, a
//! client that does not exist is answered as a bad signature; after, another user's client or
//! license is answered as a missing one. The answers compared here are byte for byte the
//! same: status and body.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests fail loudly by design"
)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tower::ServiceExt;
use treecast_distributor::{Distributor, DistributorConfig, LicenseServer, Tariff};
use treecast_keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
use treecast_protocol::certificate::{LicenseRequestTbs, MoveRequestTbs};
use treecast_protocol::sign::Signable;
use treecast_protocol::{
    ClientId, ContentId, LicenseId, ManualClock, ServerId, SigningKey, UnixTime,
};
use treecast_registry::{MemoryRegistry, Registry};
use treecast_server::{AdminToken, ContentDir, Limits, Service};

const NOW: UnixTime = UnixTime(1_800_000_000);

/// Alice with two devices, Bob with two (one revoked), a content each of them bought once.
struct Shop {
    app: Router,
    alice: [(ClientId, SigningKey); 2],
    bob: ClientId,
    bob_revoked: ClientId,
    alice_license: LicenseId,
    bob_license: LicenseId,
    content: ContentId,
}

fn shop(dir: &std::path::Path, inline: bool) -> Shop {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let height = TreeHeight::new(16).unwrap();
    let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1));
    let registry: Box<dyn Registry> = Box::new(MemoryRegistry::new(height));
    let distributor = Distributor::new(
        Authority::new(&MasterSecret::from_bytes([7; 32]), config).unwrap(),
        [LicenseServer::generate(ServerId(1), &mut rng)],
        registry,
        Tariff::default(),
        Arc::new(ManualClock::new(NOW)),
        DistributorConfig::default(),
    )
    .unwrap();
    let (alice, bob) = (
        distributor.register_user().unwrap(),
        distributor.register_user().unwrap(),
    );
    let device = |user, seed: u8| {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let id = distributor
            .register_client(user, ServerId(1), &key.verifying_key())
            .unwrap()
            .client_id;
        (id, key)
    };
    let alice_devices = [device(alice, 1), device(alice, 2)];
    let (bob_device, bob_key) = device(bob, 3);
    let (bob_revoked, _) = device(bob, 4);
    distributor.revoke_client(bob_revoked).unwrap();
    let content = distributor
        .publish(&b"a film"[..], &mut Vec::new(), &mut rng)
        .unwrap()
        .id;
    let buy = |(client, key): (ClientId, &SigningKey)| {
        let request = LicenseRequestTbs::new(client, content, 1, NOW).sign(key);
        distributor
            .supply_license(request.as_bytes())
            .unwrap()
            .tbs()
            .license_id
    };
    let alice_license = buy((alice_devices[0].0, &alice_devices[0].1));
    let bob_license = buy((bob_device, &bob_key));
    let service = Service::new(
        distributor,
        ContentDir::open(dir).unwrap(),
        AdminToken::new("0123456789abcdef0123456789abcdef-admin").unwrap(),
        rng,
    )
    .inline(inline);
    Shop {
        app: treecast_server::router(Arc::new(service), &Limits::default()),
        alice: alice_devices,
        bob: bob_device,
        bob_revoked,
        alice_license,
        bob_license,
        content,
    }
}

async fn post(app: &Router, uri: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
    let request = Request::post(uri).body(Body::from(body.to_vec())).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, body.to_vec())
}

fn code(answer: &(StatusCode, Vec<u8>)) -> String {
    let v: serde_json::Value = serde_json::from_slice(&answer.1).unwrap();
    v["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_unknown_client_and_a_bad_signature_get_the_same_answer() {
    for inline in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let s = shop(dir.path(), inline);
        let stranger = SigningKey::from_bytes(&[9; 32]);
        let (alice, _) = &s.alice[0];
        // A license request: from a client that does not exist, and one of a known client
        // signed with another key.
        let unknown = LicenseRequestTbs::new(ClientId(999), s.content, 5, NOW).sign(&stranger);
        let forged = LicenseRequestTbs::new(*alice, s.content, 5, NOW).sign(&stranger);
        let a = post(&s.app, "/v1/licenses", unknown.as_bytes()).await;
        let b = post(&s.app, "/v1/licenses", forged.as_bytes()).await;
        assert_eq!(a.0, StatusCode::FORBIDDEN);
        assert_eq!(code(&a), "bad_signature");
        assert_eq!(a, b, "inline {inline}");
        // A move request: the same, for its source.
        let (to, _) = &s.alice[1];
        let unknown =
            MoveRequestTbs::new(s.alice_license, ClientId(999), *to, 6, NOW).sign(&stranger);
        let forged = MoveRequestTbs::new(s.alice_license, *alice, *to, 6, NOW).sign(&stranger);
        let c = post(&s.app, "/v1/certificates", unknown.as_bytes()).await;
        let d = post(&s.app, "/v1/certificates", forged.as_bytes()).await;
        assert_eq!(c, d, "inline {inline}");
        assert_eq!(c, a, "every unauthenticated request gets the one answer");
    }
}

#[tokio::test]
async fn another_users_client_or_license_is_answered_as_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = shop(dir.path(), true);
    let (alice, key) = &s.alice[0];
    let (alice_other, _) = &s.alice[1];
    let request = |license, destination, nonce| {
        MoveRequestTbs::new(license, *alice, destination, nonce, NOW).sign(key)
    };
    // Alice's license to Bob's device, to his revoked one, and to a device that does not
    // exist.
    let to_bob = post(
        &s.app,
        "/v1/certificates",
        request(s.alice_license, s.bob, 10).as_bytes(),
    )
    .await;
    let to_revoked = post(
        &s.app,
        "/v1/certificates",
        request(s.alice_license, s.bob_revoked, 11).as_bytes(),
    )
    .await;
    let to_nobody = post(
        &s.app,
        "/v1/certificates",
        request(s.alice_license, ClientId(999), 12).as_bytes(),
    )
    .await;
    assert_eq!(to_nobody.0, StatusCode::NOT_FOUND);
    assert_eq!(code(&to_nobody), "client_not_found");
    assert_eq!(to_bob, to_nobody);
    assert_eq!(to_revoked, to_nobody);
    // Bob's license, and a license that does not exist, moved by Alice to her other device.
    let bobs = post(
        &s.app,
        "/v1/certificates",
        request(s.bob_license, *alice_other, 13).as_bytes(),
    )
    .await;
    let missing = post(
        &s.app,
        "/v1/certificates",
        request(LicenseId(999_999), *alice_other, 14).as_bytes(),
    )
    .await;
    assert_eq!(missing.0, StatusCode::NOT_FOUND);
    assert_eq!(code(&missing), "license_not_found");
    assert_eq!(bobs, missing);
    // Her own license to her own device still moves.
    let moved = post(
        &s.app,
        "/v1/certificates",
        request(s.alice_license, *alice_other, 15).as_bytes(),
    )
    .await;
    assert_eq!(moved.0, StatusCode::OK);
}
