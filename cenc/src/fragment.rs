//! Movie fragments: where each sample is (`tfhd`, `trun`, `trex`, read with `mp4-atom`), and
//! the sample auxiliary information of Common Encryption (ISO/IEC 23001-7, 7.2: `senc` with
//! each sample's IV and subsamples, `saiz` and `saio` pointing at it).
//!
//! A fragment must use `default-base-is-moof` (ffmpeg's `-movflags +default_base_moof`) and
//! give each run its data offset: the boxes added to `moof` then move every sample by their
//! length, which the data offsets take up, and nothing else in the file points into it.

use core::ops::Range;

use mp4_atom::{Decode, Encode};

use crate::boxes::{Mp4Box, array};
use crate::sample::{self, Subsample};
use crate::track::{IV_SIZE, Protection, Tenc, Track};
use crate::{CencKey, Error};

/// One track fragment's samples: their protection and where they are in the file.
struct Samples {
    protection: Protection,
    ranges: Vec<Range<usize>>,
}

/// Where the samples of `traf` are, `moof` being at `moof_offset`: each of at least one byte,
/// inside `data` (the payload of the fragment's `mdat`), and no more of them in the fragment
/// than `data` has bytes (`budget`, what is left of them), so that a small box cannot make
/// the packager count billions of samples.
fn samples(
    traf: &Mp4Box,
    moof_offset: u64,
    tracks: &[Track],
    data: &Range<usize>,
    budget: &mut usize,
) -> Result<Samples, Error> {
    let tfhd = decode::<mp4_atom::Tfhd>(
        traf.child(b"tfhd")
            .ok_or(Error::Malformed("traf without tfhd"))?,
    )?;
    if tfhd.base_data_offset.is_some() || !tfhd.default_base_is_moof {
        return Err(Error::Unsupported(
            "a fragment without default-base-is-moof (ffmpeg: -movflags +default_base_moof)",
        ));
    }
    let track = tracks
        .iter()
        .find(|t| t.id == tfhd.track_id)
        .ok_or(Error::Malformed("a fragment of an unknown track"))?;
    let description = tfhd
        .sample_description_index
        .or(track
            .trex
            .as_ref()
            .map(|t| t.default_sample_description_index))
        .unwrap_or(1);
    let protection = *usize::try_from(description)
        .ok()
        .and_then(|d| d.checked_sub(1))
        .and_then(|d| track.entries.get(d))
        .ok_or(Error::Malformed("a sample description index out of range"))?;
    let default_size = tfhd
        .default_sample_size
        .or(track.trex.as_ref().map(|t| t.default_sample_size));
    let mut ranges = Vec::new();
    for trun in traf.children().iter().filter(|b| &b.kind == b"trun") {
        let trun = decode::<mp4_atom::Trun>(trun)?;
        let offset = trun
            .data_offset
            .ok_or(Error::Unsupported("a track run without a data offset"))?;
        let mut at = i64::try_from(moof_offset)
            .map_err(|_| Error::Malformed("offset"))?
            .checked_add(i64::from(offset))
            .ok_or(Error::Malformed("data offset"))?;
        for entry in trun.samples.iter() {
            let size = entry
                .size
                .or(default_size)
                .ok_or(Error::Malformed("a sample without a size"))?;
            *budget = budget
                .checked_sub(1)
                .ok_or(Error::Malformed("more samples than the mdat has bytes"))?;
            let start = usize::try_from(at).map_err(|_| Error::Malformed("data offset"))?;
            let end = start
                .checked_add(size as usize)
                .filter(|&e| size > 0 && start >= data.start && e <= data.end)
                .ok_or(Error::Malformed("a sample outside its fragment's mdat"))?;
            ranges.push(start..end);
            at = i64::try_from(end).map_err(|_| Error::Malformed("offset"))?;
        }
    }
    Ok(Samples { protection, ranges })
}

/// Decodes a box with `mp4-atom` (which reads the header too).
fn decode<T: Decode>(b: &Mp4Box) -> Result<T, Error> {
    let mut bytes = Vec::new();
    b.encode(&mut bytes);
    Ok(T::decode(&mut bytes.as_slice())?)
}

/// Encodes an `mp4-atom` box into a box of the tree.
fn raw_of<T: Encode>(kind: &[u8; 4], atom: &T) -> Result<Mp4Box, Error> {
    let mut bytes = Vec::new();
    atom.encode(&mut bytes)?;
    let payload = bytes
        .get(8..)
        .ok_or(Error::Malformed("encoded box"))?
        .to_vec();
    Ok(Mp4Box::raw(kind, payload))
}

