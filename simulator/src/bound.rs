//! The crypto bound: how long the run's signatures, verifications, key generations and content
//! decryptions alone take, measured on this machine in the same run, so that the simulator's
//! throughput can be reported as a ratio to it.

use std::time::Instant;

use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;

/// Per-operation costs of the primitives, in seconds, measured on one thread.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct UnitCosts {
    /// Ed25519 key generation (`SigningKey::from_bytes`: hash and base-point multiplication).
    pub keygen: f64,
    /// Ed25519 signature of a 200-byte message.
    pub sign: f64,
    /// Ed25519 `verify_strict` of a 200-byte message, under a key already decoded.
    pub verify: f64,
    /// Decoding an Ed25519 public key from its 32 bytes (`VerifyingKey::from_bytes`: a point
    /// decompression, a square root in the field). The server does it for each request it
    /// verifies, since the registry keeps a client's key as bytes; a client verifies under its
    /// server's key, decoded once.
    pub parse_key: f64,
    /// AES-128-CTR decryption of one content (the configured size).
    pub decrypt: f64,
}

impl UnitCosts {
    /// Measures each primitive in `batches` batches of `n` and keeps, for each, the fastest
    /// batch's mean: interference from the rest of the machine only slows a batch down, so the
    /// fastest is the closest to the primitive's own cost (and the bound errs on the low side).
    pub fn measure_best(batches: u32, n: u32, content_size: usize) -> Self {
        (0..batches.max(1))
            .map(|_| Self::measure(n, content_size))
            .reduce(Self::fastest)
            .unwrap_or_else(|| Self::measure(n, content_size))
    }

    /// Each primitive's lower cost of the two measurements.
    #[must_use]
    pub fn fastest(self, other: Self) -> Self {
        Self {
            keygen: self.keygen.min(other.keygen),
            sign: self.sign.min(other.sign),
            verify: self.verify.min(other.verify),
            parse_key: self.parse_key.min(other.parse_key),
            decrypt: self.decrypt.min(other.decrypt),
        }
    }

    /// Measures each primitive `n` times and keeps the mean.
    pub fn measure(n: u32, content_size: usize) -> Self {
        use aes::cipher::{KeyIvInit, StreamCipher};
        type Ctr = ctr::Ctr128BE<aes::Aes128>;
        let n = n.max(1);
        let seeds: Vec<[u8; 32]> = (0..n)
            .map(|i| {
                let mut s = [7u8; 32];
                s[..4].copy_from_slice(&i.to_le_bytes());
                s
            })
            .collect();
        let t = Instant::now();
        let keys: Vec<SigningKey> = seeds.iter().map(SigningKey::from_bytes).collect();
        let keygen = t.elapsed().as_secs_f64() / f64::from(n);
        let message = [0x5Au8; 200];
        let t = Instant::now();
        let signatures: Vec<_> = keys.iter().map(|k| k.sign(&message)).collect();
        let sign = t.elapsed().as_secs_f64() / f64::from(n);
        let t = Instant::now();
        let mut valid = 0u32;
        for (k, s) in keys.iter().zip(&signatures) {
            valid += u32::from(k.verifying_key().verify_strict(&message, s).is_ok());
        }
        let verify = t.elapsed().as_secs_f64() / f64::from(n);
        let encoded: Vec<[u8; 32]> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
        let t = Instant::now();
        for bytes in &encoded {
            valid += u32::from(ed25519_dalek::VerifyingKey::from_bytes(bytes).is_ok());
        }
        let parse_key = t.elapsed().as_secs_f64() / f64::from(n);
        let mut buffer = vec![0u8; content_size];
        let t = Instant::now();
        for i in 0..n {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&i.to_le_bytes());
            let mut cipher = Ctr::new(&key.into(), &[0u8; 16].into());
            cipher.apply_keystream(&mut buffer);
        }
        let decrypt = t.elapsed().as_secs_f64() / f64::from(n);
        std::hint::black_box((valid, buffer));
        Self {
            keygen,
            sign,
            verify,
            parse_key,
            decrypt,
        }
    }
}

/// The crypto work of a run, and how the run compares with it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CryptoBound {
    /// The unit costs measured.
    pub unit_seconds: UnitCosts,
    /// The run's crypto work alone, on one thread: client key generation and certificate
    /// signature per registration; 2 signatures and 2 verifications per purchase (request and
    /// license); per move 3 signatures (request, license, certificate) and 4 verifications (the
    /// server checks the request, the source the certificate before it deletes anything, the
    /// destination the certificate and the license); a decryption per play.
    pub crypto_seconds: f64,
    /// That work spread over the run's threads.
    pub crypto_seconds_per_thread: f64,
    /// The wall time of the same operations (registration and rounds).
    pub wall_seconds: f64,
    /// `crypto_seconds_per_thread / wall_seconds`: 1 would be crypto alone; the target is at
    /// least [`CryptoBound::TARGET`].
    pub ratio: f64,
    /// The same, phase by phase, so that the gap shows where it is.
    pub phases: [PhaseBound; 2],
}

/// One phase's crypto work against its wall time.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PhaseBound {
    /// `registration` (key generation and certificate signatures) or `rounds` (purchases,
    /// plays, moves).
    pub phase: &'static str,
    /// The phase's crypto work spread over the run's threads.
    pub crypto_seconds_per_thread: f64,
    /// The phase's wall time.
    pub wall_seconds: f64,
    /// `crypto_seconds_per_thread / wall_seconds`.
    pub ratio: f64,
}

impl PhaseBound {
    fn new(phase: &'static str, crypto_seconds: f64, threads: usize, wall_seconds: f64) -> Self {
        let per_thread = crypto_seconds / threads.max(1) as f64;
        Self {
            phase,
            crypto_seconds_per_thread: per_thread,
            wall_seconds,
            ratio: if wall_seconds > 0.0 {
                per_thread / wall_seconds
            } else {
                0.0
            },
        }
    }
}

impl CryptoBound {
    /// The ratio the simulator aims at (issue 17).
    pub const TARGET: f64 = 0.85;

    /// The bound for these operation counts, and for the wall time of registration and of the
    /// rounds.
    pub(crate) fn new(
        unit: UnitCosts,
        counts: [u64; 4],
        threads: usize,
        [registration_wall, rounds_wall]: [f64; 2],
    ) -> Self {
        let [registrations, purchases, moves, plays] = counts.map(|c| c as f64);
        let registration = registrations * (unit.keygen + unit.sign);
        // The server decodes the requesting client's key from its row once per purchase and per
        // move; the clients verify under their server's key, decoded once.
        let rounds = purchases * 2.0 * (unit.sign + unit.verify)
            + moves * (3.0 * unit.sign + 4.0 * unit.verify)
            + (purchases + moves) * unit.parse_key
            + plays * unit.decrypt;
        let whole = PhaseBound::new(
            "all",
            registration + rounds,
            threads,
            registration_wall + rounds_wall,
        );
        Self {
            unit_seconds: unit,
            crypto_seconds: registration + rounds,
            crypto_seconds_per_thread: whole.crypto_seconds_per_thread,
            wall_seconds: whole.wall_seconds,
            ratio: whole.ratio,
            phases: [
                PhaseBound::new("registration", registration, threads, registration_wall),
                PhaseBound::new("rounds", rounds, threads, rounds_wall),
            ],
        }
    }
}
