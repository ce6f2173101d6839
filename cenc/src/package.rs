//! Whole files: the movie box, then each fragment and the data it points into, then the
//! fragment random access box (`mfra`, whose offsets of each `moof` are moved with them).

use core::ops::Range;

use rand_core::CryptoRng;

use crate::boxes::{Located, Mp4Box, array, parse_file};
use crate::{CencKey, Error, KeyId, fragment, track};

/// The largest file handled: 4 GiB (a file is held in memory while it is packaged).
pub const MAX_FILE: usize = 4 << 30;

/// Encrypts the clear fragmented MP4 `clear` under `key`, naming `kid` (see the crate's
/// documentation). Every sample's IV is a counter from a random start drawn from `rng`, so
/// that no two samples share a keystream.
///
/// # Errors
/// [`Error::Malformed`] for a file that is not a fragmented MP4; [`Error::Unsupported`] for
/// another codec than H.264 and AAC, a segment index (`sidx`), or fragments whose sample
/// offsets are not relative to their `moof`; [`Error::WrongState`] for a file protected
/// already.
pub fn encrypt(
    clear: &[u8],
    key: &CencKey,
    kid: KeyId,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, Error> {
    let boxes = read(clear)?;
    let mut moov = moov(&boxes)?.clone();
    let tracks = track::clear_tracks(&moov)?;
    track::protect(&mut moov, kid)?;
    let mut iv = rng.next_u64();
    let mut work = clear.to_vec();
    let mut spans = Vec::new();
    let mut moofs = Vec::new();
    for (b, data) in fragments(&boxes)? {
        moofs.push(fragment::protect(
            &b.mp4, b.offset, data, &tracks, key, &mut iv, &mut work, &mut spans,
        )?);
    }
    write(&boxes, moov, moofs, &work, &spans)
}

/// Decrypts a file [`encrypt`] made (or another `cenc` file of 8- or 16-byte IVs whose sample
/// information is in `senc`) under `key`: the clear file again, byte for byte. A wrong key
/// gives garbage samples, not an error: check the key ID first ([`key_id`]).
///
/// # Errors
/// As [`encrypt`]; [`Error::WrongState`] for a file that is not protected.
pub fn decrypt(protected: &[u8], key: &CencKey) -> Result<Vec<u8>, Error> {
    let boxes = read(protected)?;
    let mut moov = moov(&boxes)?.clone();
    let tracks = track::protected_tracks(&moov)?;
    let tenc = track::unprotect(&mut moov)?;
    let mut work = protected.to_vec();
    let mut spans = Vec::new();
    let mut moofs = Vec::new();
    for (b, data) in fragments(&boxes)? {
        moofs.push(fragment::unprotect(
            &b.mp4, b.offset, data, &tracks, tenc, key, &mut work, &mut spans,
        )?);
    }
    write(&boxes, moov, moofs, &work, &spans)
}

/// The key ID a protected file names (its `tenc`).
///
/// # Errors
/// [`Error::Malformed`]; [`Error::WrongState`] for a clear file.
pub fn key_id(protected: &[u8]) -> Result<KeyId, Error> {
    let boxes = read(protected)?;
    track::key_id(moov(&boxes)?)
}

fn read(file: &[u8]) -> Result<Vec<Located>, Error> {
    if file.len() > MAX_FILE {
        return Err(Error::Unsupported("a file larger than 4 GiB"));
    }
    let boxes = parse_file(file)?;
    if boxes.first().map(|b| &b.mp4.kind) != Some(b"ftyp") {
        return Err(Error::Malformed("an MP4 file starts with ftyp"));
    }
    if boxes
        .iter()
        .any(|b| matches!(&b.mp4.kind, b"sidx" | b"ssix"))
    {
        return Err(Error::Unsupported(
            "a segment index (sidx): its sizes would change",
        ));
    }
    if boxes.iter().filter(|b| &b.mp4.kind == b"moov").count() != 1 {
        return Err(Error::Malformed("a file has one moov"));
    }
    if !boxes.iter().any(|b| &b.mp4.kind == b"moof") {
        return Err(Error::Unsupported(
            "a file that is not fragmented (ffmpeg: -movflags frag_keyframe+empty_moov+default_base_moof)",
        ));
    }
    Ok(boxes)
}

/// Each fragment and the payload of the `mdat` that follows it, where its samples must be: a
/// sample anywhere else would move by what other boxes grew, which its run's offset does not
/// say.
fn fragments(boxes: &[Located]) -> Result<Vec<(&Located, Range<usize>)>, Error> {
    let mut out = Vec::new();
    for (i, b) in boxes.iter().enumerate() {
        if &b.mp4.kind != b"moof" {
            continue;
        }
        let mdat =
            boxes
                .get(i + 1)
                .filter(|m| &m.mp4.kind == b"mdat")
                .ok_or(Error::Unsupported(
                    "a fragment not followed by its mdat (ffmpeg writes one after each moof)",
                ))?;
        let payload = mdat.mp4.payload().ok_or(Error::Malformed("mdat"))?.len();
        let end =
            usize::try_from(mdat.offset + mdat.mp4.len()).map_err(|_| Error::Malformed("mdat"))?;
        out.push((b, end - payload..end));
    }
    Ok(out)
}

fn moov(boxes: &[Located]) -> Result<&Mp4Box, Error> {
    boxes
        .iter()
        .map(|b| &b.mp4)
        .find(|b| &b.kind == b"moov")
        .ok_or(Error::Malformed("no moov"))
}

/// The new file: every top-level box as it was (from `work`, where the samples were changed),
/// but the new `moov` and `moof`s, and an `mfra` whose `moof` offsets follow them. Checks that
/// every sample is inside an `mdat` and that no two overlap.
fn write(
    boxes: &[Located],
    moov: Mp4Box,
    moofs: Vec<Mp4Box>,
    work: &[u8],
    spans: &[Range<usize>],
) -> Result<Vec<u8>, Error> {
    check_spans(spans)?;
    let mut moofs = moofs.into_iter();
    let mut moved: Vec<(u64, u64)> = Vec::new();
    let mut out = Vec::with_capacity(work.len() + work.len() / 8 + 4096);
    let mut moov = Some(moov);
    for (i, b) in boxes.iter().enumerate() {
        let at = out.len() as u64;
        match &b.mp4.kind {
            b"moov" => moov
                .take()
                .ok_or(Error::Malformed("moov"))?
                .encode(&mut out),
            b"moof" => {
                moved.push((b.offset, at));
                moofs
                    .next()
                    .ok_or(Error::Malformed("moof"))?
                    .encode(&mut out);
            }
            b"mfra" => mfra(&b.mp4, &moved)?.encode(&mut out),
            _ => {
                let end = boxes.get(i + 1).map_or(work.len() as u64, |n| n.offset);
                let bytes = usize::try_from(b.offset)
                    .ok()
                    .zip(usize::try_from(end).ok())
                    .and_then(|(s, e)| work.get(s..e))
                    .ok_or(Error::Malformed("box"))?;
                out.extend_from_slice(bytes);
            }
        }
    }
    Ok(out)
}

/// No two samples overlapping (each is inside its fragment's `mdat` already).
fn check_spans(spans: &[Range<usize>]) -> Result<(), Error> {
    let mut sorted: Vec<&Range<usize>> = spans.iter().collect();
    sorted.sort_by_key(|r| r.start);
    for pair in sorted.windows(2) {
        if let [a, b] = pair
            && a.end > b.start
        {
            return Err(Error::Malformed("two samples overlap"));
        }
    }
    Ok(())
}

/// `mfra` with every `moof` offset of its `tfra` boxes moved as `moved` says (old offset, new
/// offset), in place: the rest of the box stays byte for byte.
fn mfra(old: &Mp4Box, moved: &[(u64, u64)]) -> Result<Mp4Box, Error> {
    let mut mfra = old.clone();
    for tfra in mfra.children_mut().ok_or(Error::Malformed("mfra"))? {
        if &tfra.kind != b"tfra" {
            continue;
        }
        let crate::boxes::Body::Raw(p) = &mut tfra.body else {
            return Err(Error::Malformed("tfra"));
        };
        // Version and flags (4), track ID (4), the sizes of three numbers (4), the count (4).
        let wide = p.first() == Some(&1);
        let sizes = u32::from_be_bytes(array(p, 8)?);
        let numbers: usize = [4, 2, 0]
            .iter()
            .map(|s| ((sizes >> s) & 3) as usize + 1)
            .sum();
        let count = u32::from_be_bytes(array(p, 12)?) as usize;
        let field = if wide { 8 } else { 4 };
        let entry = 2 * field + numbers;
        if p.len() != 16 + count.checked_mul(entry).ok_or(Error::Malformed("tfra"))? {
            return Err(Error::Malformed("tfra"));
        }
        for i in 0..count {
            let at = 16 + i * entry + field;
            let slot = p.get_mut(at..at + field).ok_or(Error::Malformed("tfra"))?;
            let old = if wide {
                u64::from_be_bytes(array(slot, 0)?)
            } else {
                u64::from(u32::from_be_bytes(array(slot, 0)?))
            };
            let new = moved
                .binary_search_by_key(&old, |(from, _)| *from)
                .ok()
                .and_then(|at| moved.get(at))
                .map(|(_, to)| *to)
                .ok_or(Error::Malformed("mfra names no moof"))?;
            if wide {
                slot.copy_from_slice(&new.to_be_bytes());
            } else {
                let new = u32::try_from(new).map_err(|_| Error::Malformed("tfra offset"))?;
                slot.copy_from_slice(&new.to_be_bytes());
            }
        }
    }
    Ok(mfra)
}
