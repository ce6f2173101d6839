//! The ISO BMFF box tree, as far as packaging needs it: every box is kept byte for byte, and
//! only the containers on the way to what is changed are opened (`moov`, `trak`, `mdia`,
//! `minf`, `stbl`, `stsd` and its sample entries, `sinf`, `schi`, `mvex`, `moof`, `traf`).
//! A box's size is checked against its parent's bounds before anything in it is read.

use crate::Error;

/// One box: its type, the bytes between its header and its children (a full box's version and
/// flags, a sample entry's fixed fields, `stsd`'s entry count), and either children or, for a
/// box not opened, its whole payload.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Mp4Box {
    pub(crate) kind: [u8; 4],
    pub(crate) head: Vec<u8>,
    pub(crate) body: Body,
    /// Whether its size is written in 64 bits (as it was read, or because it must be).
    pub(crate) large: bool,
}

/// What follows a box's head.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum Body {
    /// Boxes.
    Children(Vec<Mp4Box>),
    /// Bytes, kept as they are.
    Raw(Vec<u8>),
}

/// The most boxes a file may have (a few per fragment in practice): each costs more in memory
/// than its 8 bytes of header.
const MAX_BOXES: usize = 1 << 20;

/// How deep containers nest at most: `moov/trak/mdia/minf/stbl/stsd/encv/sinf/schi/tenc`.
const MAX_DEPTH: usize = 12;

/// The fixed fields of a visual sample entry (ISO/IEC 14496-12, 12.1.3) before its boxes.
pub(crate) const VISUAL_ENTRY_HEAD: usize = 78;
/// The fixed fields of a version-0 audio sample entry (12.2.3) before its boxes.
pub(crate) const AUDIO_ENTRY_HEAD: usize = 28;

impl Mp4Box {
    /// A box of raw bytes.
    pub(crate) fn raw(kind: &[u8; 4], payload: Vec<u8>) -> Self {
        Self {
            kind: *kind,
            head: Vec::new(),
            body: Body::Raw(payload),
            large: false,
        }
    }

    /// A container of `children` after `head`.
    pub(crate) fn container(kind: &[u8; 4], head: Vec<u8>, children: Vec<Mp4Box>) -> Self {
        Self {
            kind: *kind,
            head,
            body: Body::Children(children),
            large: false,
        }
    }

    /// The children (none for a raw box).
    pub(crate) fn children(&self) -> &[Mp4Box] {
        match &self.body {
            Body::Children(c) => c,
            Body::Raw(_) => &[],
        }
    }

    /// The children, to change.
    pub(crate) fn children_mut(&mut self) -> Option<&mut Vec<Mp4Box>> {
        match &mut self.body {
            Body::Children(c) => Some(c),
            Body::Raw(_) => None,
        }
    }

    /// The raw payload (none for a container).
    pub(crate) fn payload(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Raw(p) => Some(p),
            Body::Children(_) => None,
        }
    }

    /// The children of type `kind`, to change.
    ///
    /// # Errors
    /// [`Error::Malformed`] naming this box when it is not a container.
    pub(crate) fn children_of_mut<'a>(
        &'a mut self,
        kind: &'a [u8; 4],
    ) -> Result<impl Iterator<Item = &'a mut Mp4Box>, Error> {
        Ok(self
            .children_mut()
            .ok_or(Error::Malformed("a container read as bytes"))?
            .iter_mut()
            .filter(move |b| &b.kind == kind))
    }

    /// The first child of type `kind`.
    pub(crate) fn child(&self, kind: &[u8; 4]) -> Option<&Mp4Box> {
        self.children().iter().find(|b| &b.kind == kind)
    }

    /// The first child of type `kind`, to change.
    pub(crate) fn child_mut(&mut self, kind: &[u8; 4]) -> Option<&mut Mp4Box> {
        self.children_mut()?.iter_mut().find(|b| &b.kind == kind)
    }

    /// The box at `path` below this one (each step the first child of that type).
    pub(crate) fn find(&self, path: &[&[u8; 4]]) -> Option<&Mp4Box> {
        path.iter().try_fold(self, |b, kind| b.child(kind))
    }

    /// The encoded length.
    pub(crate) fn len(&self) -> u64 {
        let inner = self.inner_len();
        if self.large || inner + 8 > u64::from(u32::MAX) {
            inner + 16
        } else {
            inner + 8
        }
    }

    /// Appends the encoding (a 64-bit size only where 32 bits do not hold it).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let len = self.len();
        match u32::try_from(len) {
            Ok(small) if len == self.inner_len() + 8 => {
                out.extend_from_slice(&small.to_be_bytes());
                out.extend_from_slice(&self.kind);
            }
            _ => {
                out.extend_from_slice(&1u32.to_be_bytes());
                out.extend_from_slice(&self.kind);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.head);
        match &self.body {
            Body::Raw(p) => out.extend_from_slice(p),
            Body::Children(c) => c.iter().for_each(|b| b.encode(out)),
        }
    }

    fn inner_len(&self) -> u64 {
        self.head.len() as u64
            + match &self.body {
                Body::Raw(p) => p.len() as u64,
                Body::Children(c) => c.iter().map(Mp4Box::len).sum(),
            }
    }
}

