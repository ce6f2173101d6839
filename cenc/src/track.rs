//! The movie box: each track's sample entries, which encryption turns into `encv`/`enca`
//! with a `sinf` (ISO/IEC 23001-7, 8.1 and 8.2: `frma`, `schm` of scheme `cenc`, `schi` with
//! `tenc`) and decryption turns back, and the ClearKey `pssh`.

use mp4_atom::Decode;

use crate::boxes::{Mp4Box, array};
use crate::{CLEARKEY_SYSTEM_ID, Error, KeyId};

/// How a track's samples are protected.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Protection {
    /// H.264 with NAL units of this length prefix: by subsample, headers clear.
    Video { length_size: usize },
    /// Whole samples (AAC).
    Audio,
}

/// What a fragment needs of its track: its protection by sample description (1-based) and its
/// `trex` defaults.
#[derive(Clone, Debug)]
pub(crate) struct Track {
    pub(crate) id: u32,
    pub(crate) entries: Vec<Protection>,
    pub(crate) trex: Option<mp4_atom::Trex>,
}

/// The scheme `cenc`, version 1.0.
const SCHEME: [u8; 4] = *b"cenc";
const SCHEME_VERSION: u32 = 0x0001_0000;
/// The IV size this packager writes (`tenc`'s `default_Per_Sample_IV_Size`).
pub(crate) const IV_SIZE: u8 = 8;

/// The protection settings a protected file's `tenc` boxes give: its key ID and IV size (one
/// key for the whole file).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Tenc {
    pub(crate) kid: KeyId,
    pub(crate) iv_size: u8,
}

/// The tracks of `moov`, as they are to be encrypted (clear sample entries).
///
/// # Errors
/// [`Error::WrongState`] for a protected entry; [`Error::Unsupported`] for another codec.
pub(crate) fn clear_tracks(moov: &Mp4Box) -> Result<Vec<Track>, Error> {
    // What decryption removes must not be there before: the file would not come back.
    if moov.child(b"pssh").is_some() {
        return Err(Error::WrongState("the file has a pssh: protected already"));
    }
    tracks(moov, |entry| {
        if entry.child(b"sinf").is_some() {
            return Err(Error::WrongState(
                "a sample entry has a sinf: protected already",
            ));
        }
        clear_entry(entry)
    })
}

fn clear_entry(entry: &Mp4Box) -> Result<Protection, Error> {
    match &entry.kind {
        b"avc1" | b"avc3" => Ok(Protection::Video {
            length_size: avc_length_size(entry)?,
        }),
        b"mp4a" => {
            if entry.head.get(8..10) != Some(&[0, 0]) {
                return Err(Error::Unsupported(
                    "an audio sample entry of version 1 or 2",
                ));
            }
            Ok(Protection::Audio)
        }
        b"encv" | b"enca" => Err(Error::WrongState("the file is protected already")),
        _ => Err(Error::Unsupported(
            "a track of another codec than H.264 (avc1) and AAC (mp4a)",
        )),
    }
}

/// The tracks of a protected `moov`.
///
/// # Errors
/// [`Error::WrongState`] for a clear entry; [`Error::Unsupported`] for another scheme.
pub(crate) fn protected_tracks(moov: &Mp4Box) -> Result<Vec<Track>, Error> {
    tracks(moov, |entry| {
        let original = original_format(entry)?;
        match (&entry.kind, &original) {
            (b"encv", b"avc1" | b"avc3") => Ok(Protection::Video {
                length_size: avc_length_size(entry)?,
            }),
            (b"enca", b"mp4a") => Ok(Protection::Audio),
            _ => Err(Error::Unsupported("a protected track of another codec")),
        }
    })
}