/// Encrypts the samples of the fragment `moof` (at `offset` in the file) in `work`, a copy of
/// the file, with IVs counted on from `iv`, and returns the fragment with its `senc`, `saiz`
/// and `saio`. `spans` collects every sample's range (checked later not to overlap).
#[allow(
    clippy::too_many_arguments,
    reason = "the fragment, its data, and what runs on"
)]
pub(crate) fn protect(
    moof: &Mp4Box,
    offset: u64,
    data: Range<usize>,
    tracks: &[Track],
    key: &CencKey,
    iv: &mut u64,
    work: &mut [u8],
    spans: &mut Vec<Range<usize>>,
) -> Result<Mp4Box, Error> {
    let mut out = moof.clone();
    let mut budget = data.len();
    for traf in out.children_of_mut(b"traf")? {
        if traf
            .children()
            .iter()
            .any(|b| matches!(&b.kind, b"senc" | b"saiz" | b"saio"))
        {
            return Err(Error::WrongState(
                "a fragment has sample auxiliary information: protected already",
            ));
        }
        let s = samples(traf, offset, tracks, &data, &mut budget)?;
        let video = matches!(s.protection, Protection::Video { .. });
        let count = u32::try_from(s.ranges.len()).map_err(|_| Error::Malformed("sample count"))?;
        let mut senc = count.to_be_bytes().to_vec();
        let mut sizes = Vec::with_capacity(s.ranges.len());
        for range in &s.ranges {
            let sample = work
                .get_mut(range.clone())
                .ok_or(Error::Malformed("sample"))?;
            let this_iv = iv.to_be_bytes();
            *iv = iv.wrapping_add(1);
            let subsamples = match s.protection {
                Protection::Video { length_size } => sample::avc_subsamples(sample, length_size)?,
                Protection::Audio => Vec::new(),
            };
            sample::apply(key, &this_iv, sample, &subsamples)?;
            senc.extend_from_slice(&this_iv);
            let mut size = usize::from(IV_SIZE);
            if video {
                let n = u16::try_from(subsamples.len())
                    .map_err(|_| Error::Unsupported("a sample of 65 536 subsamples"))?;
                senc.extend_from_slice(&n.to_be_bytes());
                for Subsample { clear, protected } in &subsamples {
                    senc.extend_from_slice(&clear.to_be_bytes());
                    senc.extend_from_slice(&protected.to_be_bytes());
                }
                size += 2 + 6 * subsamples.len();
            }
            sizes.push(
                u8::try_from(size)
                    .map_err(|_| Error::Unsupported("a sample of more than 41 subsamples"))?,
            );
            spans.push(range.clone());
        }
        let senc = raw_of(
            b"senc",
            &mp4_atom::Senc {
                version: mp4_atom::SencBoxVersion::V0,
                use_subsamples: video,
                data: senc,
            },
        )?;
        let uniform = sizes
            .first()
            .copied()
            .filter(|f| sizes.iter().all(|s| s == f));
        let saiz = raw_of(
            b"saiz",
            &mp4_atom::Saiz {
                aux_info: None,
                default_sample_info_size: uniform.unwrap_or(0),
                sample_count: count,
                sample_info_size: if uniform.is_some() { Vec::new() } else { sizes },
            },
        )?;
        let saio = raw_of(
            b"saio",
            &mp4_atom::Saio {
                aux_info: None,
                offsets: vec![0],
            },
        )?;
        let children = traf.children_mut().ok_or(Error::Malformed("traf"))?;
        children.extend([senc, saiz, saio]);
    }
    shift_runs(&mut out, moof.len(), offset)?;
    point_saio(&mut out)?;
    Ok(out)
}

/// Decrypts the samples of the protected fragment `moof` (at `offset`) in `work` and returns
/// the fragment without its `senc`, `saiz` and `saio`.
#[allow(
    clippy::too_many_arguments,
    reason = "the fragment, its data, and what runs on"
)]
pub(crate) fn unprotect(
    moof: &Mp4Box,
    offset: u64,
    data: Range<usize>,
    tracks: &[Track],
    tenc: Tenc,
    key: &CencKey,
    work: &mut [u8],
    spans: &mut Vec<Range<usize>>,
) -> Result<Mp4Box, Error> {
    let mut out = moof.clone();
    let mut budget = data.len();
    for traf in out.children_of_mut(b"traf")? {
        let s = samples(traf, offset, tracks, &data, &mut budget)?;
        let senc = traf
            .child(b"senc")
            .and_then(Mp4Box::payload)
            .ok_or(Error::WrongState("a fragment without senc: not protected"))?;
        let flags = u32::from_be_bytes(array(senc, 0)?) & 0x00ff_ffff;
        let subsampled = flags & 2 != 0;
        let count = u32::from_be_bytes(array(senc, 4)?);
        if count as usize != s.ranges.len() {
            return Err(Error::Malformed(
                "senc's sample count is not the fragment's",
            ));
        }
        let mut at = 8usize;
        let iv_size = usize::from(tenc.iv_size);
        for range in &s.ranges {
            let iv = senc.get(at..at + iv_size).ok_or(Error::Malformed("senc"))?;
            at += iv_size;
            let mut subsamples = Vec::new();
            if subsampled {
                let n = u16::from_be_bytes(array(senc, at)?);
                at += 2;
                for _ in 0..n {
                    subsamples.push(Subsample {
                        clear: u16::from_be_bytes(array(senc, at)?),
                        protected: u32::from_be_bytes(array(senc, at + 2)?),
                    });
                    at += 6;
                }
            }
            let sample = work
                .get_mut(range.clone())
                .ok_or(Error::Malformed("sample"))?;
            sample::apply(key, iv, sample, &subsamples)?;
            spans.push(range.clone());
        }
        if at != senc.len() {
            return Err(Error::Malformed("senc longer than its samples"));
        }
        traf.children_mut()
            .ok_or(Error::Malformed("traf"))?
            .retain(|b| !matches!(&b.kind, b"senc" | b"saiz" | b"saio"));
    }
    shift_runs(&mut out, moof.len(), offset)?;
    Ok(out)
}

