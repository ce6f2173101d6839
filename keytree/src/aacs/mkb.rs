//! The Media Key Block: a run of records, each a 1-byte type, a 3-byte big-endian length that
//! includes the 4-byte header, and a payload padded to a multiple of 4 bytes.
//!
//! treecast writes, in this order:
//!
//! | type | record | payload |
//! |------|--------|---------|
//! | `0x10` | Type and Version | MKB type `0x00031003` (type 3), version (u32) |
//! | `0x81` | Verify Media Key | `AES-128-E(K_m, 0123456789ABCDEF ‖ nonce)` |
//! | `0x04` | Explicit Subset-Difference | 5 bytes per subset: `u_mask_shift`, `uv` (u32) |
//! | `0x05` | Media Key Data | 16 bytes per subset, in the same order |
//! | `0x02` | End of MKB | Ed25519 signature over `"treecast/v1/mkb\0" ‖ SHA-256(MKB before this record)` |
//!
//! The reader ([`Mkb::parse`]) borrows the input and checks only the record structure, so it costs
//! O(records), not O(subsets): the first record must be Type and Version; a length below 4 or
//! past the end of the input is an error unless everything left is zero padding; each known
//! record may appear once; unknown records are skipped, as the AACS specification asks; reading
//! stops at End of MKB. The Explicit Subset-Difference list ends at the first entry whose
//! `u_mask_shift` has either of its top two bits set (the AACS end marker) or where fewer than
//! 5 bytes are left.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::aacs::ExplicitSubset;
use crate::error::{DecodeError, Error};

/// The record types.
const TYPE_AND_VERSION: u8 = 0x10;
const VERIFY_MEDIA_KEY: u8 = 0x81;
const EXPLICIT_SUBSET_DIFFERENCE: u8 = 0x04;
const MEDIA_KEY_DATA: u8 = 0x05;
const END_OF_MKB: u8 = 0x02;

/// The MKB type treecast writes: type 3, the media key computed directly.
pub const MKB_TYPE_3: u32 = 0x0003_1003;

/// The largest record the 3-byte length can describe.
#[cfg(feature = "authority")]
const MAX_RECORD_LEN: usize = 0x00FF_FFFF;

/// A parsed MKB, borrowing its bytes.
#[derive(Clone, Debug)]
pub struct Mkb<'a> {
    mkb_type: u32,
    version: u32,
    verify_media_key: Option<[u8; 16]>,
    subsets: &'a [u8],
    media_key_data: &'a [u8],
    /// The bytes before the End-of-MKB record, and its payload.
    end: Option<(&'a [u8], &'a [u8])>,
    unknown_records: usize,
}