fn tracks(
    moov: &Mp4Box,
    entry: impl Fn(&Mp4Box) -> Result<Protection, Error>,
) -> Result<Vec<Track>, Error> {
    let trexes = moov
        .child(b"mvex")
        .map(|mvex| {
            mvex.children()
                .iter()
                .filter(|b| &b.kind == b"trex")
                .map(|b| {
                    let mut bytes = Vec::new();
                    b.encode(&mut bytes);
                    Ok(mp4_atom::Trex::decode(&mut bytes.as_slice())?)
                })
                .collect::<Result<Vec<_>, Error>>()
        })
        .transpose()?
        .unwrap_or_default();
    let mut out = Vec::new();
    for trak in moov.children().iter().filter(|b| &b.kind == b"trak") {
        let tkhd = trak
            .child(b"tkhd")
            .and_then(Mp4Box::payload)
            .ok_or(Error::Malformed("a track without tkhd"))?;
        let id = u32::from_be_bytes(match tkhd.first() {
            Some(1) => array(tkhd, 20)?,
            _ => array(tkhd, 12)?,
        });
        let stsd = trak
            .find(&[b"mdia", b"minf", b"stbl", b"stsd"])
            .ok_or(Error::Malformed("a track without stsd"))?;
        // Samples listed in moov would stay clear (and their offsets move): fragments only.
        if let Some(stsz) = trak
            .find(&[b"mdia", b"minf", b"stbl", b"stsz"])
            .and_then(Mp4Box::payload)
            && u32::from_be_bytes(array(stsz, 8)?) != 0
        {
            return Err(Error::Unsupported(
                "samples in moov (ffmpeg: -movflags +empty_moov)",
            ));
        }
        let entries = stsd
            .children()
            .iter()
            .map(&entry)
            .collect::<Result<Vec<_>, Error>>()?;
        if entries.is_empty() {
            return Err(Error::Malformed("a track without sample entries"));
        }
        let trex = trexes.iter().find(|t| t.track_id == id).cloned();
        out.push(Track { id, entries, trex });
    }
    if out.is_empty() {
        return Err(Error::Malformed("no track"));
    }
    Ok(out)
}

/// The NAL unit length size of an AVC sample entry (its `avcC`'s `lengthSizeMinusOne` + 1).
fn avc_length_size(entry: &Mp4Box) -> Result<usize, Error> {
    let avcc = entry
        .child(b"avcC")
        .and_then(Mp4Box::payload)
        .ok_or(Error::Malformed("an AVC sample entry without avcC"))?;
    let byte = avcc.get(4).ok_or(Error::Malformed("avcC"))?;
    match byte & 0x03 {
        2 => Err(Error::Malformed("a NAL unit length of 3 bytes")),
        n => Ok(usize::from(n) + 1),
    }
}

/// A protected entry's original format, from its `sinf`'s `frma`, after checking the scheme.
fn original_format(entry: &Mp4Box) -> Result<[u8; 4], Error> {
    let sinf = entry
        .child(b"sinf")
        .ok_or(Error::WrongState("the file is not protected (no sinf)"))?;
    let schm = sinf
        .child(b"schm")
        .and_then(Mp4Box::payload)
        .ok_or(Error::Malformed("sinf without schm"))?;
    if array::<4>(schm, 4)? != SCHEME {
        return Err(Error::Unsupported("a scheme other than cenc"));
    }
    let frma = sinf
        .child(b"frma")
        .and_then(Mp4Box::payload)
        .ok_or(Error::Malformed("sinf without frma"))?;
    array(frma, 0)
}

/// Turns every sample entry of `moov` into its protected form naming `kid`, and adds the
/// ClearKey `pssh`.
pub(crate) fn protect(moov: &mut Mp4Box, kid: KeyId) -> Result<(), Error> {
    for_each_entry(moov, |entry| {
        let original = entry.kind;
        entry.kind = match &original {
            b"mp4a" => *b"enca",
            _ => *b"encv",
        };
        entry
            .children_mut()
            .ok_or(Error::Malformed("sample entry"))?
            .push(sinf(original, kid));
        Ok(())
    })?;
    moov.children_mut()
        .ok_or(Error::Malformed("moov"))?
        .push(pssh(kid));
    Ok(())
}

/// Turns every protected sample entry back and removes the `pssh` boxes; returns what the
/// `tenc` boxes say (one key ID for the file).
pub(crate) fn unprotect(moov: &mut Mp4Box) -> Result<Tenc, Error> {
    let mut found: Option<Tenc> = None;
    for_each_entry(moov, |entry| {
        let original = original_format(entry)?;
        let tenc = read_tenc(entry)?;
        if found.is_some_and(|f| f != tenc) {
            return Err(Error::Unsupported("tracks under different keys"));
        }
        found = Some(tenc);
        entry.kind = original;
        entry
            .children_mut()
            .ok_or(Error::Malformed("sample entry"))?
            .retain(|b| &b.kind != b"sinf");
        Ok(())
    })?;
    moov.children_mut()
        .ok_or(Error::Malformed("moov"))?
        .retain(|b| &b.kind != b"pssh");
    found.ok_or(Error::WrongState("the file is not protected"))
}

