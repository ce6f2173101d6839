//! One user's life through the service, the attacks mixed into it, and the final checks.

use std::sync::atomic::Ordering;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use treecast_device::Client;
use treecast_device::transport::TransportExt as _;
use treecast_protocol::certificate::CopyCertificateIn;
use treecast_protocol::credential::UserCredential;
use treecast_protocol::{
    ClientId, Clock, ContentId, Error, LicenseId, ServerId, SigningKey, SystemClock, UserId,
};
use treecast_registry::ChargeKind;

use super::Shared;
use crate::SimError;

/// A user as the simulation keeps it: its devices and its purchase.
pub(crate) struct SimUser {
    /// The user's own choices, from the seed: the same on any number of threads.
    rng: ChaCha20Rng,
    user: UserId,
    credential: UserCredential,
    clients: Vec<Client>,
    /// The content bought (an index into the published contents).
    content: usize,
    /// The device that holds the purchase.
    holder: usize,
    /// The license the holder holds.
    license: LicenseId,
    /// The license moved away from, if the purchase moved.
    moved_from: Option<LicenseId>,
}

/// The plaintext of content number `index`: deterministic, so that every play is compared
/// with the bytes published.
pub(crate) fn plaintext(seed: u64, index: u32, len: usize) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ (u64::from(index) << 32) ^ 0xC0);
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    out
}

fn below(rng: &mut ChaCha20Rng, n: u64) -> u64 {
    rng.next_u64() % n.max(1)
}

fn chance(rng: &mut ChaCha20Rng, p: f64) -> bool {
    ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
}

fn plays(client: &Client, content: ContentId, expected: &[u8]) -> bool {
    let mut out = Vec::new();
    client.play(content, &mut out).is_ok() && out == expected
}

/// Whether an error is the service's refusal (a 4xx or a library refusal), not a failure of the
/// service or the network.
fn refused(e: &Error) -> bool {
    match e {
        Error::Service { status, .. } => (400..500).contains(status),
        Error::Io(_) | Error::Storage(_) | Error::Internal(_) => false,
        _ => true,
    }
}

/// Phase 1: a user created, its devices registered, the content chosen and downloaded to the
/// device that will buy it.
pub(crate) fn setup(s: &Shared<'_>, u: u64) -> Result<SimUser, SimError> {
    let cfg = s.cfg;
    let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u);
    let t = s.op.transport();
    let (user, credential) = s.timed("user", || s.op.create_user())?;
    s.journal(&format!("user {}", user.0))?;
    let (_, ekb) = s.timed("ekb", || t.current_ekb())?;
    let devices = 1 + below(&mut rng, u64::from(cfg.max_clients));
    let mut clients = Vec::new();
    for i in 0..devices {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        let server = ServerId(1 + (i as u32 % cfg.servers));
        let registration = s.timed("register", || t.register(user, &credential, server, &key))?;
        let mut client = Client::new(key, registration)?;
        client.store_ekb(&ekb)?;
        s.journal(&format!("client {}", client.id().0))?;
        clients.push(client);
    }
    if chance(&mut rng, cfg.attack_share) {
        // Registering with another user's credential.
        let other = UserId(user.0 ^ 1);
        let key = SigningKey::from_bytes(&[7; 32]);
        let r = t.register(other, &credential, ServerId(1), &key);
        s.attack("foreign_credential", r.as_ref().is_err_and(refused));
    }
    let content = below(&mut rng, s.contents.len() as u64) as usize;
    let content_id = s
        .contents
        .get(content)
        .map(|c| c.0)
        .ok_or(SimError::Config("no content".into()))?;
    let holder = below(&mut rng, clients.len() as u64) as usize;
    let container = s.timed("download", || t.download(user, &credential, content_id))?;
    clients
        .get_mut(holder)
        .ok_or(SimError::Config("no client".into()))?
        .store_content(container)?;
    Ok(SimUser {
        rng,
        user,
        credential,
        clients,
        content,
        holder,
        license: LicenseId(0),
        moved_from: None,
    })
}