/// Moves every run's data offset by what `moof` grew (or shrank) from `old_len`: the samples
/// follow it in the file.
fn shift_runs(moof: &mut Mp4Box, old_len: u64, _offset: u64) -> Result<(), Error> {
    let delta = i64::try_from(moof.len()).map_err(|_| Error::Malformed("moof"))?
        - i64::try_from(old_len).map_err(|_| Error::Malformed("moof"))?;
    for traf in moof.children_of_mut(b"traf")? {
        for trun in traf.children_of_mut(b"trun")? {
            let crate::boxes::Body::Raw(payload) = &mut trun.body else {
                return Err(Error::Malformed("trun"));
            };
            // Version and flags (4), sample count (4), then the data offset (flag 0x1).
            let old = i32::from_be_bytes(array(payload, 8)?);
            let new = i32::try_from(i64::from(old) + delta)
                .map_err(|_| Error::Malformed("data offset"))?;
            if let Some(slot) = payload.get_mut(8..12) {
                slot.copy_from_slice(&new.to_be_bytes());
            }
        }
    }
    Ok(())
}

/// Points each `saio` at its fragment's `senc` sample data, relative to the `moof`'s start.
fn point_saio(moof: &mut Mp4Box) -> Result<(), Error> {
    let mut at = moof.len() - moof.children().iter().map(Mp4Box::len).sum::<u64>();
    for traf in moof.children_mut().ok_or(Error::Malformed("moof"))? {
        let start = at;
        at += traf.len();
        if &traf.kind != b"traf" {
            continue;
        }
        // The traf's header: 8 bytes, or 16 with a 64-bit size.
        let mut child_at =
            start + traf.len() - traf.children().iter().map(Mp4Box::len).sum::<u64>();
        let mut senc_data = None;
        for child in traf.children() {
            if &child.kind == b"senc" {
                // Header (8), version and flags (4), sample count (4).
                senc_data = Some(child_at + 16);
            }
            child_at += child.len();
        }
        let senc_data = u32::try_from(senc_data.ok_or(Error::Malformed("traf without senc"))?)
            .map_err(|_| Error::Unsupported("a moof of 4 GiB"))?;
        if let Some(saio) = traf.child_mut(b"saio")
            && let crate::boxes::Body::Raw(payload) = &mut saio.body
            && let Some(slot) = payload.get_mut(8..12)
        {
            // Version 0 and flags 0 (4), one entry (4), its offset (4).
            slot.copy_from_slice(&senc_data.to_be_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A track fragment of `count` samples inheriting a default size of `size` bytes.
    fn traf(count: u32, size: u32) -> Mp4Box {
        let tfhd = mp4_atom::Tfhd {
            track_id: 1,
            default_sample_size: Some(size),
            default_base_is_moof: true,
            ..Default::default()
        };
        let trun = mp4_atom::Trun {
            data_offset: Some(100),
            samples: mp4_atom::TrunSamples::Inherited {
                count,
                first_flags: None,
            },
        };
        Mp4Box::container(
            b"traf",
            Vec::new(),
            vec![
                raw_of(b"tfhd", &tfhd).unwrap_or_else(|e| panic!("{e}")),
                raw_of(b"trun", &trun).unwrap_or_else(|e| panic!("{e}")),
            ],
        )
    }

    #[test]
    fn a_small_box_cannot_claim_billions_of_samples() {
        let tracks = [Track {
            id: 1,
            entries: vec![Protection::Audio],
            trex: None,
        }];
        let data = 100..1100;
        // Four billion samples of no bytes, or of one byte in 1000 bytes of data: refused at
        // once, not counted.
        for (count, size) in [(u32::MAX, 0), (u32::MAX, 1), (1, 0), (1001, 1)] {
            let mut budget = data.len();
            let result = samples(&traf(count, size), 0, &tracks, &data, &mut budget);
            assert!(
                matches!(result, Err(Error::Malformed(_))),
                "{count} of {size}"
            );
        }
        // A thousand samples of one byte fit.
        let mut budget = data.len();
        let fits = samples(&traf(1000, 1), 0, &tracks, &data, &mut budget);
        assert!(fits.is_ok_and(|s| s.ranges.len() == 1000));
    }
}
