//! `treecast demo`: the key tree end to end, on a seeded population of devices.

use std::time::Instant;

use anyhow::ensure;
use clap::Args;
use rand_core::{Rng, SeedableRng};
use treecast_keytree::{
    Authority, EkbIn, Error, LeafAllocator, MasterSecret, PayloadKey, RevocationSet, Scheme,
    TreeConfig, TreeHeight, TreeId,
};

use super::SchemeArg;

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// The tree scheme.
    #[arg(long, value_enum, default_value = "cs")]
    scheme: SchemeArg,
    /// The tree height.
    #[arg(long, default_value = "32", value_parser = super::parse_height)]
    height: TreeHeight,
    /// How many devices to register.
    #[arg(long, default_value_t = 100_000)]
    devices: u32,
    /// How many of them to revoke.
    #[arg(long, default_value_t = 1_000)]
    revoke: u32,
    /// The seed of the master secret, the payload key and the choice of revoked devices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many users buy, play, move and get revoked in the licensing half (0 skips it).
    #[arg(long, default_value_t = 1_000)]
    users: u32,
    /// The registry of the licensing half: `memory` or `sqlite:PATH`.
    #[arg(long, default_value = "memory")]
    store: super::store::StoreSpec,
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    ensure!(
        args.revoke <= args.devices,
        "cannot revoke more devices than are registered"
    );
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(args.seed);
    let config = TreeConfig::new(Scheme::from(args.scheme), args.height, TreeId(1));
    let authority = Authority::new(&MasterSecret::generate(&mut rng), config)?;

    // 1) Register: every device gets the next leaf and its key set.
    let started = Instant::now();
    let mut leaves = LeafAllocator::new(args.height);
    let devices = (0..args.devices)
        .map(|_| leaves.allocate().map(|leaf| authority.device_keys(leaf)))
        .collect::<Result<Vec<_>, Error>>()?;
    let registered = started.elapsed();

    // 2) Revoke a random choice of them.
    let mut revoked = RevocationSet::new(args.height);
    while revoked.len() < args.revoke as usize {
        let pick = rng.next_u32() % args.devices;
        revoked.insert(pick)?;
    }

    // 3) Build the EKB of the new epoch.
    let payload = PayloadKey::generate(&mut rng);
    let started = Instant::now();
    let ekb = authority.build_ekb(&payload, &revoked, 2)?;
    let built = started.elapsed();

    // 4) Every device verifies, looks up, unwraps.
    let started = Instant::now();
    let verified = EkbIn::from_bytes(ekb.as_bytes())?.verify(&authority.verifying_key())?;
    let verify_time = started.elapsed();
    let started = Instant::now();
    let (mut opened, mut refused) = (0u32, 0u32);
    for device in &devices {
        let is_revoked = revoked.contains(device.leaf().get());
        match device.open(&verified) {
            Ok(key) => {
                ensure!(
                    !is_revoked,
                    "revoked device {} opened the EKB",
                    device.leaf()
                );
                ensure!(
                    key == payload,
                    "device {} unwrapped a wrong key",
                    device.leaf()
                );
                opened += 1;
            }
            Err(Error::Revoked) => {
                ensure!(
                    is_revoked,
                    "device {} was refused but is not revoked",
                    device.leaf()
                );
                refused += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let open_time = started.elapsed();

    println!(
        "treecast demo: scheme {}, height {}, seed {}",
        config.scheme, args.height, args.seed
    );
    println!(
        "  registered devices    {:>12}   ({:.1} ms)",
        args.devices,
        ms(registered)
    );
    println!("  revoked devices       {:>12}", revoked.len());
    println!("  EKB subsets           {:>12}", ekb.header().subset_count);
    println!(
        "  EKB bytes             {:>12}   (built in {:.2} ms)",
        ekb.as_bytes().len(),
        ms(built)
    );
    println!(
        "  signature verified    {:>12}   ({:.3} ms)",
        "yes",
        ms(verify_time)
    );
    println!(
        "  devices that opened   {:>12}   ({:.0} ns each)",
        opened,
        open_time.as_nanos() as f64 / f64::from(args.devices.max(1))
    );
    println!(
        "  devices refused       {:>12}   (all of them revoked)",
        refused
    );
    if args.users > 0 {
        licensing::run(&args.store, config.scheme, args.users, args.seed)?;
    }
    println!("all checks passed");
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The second half of the demo: the contents distribution system on a registry.
pub(crate) mod licensing {
    use std::sync::Arc;
    use std::time::Instant;

    use anyhow::ensure;
    use rand_core::{Rng, SeedableRng};
    use treecast::license::keyfile::DistributorKeys;
    use treecast::license::registry::audit;
    use treecast::license::{
        Client, Clock, Distributor, DistributorConfig, ManualClock, Registry, SigningKey, Tariff,
        UnixTime,
    };
    use treecast_keytree::{Scheme, TreeConfig, TreeHeight, TreeId};

    use crate::cli::store::StoreSpec;

    /// Registers `users` users with two clients each, sells a content to each user's first
    /// client, plays it, moves it to the second client, plays it there, revokes a tenth of the
    /// first clients, and audits the registry. Every step is checked.
    pub(crate) fn run(
        store: &StoreSpec,
        scheme: Scheme,
        users: u32,
        seed: u64,
    ) -> anyhow::Result<()> {
        flow(store.open(height()?)?, &store.name(), scheme, users, seed)
    }

    fn height() -> anyhow::Result<TreeHeight> {
        Ok(TreeHeight::new(32)?)
    }

    fn flow<R: Registry>(
        registry: R,
        name: &str,
        scheme: Scheme,
        users: u32,
        seed: u64,
    ) -> anyhow::Result<()> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed ^ 0x11ce);
        let keys = DistributorKeys::generate(&mut rng, 2);
        let authority = keys.authority(TreeConfig::new(scheme, height()?, TreeId(1)))?;
        let clock = Arc::new(ManualClock::new(UnixTime(1_800_000_000)));
        let d = Distributor::new(
            authority,
            keys.servers().to_vec(),
            registry,
            Tariff::default(),
            clock.clone(),
            DistributorConfig::default(),
        )?;
        let started = Instant::now();
        let movie: Vec<u8> = (0..100_000).map(|_| rng.next_u32() as u8).collect();
        let mut container = Vec::new();
        let content = d.publish(&movie[..], &mut container, &mut rng)?.id;
        let (_, ekb) = d.current_ekb()?;
        let mut pairs = Vec::new();
        for i in 0..users {
            let user = d.register_user()?;
            let mut client = |server| -> anyhow::Result<Client> {
                let key = SigningKey::generate(&mut rng);
                let mut c = Client::new(
                    key.clone(),
                    d.register_client(user, server, &key.verifying_key())?,
                )?;
                c.store_ekb(ekb.as_bytes())?;
                Ok(c)
            };
            let mut first = client(treecast::license::ServerId(1 + i % 2))?;
            let mut second = client(treecast::license::ServerId(2 - i % 2))?;
            // Buy and play on the first client.
            d.supply_content(user, content)?;
            first.store_content(container.clone())?;
            let license =
                d.supply_license(first.license_request(content, clock.now()).as_bytes())?;
            first.acquire_license(license.as_bytes())?;
            let mut played = Vec::new();
            first.play(content, &mut played)?;
            ensure!(
                played == movie,
                "user {user}: the first client played wrong bytes"
            );
            // Move to the second client and play there; the first can no longer play.
            let request = first.move_request(license.tbs().license_id, second.id(), clock.now());
            let cert = d.supply_certificate(request.as_bytes())?;
            second.move_in(&first.move_out(cert.as_bytes())?, clock.now())?;
            played.clear();
            second.play(content, &mut played)?;
            ensure!(
                played == movie,
                "user {user}: the second client played wrong bytes"
            );
            ensure!(
                first.play(content, std::io::sink()).is_err(),
                "user {user}: the moved-from copy still plays"
            );
            pairs.push((first, second));
        }
        let flows = started.elapsed();
        // Revoke every tenth first client; the revoked cannot open the new EKB, the rest can.
        let started = Instant::now();
        let mut revoked = 0;
        for (first, _) in pairs.iter().step_by(10) {
            d.revoke_client(first.id())?;
            revoked += 1;
        }
        let (epoch, ekb) = d.current_ekb()?;
        let verified = treecast_keytree::EkbIn::from_bytes(ekb.as_bytes())?.verify(&d.ekb_key())?;
        for (i, (first, second)) in pairs.iter().enumerate() {
            ensure!(
                second.device_keys().open(&verified).is_ok(),
                "a non-revoked client cannot open epoch {epoch}"
            );
            ensure!(
                first.device_keys().open(&verified).is_ok() != (i % 10 == 0),
                "client {} has the wrong access to epoch {epoch}",
                first.id()
            );
        }
        let revocations = started.elapsed();
        let violations = audit(d.registry(), 5)?;
        ensure!(
            violations.is_empty(),
            "registry invariants broken: {violations:?}"
        );
        let r = d.registry();
        println!("licensing on {name}: scheme {}, {users} users", scheme);
        println!(
            "  clients {:>8}  licenses {:>8}  moves {:>8}  ledger {:>8}   ({:.1} ms, {:.0} µs a user)",
            r.all_clients()?.len(),
            r.all_licenses()?.len(),
            r.certificate_history()?.len(),
            r.ledger()?.len(),
            flows.as_secs_f64() * 1e3,
            flows.as_secs_f64() * 1e6 / f64::from(users.max(1))
        );
        println!(
            "  revoked  {revoked:>8}  epoch    {epoch:>8}  EKB bytes {:>7}   ({:.1} ms)",
            ekb.as_bytes().len(),
            revocations.as_secs_f64() * 1e3
        );
        println!("  every play decrypted, every move checked, audit clean");
        Ok(())
    }
}