/// Phase 2: the purchase (a license supply), and the attacks on it.
pub(crate) fn purchase(s: &Shared<'_>, sim: &mut SimUser) -> Result<(), SimError> {
    let t = s.op.transport();
    let content_id = content_of(s, sim)?.0;
    let rng = &mut sim.rng;
    let buyer = sim
        .clients
        .get_mut(sim.holder)
        .ok_or(SimError::Config("no client".into()))?;
    let request = buyer.license_request(content_id, SystemClock.now());
    let license = s.timed("license", || t.license(request.as_bytes()))?;
    buyer.acquire_license(&license)?;
    t.complete(buyer, content_id)?;
    sim.license = buyer
        .license_id(content_id)
        .ok_or(SimError::Config("no license after buying".into()))?;
    s.journal(&format!("license {}", sim.license.0))?;
    if chance(rng, s.cfg.attack_share) {
        // The same request again (a lost answer): the same license, nothing more.
        let again = t.license(request.as_bytes());
        s.attack("retried_license", again.as_deref() == Ok(&license[..]));
        // One byte changed.
        let mut tampered = request.as_bytes().to_vec();
        let at = below(rng, tampered.len() as u64) as usize;
        if let Some(b) = tampered.get_mut(at) {
            *b ^= 1 << below(rng, 8);
        }
        let r = t.license(&tampered);
        s.attack(
            "tampered_license_request",
            r.as_ref().is_err_and(refused) || r.as_deref() == Ok(&license[..]),
        );
    }
    let buyer_id = buyer.id();
    s.foreign.store(buyer_id.0, Ordering::Relaxed);
    let other = (sim.holder + 1) % sim.clients.len();
    if other != sim.holder && chance(rng, s.cfg.attack_share) {
        let plain = content_of(s, sim)?.1;
        let (container, other) = {
            let container = t.download(sim.user, &sim.credential, content_id)?;
            let other = sim
                .clients
                .get_mut(other)
                .ok_or(SimError::Config("no client".into()))?;
            (container, other)
        };
        // Another device of the user plays without a license, then with the buyer's.
        other.store_content(container)?;
        s.attack("play_without_license", !plays(other, content_id, plain));
        let copied = other.acquire_license(&license).is_err() && !plays(other, content_id, plain);
        s.attack("copied_license", copied);
        other.remove_content(content_id);
    }
    Ok(())
}

/// Phase 3: the purchase plays on its holder (real decryption, the published bytes).
pub(crate) fn play(s: &Shared<'_>, sim: &SimUser) -> Result<(), SimError> {
    let (content_id, plain) = content_of(s, sim)?;
    let holder = sim
        .clients
        .get(sim.holder)
        .ok_or(SimError::Config("no client".into()))?;
    s.check(plays(holder, content_id, plain), || {
        format!("{}'s purchase does not play on {}", sim.user, holder.id())
    });
    Ok(())
}

/// Phase 4: a share of users move their purchase to another of their devices; attacks.
pub(crate) fn maybe_move(s: &Shared<'_>, sim: &mut SimUser) -> Result<(), SimError> {
    let foreign = s.foreign.load(Ordering::Relaxed);
    if sim.clients.len() > 1 && chance(&mut sim.rng, s.cfg.move_share) {
        let to = (sim.holder + 1 + below(&mut sim.rng, sim.clients.len() as u64 - 1) as usize)
            % sim.clients.len();
        move_purchase(s, sim, to)?;
    }
    let own = sim.clients.iter().any(|c| c.id().0 == foreign);
    if foreign != 0 && !own && chance(&mut sim.rng, s.cfg.attack_share) {
        // A move to another user's device.
        let t = s.op.transport();
        let source = sim
            .clients
            .get_mut(sim.holder)
            .ok_or(SimError::Config("no holder".into()))?;
        let request = source.move_request(sim.license, ClientId(foreign), SystemClock.now());
        let r = t.certificate(request.as_bytes());
        s.attack("cross_user_move", r.as_ref().is_err_and(refused));
    }
    Ok(())
}

