//! Complete Subtree against Subset Difference: how large the EKB gets as devices are revoked.
//!
//! `cargo run --release --example revocation` prints a Markdown table: for a height-32 tree and
//! r randomly revoked devices, the subsets and bytes of each scheme's EKB, and the time to build
//! it. Every EKB is opened by a sample of devices, revoked and not, to check it.

use std::time::Instant;

use rand_core::{Rng, SeedableRng};
use treecast::keytree::{
    Authority, EkbIn, Error, LeafIndex, MasterSecret, PayloadKey, RevocationSet, Scheme,
    TreeConfig, TreeHeight, TreeId,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let height = TreeHeight::new(32)?;
    let master = MasterSecret::from_bytes([11; 32]);
    let payload = PayloadKey::from_bytes([12; 16]);
    let schemes = [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE];
    let authorities = schemes
        .iter()
        .map(|&s| Authority::new(&master, TreeConfig::new(s, height, TreeId(1))))
        .collect::<Result<Vec<_>, _>>()?;

    println!(
        "| revoked r | CS subsets | CS bytes | CS build | SD subsets | SD bytes | SD build | SD/CS bytes |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let mut revoked = RevocationSet::new(height);
    for r in [0, 1, 10, 100, 1_000, 10_000, 100_000] {
        while revoked.len() < r {
            revoked.insert(rng.next_u32())?;
        }
        let mut row = format!("| {r} |");
        let mut sizes = [0usize; 2];
        for (authority, size) in authorities.iter().zip(&mut sizes) {
            let started = Instant::now();
            let ekb = authority.build_ekb(&payload, &revoked, 1)?;
            let took = started.elapsed();
            check(authority, &ekb, &revoked, &payload, &mut rng)?;
            *size = ekb.as_bytes().len();
            row += &format!(
                " {} | {} | {:.1} ms |",
                ekb.header().subset_count,
                ekb.as_bytes().len(),
                took.as_secs_f64() * 1e3
            );
        }
        let [cs, sd] = sizes;
        row += &format!(" {:.3} |", sd as f64 / cs as f64);
        println!("{row}");
    }
    Ok(())
}

/// Opens the EKB with ten random devices and with up to ten revoked ones.
fn check(
    authority: &Authority,
    ekb: &treecast::keytree::SignedEkb,
    revoked: &RevocationSet,
    payload: &PayloadKey,
    rng: &mut impl Rng,
) -> Result<(), Box<dyn std::error::Error>> {
    let height = authority.config().height;
    let verified = EkbIn::from_bytes(ekb.as_bytes())?.verify(&authority.verifying_key())?;
    let sample = (0..10)
        .map(|_| rng.next_u32())
        .chain(revoked.as_slice().iter().copied().take(10));
    for leaf in sample {
        let result = authority
            .device_keys(LeafIndex::new(leaf, height)?)
            .open(&verified);
        match (revoked.contains(leaf), result) {
            (true, Err(Error::Revoked)) => {}
            (false, Ok(key)) if key == *payload => {}
            (_, other) => return Err(format!("leaf {leaf}: unexpected {other:?}").into()),
        }
    }
    Ok(())
}