/// A box as found in a file: the box and where it starts.
pub(crate) struct Located {
    pub(crate) offset: u64,
    pub(crate) mp4: Mp4Box,
}

/// The top-level boxes of `file`.
///
/// # Errors
/// [`Error::Malformed`] for a box that does not fit where it is.
pub(crate) fn parse_file(file: &[u8]) -> Result<Vec<Located>, Error> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut budget = MAX_BOXES;
    while at < file.len() {
        let rest = file.get(at..).ok_or(Error::Malformed("box offset"))?;
        let (mp4, len) = parse_one(rest, 0, &mut budget)?;
        out.push(Located {
            offset: at as u64,
            mp4,
        });
        at = at.checked_add(len).ok_or(Error::Malformed("box size"))?;
    }
    Ok(out)
}

/// Reads one box from the start of `bytes`; returns it and its length.
fn parse_one(bytes: &[u8], depth: usize, budget: &mut usize) -> Result<(Mp4Box, usize), Error> {
    *budget = budget
        .checked_sub(1)
        .ok_or(Error::Unsupported("more than a million boxes"))?;
    let size = u32::from_be_bytes(array(bytes, 0)?);
    let kind: [u8; 4] = array(bytes, 4)?;
    let (len, header) = match size {
        // "To the end of the file": only the last box of a file, and never one that is
        // written again (its length would then be written).
        0 if depth == 0 && !matches!(&kind, b"moov" | b"moof" | b"mfra") => (bytes.len(), 8),
        0 => return Err(Error::Malformed("a box of size 0 where it cannot be")),
        1 => {
            let large = u64::from_be_bytes(array(bytes, 8)?);
            (
                usize::try_from(large).map_err(|_| Error::Malformed("box size"))?,
                16,
            )
        }
        n => (n as usize, 8),
    };
    if len < header || len > bytes.len() {
        return Err(Error::Malformed("box size"));
    }
    let payload = bytes.get(header..len).ok_or(Error::Malformed("box size"))?;
    let head_len = match &kind {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" | b"mvex" | b"moof" | b"traf" | b"sinf"
        | b"schi" | b"mfra" => Some(0),
        b"stsd" => Some(8),
        b"avc1" | b"avc3" | b"encv" => Some(VISUAL_ENTRY_HEAD),
        b"mp4a" | b"enca" => Some(AUDIO_ENTRY_HEAD),
        _ => None,
    };
    let mp4 = match head_len {
        Some(head_len) if depth < MAX_DEPTH => {
            let head = payload
                .get(..head_len)
                .ok_or(Error::Malformed("box head"))?
                .to_vec();
            let mut children = Vec::new();
            let mut at = head_len;
            while at < payload.len() {
                let rest = payload.get(at..).ok_or(Error::Malformed("box offset"))?;
                let (child, child_len) = parse_one(rest, depth + 1, budget)?;
                children.push(child);
                at += child_len;
            }
            Mp4Box::container(&kind, head, children)
        }
        _ => Mp4Box::raw(&kind, payload.to_vec()),
    };
    Ok((
        Mp4Box {
            large: header == 16,
            ..mp4
        },
        len,
    ))
}

/// `N` bytes of `bytes` at `at`.
pub(crate) fn array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], Error> {
    bytes
        .get(at..at.saturating_add(N))
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::Malformed("truncated box"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_encodes_to_the_bytes_it_was_read_from() {
        let tenc = Mp4Box::raw(b"tenc", vec![0; 24]);
        let schi = Mp4Box::container(b"schi", Vec::new(), vec![tenc]);
        let moov = Mp4Box::container(
            b"moov",
            Vec::new(),
            vec![
                Mp4Box::raw(b"mvhd", vec![7; 100]),
                Mp4Box::container(b"sinf", Vec::new(), vec![schi]),
            ],
        );
        let mut bytes = Vec::new();
        moov.encode(&mut bytes);
        assert_eq!(bytes.len() as u64, moov.len());
        let read = parse_file(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.len(), 1);
        assert!(read.first().is_some_and(|l| l.mp4 == moov));
        // Every truncation is an error, never a panic.
        for n in 1..bytes.len() {
            assert!(parse_file(bytes.get(..n).unwrap_or_default()).is_err());
        }
    }
}