/// The key ID and IV size of a protected sample entry.
fn read_tenc(entry: &Mp4Box) -> Result<Tenc, Error> {
    let tenc = entry
        .find(&[b"sinf", b"schi", b"tenc"])
        .and_then(Mp4Box::payload)
        .ok_or(Error::Malformed("sinf without tenc"))?;
    if tenc.get(6) != Some(&1) {
        return Err(Error::Unsupported("a track marked not protected"));
    }
    let iv_size = *tenc.get(7).ok_or(Error::Malformed("tenc"))?;
    if iv_size != 8 && iv_size != 16 {
        return Err(Error::Unsupported(
            "a constant IV or an IV size other than 8 or 16",
        ));
    }
    Ok(Tenc {
        kid: KeyId(array(tenc, 8)?),
        iv_size,
    })
}

/// The key ID of the first protected sample entry of `moov`.
pub(crate) fn key_id(moov: &Mp4Box) -> Result<KeyId, Error> {
    let mut found = None;
    for trak in moov.children().iter().filter(|b| &b.kind == b"trak") {
        if let Some(stsd) = trak.find(&[b"mdia", b"minf", b"stbl", b"stsd"])
            && let Some(entry) = stsd.children().first()
            && found.is_none()
        {
            if !matches!(&entry.kind, b"encv" | b"enca") {
                return Err(Error::WrongState("the file is not protected"));
            }
            found = Some(read_tenc(entry)?.kid);
        }
    }
    found.ok_or(Error::WrongState("the file is not protected"))
}

fn for_each_entry(
    moov: &mut Mp4Box,
    mut f: impl FnMut(&mut Mp4Box) -> Result<(), Error>,
) -> Result<(), Error> {
    for trak in moov
        .children_mut()
        .ok_or(Error::Malformed("moov"))?
        .iter_mut()
        .filter(|b| &b.kind == b"trak")
    {
        let stsd = trak
            .child_mut(b"mdia")
            .and_then(|b| b.child_mut(b"minf"))
            .and_then(|b| b.child_mut(b"stbl"))
            .and_then(|b| b.child_mut(b"stsd"))
            .ok_or(Error::Malformed("a track without stsd"))?;
        for entry in stsd.children_mut().ok_or(Error::Malformed("stsd"))? {
            f(entry)?;
        }
    }
    Ok(())
}

/// `sinf`: the original format, the scheme, and `tenc` (version 0: protected, 8-byte IVs,
/// the key ID).
fn sinf(original: [u8; 4], kid: KeyId) -> Mp4Box {
    let mut schm = vec![0, 0, 0, 0];
    schm.extend_from_slice(&SCHEME);
    schm.extend_from_slice(&SCHEME_VERSION.to_be_bytes());
    let mut tenc = vec![0, 0, 0, 0, 0, 0, 1, IV_SIZE];
    tenc.extend_from_slice(&kid.0);
    Mp4Box::container(
        b"sinf",
        Vec::new(),
        vec![
            Mp4Box::raw(b"frma", original.to_vec()),
            Mp4Box::raw(b"schm", schm),
            Mp4Box::container(b"schi", Vec::new(), vec![Mp4Box::raw(b"tenc", tenc)]),
        ],
    )
}

/// The ClearKey `pssh` (version 1: the key ID, no data), which makes the browser fire its
/// `encrypted` event with `keyids` init data.
fn pssh(kid: KeyId) -> Mp4Box {
    let mut payload = vec![1, 0, 0, 0];
    payload.extend_from_slice(&CLEARKEY_SYSTEM_ID);
    payload.extend_from_slice(&1u32.to_be_bytes());
    payload.extend_from_slice(&kid.0);
    payload.extend_from_slice(&0u32.to_be_bytes());
    Mp4Box::raw(b"pssh", payload)
}