fn content_of<'a>(s: &'a Shared<'_>, sim: &SimUser) -> Result<(ContentId, &'a [u8]), SimError> {
    s.contents
        .get(sim.content)
        .map(|(id, plain)| (*id, plain.as_slice()))
        .ok_or(SimError::Config("no content".into()))
}

/// Moves the purchase from its holder to device `to`.
fn move_purchase(s: &Shared<'_>, sim: &mut SimUser, to: usize) -> Result<(), SimError> {
    let t = s.op.transport();
    let (content_id, plain) = content_of(s, sim)?;
    let rng = &mut sim.rng;
    let (destination_id, source) = {
        let destination_id = sim.clients.get(to).map(|c| c.id());
        (destination_id, sim.clients.get_mut(sim.holder))
    };
    let (Some(destination_id), Some(source)) = (destination_id, source) else {
        return Err(SimError::Config("no such device".into()));
    };
    let request = source.move_request(sim.license, destination_id, SystemClock.now());
    let certificate = s.timed("certificate", || t.certificate(request.as_bytes()))?;
    let containerless = chance(rng, s.cfg.attack_share);
    if containerless {
        // The source deleted its container before moving out, hoping to keep the license.
        source.remove_content(content_id);
    }
    let package = source.move_out(&certificate)?;
    if containerless {
        source.store_content(t.download(sim.user, &sim.credential, content_id)?)?;
        s.attack("containerless_source", !plays(source, content_id, plain));
    }
    let moved = sim.license;
    if chance(rng, s.cfg.attack_share) {
        // The same request again: the same certificate, which moves nothing a second time
        // (the source gives the same package again at most, and still plays nothing).
        let again = t.certificate(request.as_bytes());
        let harmless = match &again {
            Err(e) => refused(e),
            Ok(bytes) => {
                *bytes == certificate
                    && source.move_out(bytes).is_ok_and(|p| {
                        p.content.is_none()
                            && p.release.secret_bytes() == package.release.secret_bytes()
                    })
                    && !plays(source, content_id, plain)
            }
        };
        s.attack("retried_move_request", harmless);
        // A fresh request to move the moved license again.
        let second = source.move_request(moved, destination_id, SystemClock.now());
        let r = t.certificate(second.as_bytes());
        s.attack("second_move", r.as_ref().is_err_and(refused));
    }
    s.check(!plays(source, content_id, plain), || {
        format!("{} still plays after moving out", source.id())
    });
    let destination = sim
        .clients
        .get_mut(to)
        .ok_or(SimError::Config("no such device".into()))?;
    if package.content.is_none() {
        destination.store_content(t.download(sim.user, &sim.credential, content_id)?)?;
    }
    if chance(rng, s.cfg.attack_share) {
        // One bit of the certificate flipped; and the certificate without the source's
        // release (diverted past the source), whose license does not open either.
        let mut tampered = package.clone();
        let at = below(rng, tampered.certificate.len() as u64) as usize;
        if let Some(b) = tampered.certificate.get_mut(at) {
            *b ^= 1 << below(rng, 8);
        }
        s.attack(
            "tampered_certificate",
            destination.move_in(&tampered, SystemClock.now()).is_err(),
        );
        let mut diverted = package.clone();
        let mut wrong = [0u8; 16];
        rng.fill_bytes(&mut wrong);
        diverted.release = treecast_protocol::certificate::ReleaseKey::from_bytes(wrong);
        let refused_in = destination.move_in(&diverted, SystemClock.now()).is_err();
        let carried = CopyCertificateIn::from_bytes(&package.certificate)
            .map_err(Error::from)?
            .unverified()
            .license()
            .map_err(Error::from)?;
        let played = destination.acquire_license(carried.as_bytes()).is_ok()
            && plays(destination, content_id, plain);
        s.attack("diverted_certificate", refused_in && !played);
    }
    destination.move_in(&package, SystemClock.now())?;
    s.timed("ekb", || t.complete(destination, content_id))?;
    if chance(rng, s.cfg.attack_share) {
        let again = destination.move_in(&package, SystemClock.now());
        s.attack("replayed_certificate", again.is_err());
    }
    let new_license = destination
        .license_id(content_id)
        .ok_or(SimError::Config("no license after moving in".into()))?;
    let certificate_id = CopyCertificateIn::from_bytes(&package.certificate)
        .map_err(Error::from)?
        .unverified()
        .certificate_id;
    s.journal(&format!(
        "move {} {} {}",
        moved.0, new_license.0, certificate_id.0
    ))?;
    s.check(plays(destination, content_id, plain), || {
        format!("{} does not play what moved in", destination.id())
    });
    sim.holder = to;
    sim.license = new_license;
    sim.moved_from = Some(moved);
    Ok(())
}

