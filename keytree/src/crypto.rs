//! The symmetric building blocks, all on AES-128 from the `aes` crate (AES-NI is detected at run
//! time) and HKDF-SHA-256 from the `hkdf` crate.
//!
//! Encryption-only and decryption-only AES types are used so that no key schedule is expanded
//! twice; the per-subset key schedule is the dominant cost of building an EKB.
//!
//! - `Prf`: AES-128 under a purpose key, as a pseudo-random function on 128-bit inputs.
//! - `wrap`/`unwrap`: one AES-128 block, `E_k(payload XOR tweak)`, the tweak binding the wrapped
//!   key to its subset (the AACS Media Key Data construction).
//! - `verification_value`: `E_payload("TCVERIFY" || epoch)`, which tells a device that what it
//!   unwrapped is the payload key.

use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes::{Aes128Dec, Aes128Enc};
#[cfg(feature = "authority")]
use hkdf::Hkdf;
#[cfg(feature = "authority")]
use sha2::Sha256;
use subtle::ConstantTimeEq;

#[cfg(feature = "authority")]
use crate::Error;
#[cfg(feature = "authority")]
use crate::secret::MasterSecret;
use crate::secret::{NodeKey, PayloadKey};

/// AES-128 keyed for one purpose; evaluates the PRF on 128-bit blocks.
#[cfg(feature = "authority")]
#[derive(Clone)]
pub(crate) struct Prf(Aes128Enc);

#[cfg(feature = "authority")]
impl Prf {
    /// Derives the purpose key with HKDF-SHA-256 (salt `HKDF_SALT`, info = `info`).
    pub(crate) fn derive(master: &MasterSecret, info: &[u8]) -> Result<Self, Error> {
        let mut key = zeroize::Zeroizing::new([0u8; 16]);
        expand(master, info, key.as_mut_slice())?;
        Ok(Self(Aes128Enc::new(&Array::from(*key))))
    }

    /// The PRF under a key given as bytes (a key [`Prf::derive`] would give, kept to hand on).
    pub(crate) fn from_key(key: &NodeKey) -> Self {
        Self(Aes128Enc::new(key.secret_bytes().into()))
    }

    pub(crate) fn eval(&self, input: u128) -> [u8; 16] {
        let mut block = Array::from(input.to_be_bytes());
        self.0.encrypt_block(&mut block);
        block.into()
    }

    /// Evaluates the PRF on many inputs at once (AES-NI pipelines them).
    pub(crate) fn eval_many(&self, blocks: &mut [[u8; 16]]) {
        self.0
            .encrypt_blocks(Array::cast_slice_from_core_mut(blocks));
    }
}

/// HKDF-SHA-256 expand of the master secret.
///
/// Output lengths here are at most 32 bytes, far below HKDF's 255 · 32 limit, so the error is an
/// internal one.
#[cfg(feature = "authority")]
pub(crate) fn expand(master: &MasterSecret, info: &[u8], out: &mut [u8]) -> Result<(), Error> {
    Hkdf::<Sha256>::new(Some(HKDF_SALT), master.secret_bytes())
        .expand(info, out)
        .map_err(|_| Error::Internal("HKDF output length"))
}

#[cfg(feature = "authority")]
pub(crate) fn wrap(key: &NodeKey, tweak: u128, payload: &PayloadKey) -> [u8; 16] {
    let cipher = Aes128Enc::new(key.secret_bytes().into());
    let mut block = Array::from(xor(payload.secret_bytes(), tweak));
    cipher.encrypt_block(&mut block);
    block.into()
}

pub(crate) fn unwrap(key: &NodeKey, tweak: u128, wrapped: &[u8; 16]) -> PayloadKey {
    let cipher = Aes128Dec::new(key.secret_bytes().into());
    let mut block = Array::from(*wrapped);
    cipher.decrypt_block(&mut block);
    let out = PayloadKey::from_bytes(xor(&block.into(), tweak));
    block.fill(0);
    out
}

pub(crate) fn verification_value(payload: &PayloadKey, epoch: u64) -> [u8; 16] {
    let cipher = Aes128Enc::new(payload.secret_bytes().into());
    let mut input = [0u8; 16];
    input[..8].copy_from_slice(VERIFY_LABEL);
    input[8..].copy_from_slice(&epoch.to_be_bytes());
    let mut block = Array::from(input);
    cipher.encrypt_block(&mut block);
    block.into()
}

/// Whether `payload` matches the verification value, in constant time.
pub(crate) fn verifies(payload: &PayloadKey, epoch: u64, expected: &[u8; 16]) -> bool {
    verification_value(payload, epoch).ct_eq(expected).into()
}

/// An output of the AES-G3 generator.
#[derive(Clone, Copy)]
pub(crate) enum G3 {
    /// The label of the left child.
    Left = 0,
    /// The subset (processing) key.
    Key = 1,
    /// The label of the right child.
    Right = 2,
}

/// AES-G3, the generator of AACS Subset Difference (and of treecast's SD):
/// output `i` = `AES-128-Dec(label, seed + i) XOR (seed + i)`, `i` added to the last byte.
pub(crate) fn g3(label: &NodeKey, which: G3) -> NodeKey {
    let cipher = Aes128Dec::new(label.secret_bytes().into());
    let mut input = G3_SEED;
    input[15] = input[15].wrapping_add(which as u8);
    let mut block = Array::from(input);
    cipher.decrypt_block(&mut block);
    let mut out: [u8; 16] = block.into();
    block.fill(0);
    for (o, i) in out.iter_mut().zip(input) {
        *o ^= i;
    }
    NodeKey::from_bytes(out)
}

/// Follows the path from a label's node down to a descendant: `bits` holds the `steps` path
/// bits below it, most significant first (0 = left).
pub(crate) fn g3_descend(label: NodeKey, bits: u64, steps: u8) -> NodeKey {
    let mut label = label;
    for i in (0..steps).rev() {
        let which = if (bits >> i) & 1 == 0 {
            G3::Left
        } else {
            G3::Right
        };
        label = g3(&label, which);
    }
    label
}

fn xor(a: &[u8; 16], tweak: u128) -> [u8; 16] {
    (u128::from_be_bytes(*a) ^ tweak).to_be_bytes()
}

/// The AACS AES-G3 seed constant.
const G3_SEED: [u8; 16] = [
    0x7B, 0x10, 0x3C, 0x5D, 0xCB, 0x08, 0xC4, 0xE5, 0x1A, 0x27, 0xB0, 0x17, 0x99, 0x05, 0x3B, 0xD9,
];
#[cfg(feature = "authority")]
const HKDF_SALT: &[u8] = b"treecast/v1";
const VERIFY_LABEL: &[u8; 8] = b"TCVERIFY";
