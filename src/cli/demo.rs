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
    println!("all checks passed");
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