impl<'a> Mkb<'a> {
    /// Reads the records of an MKB (see the module documentation for the rules).
    ///
    /// # Errors
    /// A [`DecodeError`] when the first record is not Type and Version, a record's length is
    /// below 4 or runs past the input, a known record appears twice or is too short, or the
    /// Media Key Data is not a whole number of 16-byte entries.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut mkb = Self {
            mkb_type: 0,
            version: 0,
            verify_media_key: None,
            subsets: &[],
            media_key_data: &[],
            end: None,
            unknown_records: 0,
        };
        // One bit for each known record type seen.
        let mut seen = 0u8;
        let mut offset = 0usize;
        while let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) {
            let header = match rest.get(..4) {
                Some(&[t, a, b, c]) => (
                    t,
                    usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c),
                ),
                _ if rest.iter().all(|&b| b == 0) => break,
                _ => return Err(DecodeError::MissingData("record header")),
            };
            let (record_type, len) = header;
            if len < 4 {
                if rest.iter().all(|&b| b == 0) {
                    break;
                }
                return Err(DecodeError::InvalidValue("record length"));
            }
            let payload = rest.get(4..len).ok_or(DecodeError::MissingData("record"))?;
            if offset == 0 && record_type != TYPE_AND_VERSION {
                return Err(DecodeError::InvalidValue(
                    "first record is not Type and Version",
                ));
            }
            let bit = match record_type {
                TYPE_AND_VERSION => 1,
                VERIFY_MEDIA_KEY => 2,
                EXPLICIT_SUBSET_DIFFERENCE => 4,
                MEDIA_KEY_DATA => 8,
                _ => 0,
            };
            if seen & bit != 0 {
                return Err(DecodeError::InvalidValue("duplicate record"));
            }
            seen |= bit;
            match record_type {
                TYPE_AND_VERSION => {
                    let mut r = crate::codec::Reader::new(payload);
                    mkb.mkb_type = r.u32("MKB type")?;
                    mkb.version = r.u32("MKB version")?;
                }
                VERIFY_MEDIA_KEY => {
                    let record = payload
                        .get(..16)
                        .and_then(|b| <[u8; 16]>::try_from(b).ok())
                        .ok_or(DecodeError::MissingData("Verify Media Key record"))?;
                    mkb.verify_media_key = Some(record);
                }
                EXPLICIT_SUBSET_DIFFERENCE => {
                    let count = payload
                        .chunks_exact(5)
                        .take_while(|e| e.first().is_some_and(|&m| m & 0xC0 == 0))
                        .count();
                    mkb.subsets = payload.get(..5 * count).unwrap_or_default();
                }
                MEDIA_KEY_DATA => {
                    if payload.len() % 16 != 0 {
                        return Err(DecodeError::InvalidValue("Media Key Data length"));
                    }
                    mkb.media_key_data = payload;
                }
                END_OF_MKB => {
                    let signed = bytes.get(..offset).unwrap_or_default();
                    mkb.end = Some((signed, payload));
                    break;
                }
                _ => mkb.unknown_records += 1,
            }
            offset += len;
        }
        if seen & 1 == 0 {
            return Err(DecodeError::MissingData("Type and Version record"));
        }
        Ok(mkb)
    }

    /// The MKB type (`0x00031003` for treecast's).
    pub fn mkb_type(&self) -> u32 {
        self.mkb_type
    }

    /// The MKB version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The number of entries of the Explicit Subset-Difference record.
    pub fn subset_count(&self) -> usize {
        self.subsets.len() / 5
    }

    /// Entry `index` of the Explicit Subset-Difference record.
    ///
    /// # Errors
    /// [`DecodeError::MissingData`] past the last entry.
    pub fn subset(&self, index: usize) -> Result<ExplicitSubset, DecodeError> {
        let start = index.checked_mul(5).ok_or(DecodeError::TooLarge("index"))?;
        match self.subsets.get(start..start.saturating_add(5)) {
            Some(&[shift, a, b, c, d]) => Ok(ExplicitSubset {
                u_mask_shift: shift,
                uv: u32::from_be_bytes([a, b, c, d]),
            }),
            _ => Err(DecodeError::MissingData("Explicit Subset-Difference entry")),
        }
    }

    /// The entries of the Explicit Subset-Difference record, in order.
    pub fn subsets(&self) -> impl Iterator<Item = ExplicitSubset> + '_ {
        self.subsets.chunks_exact(5).filter_map(|e| match *e {
            [shift, a, b, c, d] => Some(ExplicitSubset {
                u_mask_shift: shift,
                uv: u32::from_be_bytes([a, b, c, d]),
            }),
            _ => None,
        })
    }

    /// Media Key Data entry `index` (the wrapped media key of subset `index`).
    ///
    /// # Errors
    /// [`DecodeError::MissingData`] when the record is absent or shorter.
    pub fn media_key_data(&self, index: usize) -> Result<[u8; 16], DecodeError> {
        let start = index
            .checked_mul(16)
            .ok_or(DecodeError::TooLarge("index"))?;
        self.media_key_data
            .get(start..start.saturating_add(16))
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .ok_or(DecodeError::MissingData("Media Key Data entry"))
    }

    /// The Verify Media Key record, if present.
    pub fn verify_media_key(&self) -> Option<[u8; 16]> {
        self.verify_media_key
    }

    /// The number of records skipped because their type is unknown.
    pub fn unknown_records(&self) -> usize {
        self.unknown_records
    }

    /// Whether the MKB ends with an End-of-MKB record.
    pub fn has_end(&self) -> bool {
        self.end.is_some()
    }

    /// Checks treecast's End-of-MKB signature with the authority's key
    /// ([`AacsAuthority::verifying_key`](crate::aacs::AacsAuthority::verifying_key)).
    ///
    /// # Errors
    /// [`Error::BadSignature`] when there is no End-of-MKB record, its payload is not a 64-byte
    /// Ed25519 signature, or the signature does not verify over the bytes before it.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), Error> {
        let (signed, payload) = self.end.ok_or(Error::BadSignature)?;
        let signature = <[u8; 64]>::try_from(payload)
            .map(|b| Signature::from_bytes(&b))
            .map_err(|_| Error::BadSignature)?;
        key.verify_strict(&signing_message(signed), &signature)
            .map_err(|_| Error::BadSignature)
    }
}

