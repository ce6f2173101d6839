//! One sample's encryption (ISO/IEC 23001-7, 9.5.2: the `cenc` scheme): AES-128-CTR under the
//! content key with the sample's IV as the counter block's first 8 bytes, over the sample's
//! protected bytes taken as one stream (subsample by subsample, the counter running on).
//! Video samples are split into subsamples so that every NAL unit's length and header stay
//! clear (10.1 and 10.2).

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};

use crate::{CencKey, Error};

/// A subsample: `clear` bytes, then `protected` bytes.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Subsample {
    pub(crate) clear: u16,
    pub(crate) protected: u32,
}

/// The subsamples of an AVC sample whose NAL units are prefixed by `length_size`-byte lengths:
/// a slice NAL unit (types 1 to 5) is protected but for its length, its header byte and the
/// remainder of its body beyond a multiple of 16 bytes (kept clear at its start, as packagers
/// do, so that the protected part is whole blocks); every other NAL unit is clear.
///
/// # Errors
/// [`Error::Malformed`] for a sample that is not a sequence of NAL units of its lengths.
pub(crate) fn avc_subsamples(sample: &[u8], length_size: usize) -> Result<Vec<Subsample>, Error> {
    let mut out = Vec::new();
    let mut clear: u64 = 0;
    let mut at = 0usize;
    while at < sample.len() {
        let mut len = 0usize;
        for i in 0..length_size {
            let b = sample
                .get(at + i)
                .ok_or(Error::Malformed("NAL unit length"))?;
            len = len << 8 | usize::from(*b);
        }
        let start = at + length_size;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= sample.len() && len > 0)
            .ok_or(Error::Malformed("NAL unit length"))?;
        let nal_type = sample.get(start).map_or(0, |h| h & 0x1f);
        let body = len - 1;
        let protected = if (1..=5).contains(&nal_type) {
            body - body % 16
        } else {
            0
        };
        clear += (length_size + len - protected) as u64;
        if protected > 0 {
            push(&mut out, &mut clear, protected)?;
        }
        at = end;
    }
    if clear > 0 {
        push(&mut out, &mut clear, 0)?;
    }
    Ok(out)
}

/// Appends subsamples for `clear` clear bytes and then `protected` ones: a clear run beyond
/// `u16::MAX` takes entries of its own.
fn push(out: &mut Vec<Subsample>, clear: &mut u64, protected: usize) -> Result<(), Error> {
    while *clear > u64::from(u16::MAX) {
        out.push(Subsample {
            clear: u16::MAX,
            protected: 0,
        });
        *clear -= u64::from(u16::MAX);
    }
    out.push(Subsample {
        clear: u16::try_from(*clear).map_err(|_| Error::Malformed("subsample"))?,
        protected: u32::try_from(protected)
            .map_err(|_| Error::Unsupported("a NAL unit of 4 GiB"))?,
    });
    *clear = 0;
    Ok(())
}

/// Encrypts or decrypts (the same in CTR mode) `sample` in place: its protected bytes, as
/// `subsamples` lay them out, or the whole sample when there are none.
///
/// # Errors
/// [`Error::Malformed`] when the subsamples do not cover the sample exactly.
pub(crate) fn apply(
    key: &CencKey,
    iv: &[u8],
    sample: &mut [u8],
    subsamples: &[Subsample],
) -> Result<(), Error> {
    let mut block = [0u8; 16];
    match (block.get_mut(..iv.len()), iv.len()) {
        (Some(slot), 8 | 16) => slot.copy_from_slice(iv),
        _ => return Err(Error::Unsupported("an IV size other than 8 or 16")),
    }
    let mut cipher = ctr::Ctr128BE::<Aes128>::new(key.secret_bytes().into(), (&block).into());
    if subsamples.is_empty() {
        cipher.apply_keystream(sample);
        return Ok(());
    }
    let mut at = 0usize;
    for s in subsamples {
        let start = at + usize::from(s.clear);
        let end = start + s.protected as usize;
        let range = sample
            .get_mut(start..end)
            .ok_or(Error::Malformed("subsamples beyond the sample"))?;
        cipher.apply_keystream(range);
        at = end;
    }
    if at != sample.len() {
        return Err(Error::Malformed("subsamples do not cover the sample"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nal(kind: u8, body: usize) -> Vec<u8> {
        let mut out = ((body + 1) as u32).to_be_bytes().to_vec();
        out.push(kind);
        out.extend((0..body).map(|i| i as u8));
        out
    }

    #[test]
    fn slices_are_protected_in_whole_blocks_and_the_rest_is_clear() {
        // SPS, PPS (clear), an IDR slice of 1 + 100 bytes, a slice of 1 + 10 bytes (too short).
        let sample = [nal(7, 10), nal(8, 4), nal(5, 100), nal(1, 10)].concat();
        let subs = avc_subsamples(&sample, 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            subs,
            [
                Subsample {
                    clear: (4 + 11) + (4 + 5) + 4 + 1 + 4,
                    protected: 96
                },
                Subsample {
                    clear: 4 + 11,
                    protected: 0
                }
            ]
        );
        let total: usize = subs
            .iter()
            .map(|s| usize::from(s.clear) + s.protected as usize)
            .sum();
        assert_eq!(total, sample.len());
        let key = CencKey::from_bytes([9; 16]);
        let mut sealed = sample.clone();
        apply(&key, &[1; 8], &mut sealed, &subs).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(sealed, sample);
        // Lengths and headers stay.
        assert_eq!(sealed.get(..33), sample.get(..33));
        apply(&key, &[1; 8], &mut sealed, &subs).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sealed, sample);
    }

    #[test]
    fn a_length_beyond_the_sample_is_an_error() {
        let mut sample = nal(5, 40);
        sample.truncate(30);
        assert!(avc_subsamples(&sample, 4).is_err());
        assert!(avc_subsamples(&[0, 0, 0, 0], 4).is_err());
        let key = CencKey::from_bytes([9; 16]);
        let subs = [Subsample {
            clear: 10,
            protected: 100,
        }];
        assert!(apply(&key, &[0; 8], &mut [0u8; 50], &subs).is_err());
    }
}