/// After every user: revocations, then the invariants, device by device and at the service.
pub(crate) fn finish(s: &Shared<'_>, mut users: Vec<SimUser>) -> Result<(), SimError> {
    let mut rng = ChaCha20Rng::seed_from_u64(s.cfg.seed ^ 0x5EED);
    let mut revoked = std::collections::BTreeSet::new();
    for _ in 0..s.cfg.revocations.min(users.len() as u64) {
        let u = below(&mut rng, users.len() as u64) as usize;
        let Some(user) = users.get(u) else { continue };
        let Some(holder) = user.clients.get(user.holder) else {
            continue;
        };
        if revoked.insert(u) {
            let epoch = s.timed("revoke", || s.op.revoke(holder.id()))?;
            s.journal(&format!("revoke {} {epoch}", holder.id().0))?;
        }
    }
    // Invariant 2, and the attacks of revoked devices: none opens the current EKB, none gets a
    // license.
    let t = s.op.transport();
    let (_, current) = t.current_ekb()?;
    for &u in &revoked {
        let Some(user) = users.get_mut(u) else {
            continue;
        };
        let content_id = content_of(s, user)?.0;
        let Some(holder) = user.clients.get_mut(user.holder) else {
            continue;
        };
        let opened =
            treecast_keytree::VerifiedEkbBuf::verify(current.clone(), holder.authority_key())
                .map_err(Error::from)
                .and_then(|ekb| Ok(holder.device_keys().open(&ekb.get())?));
        s.attack("revoked_opens_ekb", opened.is_err());
        let request = holder.license_request(content_id, SystemClock.now());
        let r = t.license(request.as_bytes());
        s.attack("revoked_license_request", r.as_ref().is_err_and(refused));
    }
    for (u, user) in users.iter_mut().enumerate() {
        let Some((content_id, plain)) = s.contents.get(user.content) else {
            continue;
        };
        // Exactly one device holds the purchase, and it plays it.
        let holders: Vec<usize> = user
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.license_id(*content_id).is_some())
            .map(|(i, _)| i)
            .collect();
        s.check(holders == [user.holder], || {
            format!("{}'s purchase is held by devices {holders:?}", user.user)
        });
        if let Some(holder) = user.clients.get(user.holder) {
            s.check(plays(holder, *content_id, plain), || {
                format!("{}'s purchase does not play", user.user)
            });
        }
        // The service agrees.
        let expected = if revoked.contains(&u) {
            "revoked"
        } else {
            "active"
        };
        let state = s.timed("status", || {
            s.op.license_state(user.user, &user.credential, user.license)
        })?;
        s.check(state == expected, || {
            format!(
                "{} is {state} at the service, {expected} on the device",
                user.license
            )
        });
        if let Some(moved) = user.moved_from {
            let state = s.op.license_state(user.user, &user.credential, moved)?;
            s.check(state == "moved", || {
                format!("{moved} moved away but the service says {state}")
            });
        }
        // Invariant 5: one license and each move billed, at the service's tariff (the default
        // one: `treecast serve` has no other).
        let tariff = treecast_distributor::Tariff::default();
        let expected = tariff.price(ChargeKind::License, *content_id)
            + u64::from(user.moved_from.is_some())
                * tariff.price(ChargeKind::Certificate, *content_id);
        let total = s.op.user_total(user.user)?;
        s.check(total == expected, || {
            format!("{} was billed {total}, not {expected}", user.user)
        });
    }
    Ok(())
}
