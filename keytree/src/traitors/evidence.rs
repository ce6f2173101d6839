//! The proof behind each accusation: a signed header that only the accused leaf's keys open,
//! and the key the box recovered from it.

use ed25519_dalek::{Signature, VerifyingKey};

use super::{Decoder, Query};
use crate::cover::Subset;
use crate::ekb::{self, SignedEkb, VerifiedEkbBuf};
use crate::error::Error;
use crate::secret::PayloadKey;
use crate::treemath::{LeafIndex, NodeIndex};

/// Why a leaf was named a traitor: a header, signed by the authority as an EKB, in which the
/// leaf's own one-leaf subset carries a fresh key and every other subset random bytes; and the
/// key the box returned for it. Only that leaf's keys open the header, so a box that returns
/// its key holds them, except with probability `2^-128` per query (a guess of the key that
/// passes the verification value). The evidence epochs have the top bit set, so no evidence
/// header is ever a broadcast one. The authority also signs, under its own label, the statement
/// "in this header only this leaf's entry is real" (the *attestation*), so that the leaf is
/// bound to the header.
#[derive(Clone, Debug)]
pub struct Evidence {
    leaf: LeafIndex,
    header: SignedEkb,
    attestation: Signature,
    recovered: PayloadKey,
    trials: u64,
}

impl Evidence {
    pub(super) fn new(
        leaf: LeafIndex,
        header: SignedEkb,
        signer: &crate::signer::Signer,
        recovered: PayloadKey,
        trials: u64,
    ) -> Result<Self, crate::Error> {
        let attestation = signer.sign(&statement(leaf, header.as_bytes()))?;
        Ok(Self {
            leaf,
            header,
            attestation,
            recovered,
            trials,
        })
    }

    /// The authority's signature binding the leaf to the header (64 bytes).
    pub fn attestation(&self) -> [u8; 64] {
        self.attestation.to_bytes()
    }

    /// The accused leaf.
    pub fn leaf(&self) -> LeafIndex {
        self.leaf
    }

    /// The signed evidence header (an EKB encoding).
    pub fn header(&self) -> &SignedEkb {
        &self.header
    }

    /// The key the box returned for the header. It protects nothing: it was drawn for this one
    /// query.
    pub fn recovered(&self) -> &PayloadKey {
        &self.recovered
    }

    /// The queries made with only this subset real (or with it among the real half) until the
    /// box decrypted one; the last of them is the header.
    pub fn trials(&self) -> u64 {
        self.trials
    }

    /// Rebuilds evidence read back from storage (for `treecast trace --verify`); check it
    /// with [`Evidence::verify`].
    ///
    /// # Errors
    /// As [`VerifiedEkbBuf::verify`].
    pub fn from_parts(
        leaf: LeafIndex,
        header: Vec<u8>,
        attestation: [u8; 64],
        recovered: PayloadKey,
        trials: u64,
        authority: &VerifyingKey,
    ) -> Result<Self, Error> {
        let header = SignedEkb::from(VerifiedEkbBuf::verify(header, authority)?);
        Ok(Self {
            leaf,
            header,
            attestation: Signature::from_bytes(&attestation),
            recovered,
            trials,
        })
    }

    /// Checks the evidence with the authority's public key alone: the header is signed by the
    /// authority, the authority attests that only the leaf's entry in it is real, the header
    /// lists the leaf's one-leaf subset, and the recovered key passes its verification value.
    /// (That the other entries are random is the authority's word: it holds every key anyway.)
    ///
    /// # Errors
    /// [`Error::BadSignature`] or a decode error for a header the authority did not sign;
    /// [`Error::UnwrapFailed`] when the header lacks the leaf's subset or the key fails.
    pub fn verify(&self, authority: &VerifyingKey) -> Result<(), Error> {
        let verified = VerifiedEkbBuf::verify(self.header.as_bytes().to_vec(), authority)?;
        authority
            .verify_strict(
                &statement(self.leaf, self.header.as_bytes()),
                &self.attestation,
            )
            .map_err(|_| Error::BadSignature)?;
        let query = Query::from_ekb(&verified)?;
        let singleton = self.leaf.node(verified.header().config.height);
        let listed = query.entries().iter().any(|(s, _)| same(s, &singleton));
        if listed && query.accepts(&self.recovered) {
            Ok(())
        } else {
            Err(Error::UnwrapFailed)
        }
    }

    /// Puts the header to `decoder` `trials` times again and counts the times it returns the
    /// header's key. A box built from the accused leaf's keys decrypts it again; no other can.
    ///
    /// # Errors
    /// As [`Evidence::verify`] for the header.
    pub fn replay(
        &self,
        authority: &VerifyingKey,
        decoder: &mut dyn Decoder,
        trials: u64,
    ) -> Result<u64, Error> {
        let verified = VerifiedEkbBuf::verify(self.header.as_bytes().to_vec(), authority)?;
        let query = Query::from_ekb(&verified)?;
        let mut hits = 0;
        for _ in 0..trials {
            if decoder.decrypt(&query).is_some_and(|k| query.accepts(&k)) {
                hits += 1;
            }
        }
        Ok(hits)
    }
}

/// Whether `subset` is exactly the one leaf at node `leaf`.
fn same(subset: &Subset, leaf: &NodeIndex) -> bool {
    match *subset {
        Subset::Complete(n) => n == *leaf,
        Subset::Difference { u, v } => leaf.sibling() == Some(v) && leaf.parent() == Some(u),
    }
}

/// What the attestation signs: its label, then SHA-256 of the leaf and the header.
fn statement(leaf: LeafIndex, header: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(4 + header.len());
    signed.extend_from_slice(&leaf.get().to_be_bytes());
    signed.extend_from_slice(header);
    ekb::signing_message(ATTESTATION_LABEL, &signed)
}

/// The attestation's domain label: no EKB or license signature verifies as one.
const ATTESTATION_LABEL: &[u8; 16] = b"treecast/v1/trc\0";
