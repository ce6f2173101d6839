//! A bounds-checked reader over untrusted bytes, shared by every treecast decoder.
//!
//! ```
//! use treecast_keytree::codec::Reader;
//! use treecast_keytree::DecodeError;
//! let mut r = Reader::new(&[0, 7, 1]);
//! assert_eq!(r.u16("count"), Ok(7));
//! assert_eq!(r.u16("flags"), Err(DecodeError::MissingData("flags")));
//! ```

use crate::error::DecodeError;

/// Reads fields off the front of a byte slice; every read is checked and names its field.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    /// [`DecodeError::MissingData`] naming `what` when fewer remain.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let (head, rest) = self
            .buf
            .split_at_checked(n)
            .ok_or(DecodeError::MissingData(what))?;
        self.buf = rest;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    ///
    /// # Errors
    /// [`DecodeError::MissingData`] naming `what` when fewer remain.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(DecodeError::MissingData(what))?;
        self.buf = rest;
        Ok(*head)
    }

    /// The next byte.
    ///
    /// # Errors
    /// [`DecodeError::MissingData`] naming `what` at the end of input.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.array::<1>(what).map(|[b]| b)
    }

    /// The next big-endian `u16`.
    ///
    /// # Errors
    /// [`DecodeError::MissingData`] naming `what` when fewer than 2 bytes remain.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.array(what).map(u16::from_be_bytes)
    }

    /// The next big-endian `u32`.
    ///
    /// # Errors
    /// [`DecodeError::MissingData`] naming `what` when fewer than 4 bytes remain.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
    }

    /// The next big-endian `u64`.
    ///
    /// # Errors
    /// [`DecodeError::MissingData`] naming `what` when fewer than 8 bytes remain.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.array(what).map(u64::from_be_bytes)
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Ends the read: anything left over is an error.
    ///
    /// # Errors
    /// [`DecodeError::TrailingData`] with the number of bytes left.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingData(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let mut r = Reader::new(&[0, 1, 2, 3, 4]);
        assert_eq!(r.u16("a"), Ok(1));
        assert_eq!(r.u32("b"), Err(DecodeError::MissingData("b")));
        assert_eq!(r.take(2, "c"), Ok(&[2u8, 3][..]));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.finish(), Err(DecodeError::TrailingData(1)));
    }
}