/// Pads an MKB with zeros to a whole number of 2048-byte disc sectors, with at least 4 bytes of
/// padding, as an `MKB_RO.inf` file on a disc is. Readers (this module's and AACS players')
/// ignore the padding; libaacs 0.11 refuses an `MKB_RO.inf` that ends exactly at its End-of-MKB
/// record.
pub fn pad_to_sectors(mkb: &mut Vec<u8>) {
    let len = (mkb.len() + 4).next_multiple_of(SECTOR);
    mkb.resize(len, 0);
}

/// A disc sector.
const SECTOR: usize = 2048;

/// What the End-of-MKB record signs.
pub(crate) fn signing_message(signed: &[u8]) -> Vec<u8> {
    crate::ekb::signing_message(SIGNING_LABEL, signed)
}

/// Writes an MKB: Type and Version, Verify Media Key, Explicit Subset-Difference, Media Key
/// Data, then End of MKB with the signature `sign` makes over everything before it.
#[cfg(feature = "authority")]
pub(crate) fn write(
    version: u32,
    verify: &[u8; 16],
    entries: &[ExplicitSubset],
    data: &[[u8; 16]],
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], Error>,
) -> Result<Vec<u8>, Error> {
    if entries.len() != data.len() {
        return Err(Error::Internal("one Media Key Data entry per subset"));
    }
    let mut out = Vec::with_capacity(64 + 21 * entries.len());
    let mut type_and_version = [0u8; 8];
    type_and_version[..4].copy_from_slice(&MKB_TYPE_3.to_be_bytes());
    type_and_version[4..].copy_from_slice(&version.to_be_bytes());
    record(&mut out, TYPE_AND_VERSION, &[&type_and_version])?;
    record(&mut out, VERIFY_MEDIA_KEY, &[verify])?;
    let encoded: Vec<[u8; 5]> = entries
        .iter()
        .map(|e| {
            let uv = e.uv.to_be_bytes();
            [e.u_mask_shift, uv[0], uv[1], uv[2], uv[3]]
        })
        .collect();
    let parts: Vec<&[u8]> = encoded.iter().map(|e| e.as_slice()).collect();
    record(&mut out, EXPLICIT_SUBSET_DIFFERENCE, &parts)?;
    let parts: Vec<&[u8]> = data.iter().map(|e| e.as_slice()).collect();
    record(&mut out, MEDIA_KEY_DATA, &parts)?;
    let signature = sign(&out)?;
    record(&mut out, END_OF_MKB, &[&signature])?;
    Ok(out)
}

/// Appends one record: header, the parts, zero padding to a multiple of 4.
#[cfg(feature = "authority")]
fn record(out: &mut Vec<u8>, record_type: u8, parts: &[&[u8]]) -> Result<(), Error> {
    let payload: usize = parts.iter().map(|p| p.len()).sum();
    let len = (4 + payload).next_multiple_of(4);
    if len > MAX_RECORD_LEN {
        return Err(Error::TooLarge("MKB record"));
    }
    let len_bytes = (len as u32).to_be_bytes();
    out.push(record_type);
    out.extend_from_slice(&len_bytes[1..]);
    for part in parts {
        out.extend_from_slice(part);
    }
    out.resize(out.len() + len - 4 - payload, 0);
    Ok(())
}

const SIGNING_LABEL: &[u8; 16] = b"treecast/v1/mkb\0";
