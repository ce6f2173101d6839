//! The whole flow of a distributor, narrated: a user registers two clients, buys a content,
//! plays it, moves it to the other client, plays it there, and one client is revoked.
//!
//! `cargo run --example distributor`
#![allow(
    clippy::print_stdout,
    reason = "an example narrates what it does on stdout"
)]

use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use treecast::keytree::{Authority, EkbIn, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
use treecast::license::registry::{MemoryRegistry, audit};
use treecast::license::{
    Client, Clock, Distributor, DistributorConfig, Error, LicenseServer, ManualClock, Registry,
    ServerId, SigningKey, Tariff, UnixTime,
};

fn main() -> Result<(), Error> {
    // Everything random comes from one seeded generator, and time from a manual clock: run it
    // twice and it prints the same thing.
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let clock = Arc::new(ManualClock::new(UnixTime(1_800_000_000)));

    println!("1. The distributor sets up");
    let height = TreeHeight::new(32)?;
    let config = TreeConfig::new(Scheme::SUBSET_DIFFERENCE, height, TreeId(1));
    let authority = Authority::new(&MasterSecret::from_bytes([7; 32]), config)?;
    println!(
        "   key tree: Subset Difference, height {height}, {} leaves, one master secret",
        height.leaf_count()
    );
    let servers = [1, 2].map(|i| LicenseServer::generate(ServerId(i), &mut rng));
    println!("   license servers: 2, each with its own Ed25519 key pair");
    let tariff = Tariff::new(499, 99);
    println!("   tariff: a license costs 4.99, a move (copy certificate) 0.99");
    let shop = Distributor::new(
        authority,
        servers,
        MemoryRegistry::new(height),
        tariff,
        clock.clone(),
        DistributorConfig::default(),
    )?;

    println!("\n2. A user registers two clients");
    let user = shop.register_user()?;
    let phone_key = SigningKey::generate(&mut rng);
    let tv_key = SigningKey::generate(&mut rng);
    let phone_registration = shop.register_client(user, ServerId(1), &phone_key.verifying_key())?;
    let tv_registration = shop.register_client(user, ServerId(2), &tv_key.verifying_key())?;
    println!(
        "   {user}: phone = {} at leaf {} (server 1), TV = {} at leaf {} (server 2)",
        phone_registration.client_id,
        phone_registration.device_keys.leaf(),
        tv_registration.client_id,
        tv_registration.device_keys.leaf()
    );
    println!(
        "   each client holds {} bytes of SD key material and a certificate signed by its server",
        phone_registration.device_keys.key_material_len()
    );
    let mut phone = Client::new(phone_key, phone_registration)?;
    let mut tv = Client::new(tv_key, tv_registration)?;

    println!("\n3. The distributor publishes a content, the phone buys it");
    let movie: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut container = Vec::new();
    let content = shop.publish(&movie[..], &mut container, &mut rng)?.id;
    println!(
        "   {content}: {} bytes packaged into a {}-byte container (AES-128-CTR, keyed BLAKE3 per chunk)",
        movie.len(),
        container.len()
    );
    let (epoch, ekb) = shop.current_ekb()?;
    println!(
        "   EKB of epoch {epoch}: {} subsets, {} bytes, signed by the authority",
        ekb.header().subset_count,
        ekb.as_bytes().len()
    );
    phone.store_ekb(ekb.as_bytes())?;
    tv.store_ekb(ekb.as_bytes())?;
    phone.store_content(container)?;
    shop.supply_content(user, content)?;
    let request = phone.license_request(content, clock.now());
    let license = shop.supply_license(request.as_bytes())?;
    phone.acquire_license(license.as_bytes())?;
    println!(
        "   {} for the phone, epoch {}, signed by server {}",
        license.tbs().license_id,
        license.tbs().epoch,
        license.tbs().server_id.0
    );

    println!("\n4. The phone plays it");
    let mut screen = Vec::new();
    phone.play(content, &mut screen)?;
    println!(
        "   decrypted {} bytes; equal to the original: {}",
        screen.len(),
        screen == movie
    );

    println!("\n5. The user moves it to the TV");
    clock.advance(60);
    let request = phone.move_request(license.tbs().license_id, tv.id(), clock.now());
    let certificate = shop.supply_certificate(request.as_bytes())?;
    println!(
        "   {}: signed by server 2 (the TV's), carrying the TV's own license",
        certificate.tbs().certificate_id
    );
    let package = phone.move_out(certificate.as_bytes())?;
    tv.move_in(&package, clock.now())?;
    screen.clear();
    tv.play(content, &mut screen)?;
    println!(
        "   the TV plays it: {}; the phone still can: {}",
        screen == movie,
        phone.play(content, std::io::sink()).is_ok()
    );
    let again = tv.move_in(&package, clock.now());
    println!("   the same certificate a second time: {}", describe(again));

    println!("\n6. The phone is revoked");
    let epoch = shop.revoke_client(phone.id())?;
    let (_, ekb) = shop.current_ekb()?;
    let verified = EkbIn::from_bytes(ekb.as_bytes())?.verify(&shop.ekb_key())?;
    println!(
        "   epoch {epoch}: EKB of {} subsets; content keys re-enveloped",
        ekb.header().subset_count
    );
    println!(
        "   the phone opens it: {}; the TV opens it: {}",
        describe(phone.device_keys().open(&verified).map_err(Error::from)),
        describe(tv.device_keys().open(&verified).map_err(Error::from))
    );
    let refused = shop.supply_license(phone.license_request(content, clock.now()).as_bytes());
    println!("   the phone asks for a license: {}", describe(refused));

    println!("\n7. The registry");
    let registry = shop.registry();
    println!(
        "   {} clients, {} licenses, {} certificate issues, {} charges, {user} billed {}",
        registry.all_clients()?.len(),
        registry.all_licenses()?.len(),
        registry.certificate_history()?.len(),
        registry.ledger()?.len(),
        registry.user_total(user)?
    );
    let violations = audit(registry, 10)?;
    println!(
        "   audit: {}",
        if violations.is_empty() {
            "clean".to_owned()
        } else {
            violations.join("; ")
        }
    );
    Ok(())
}

fn describe<T>(result: Result<T, Error>) -> String {
    match result {
        Ok(_) => "yes".into(),
        Err(e) => format!("refused ({e})"),
    }
}
