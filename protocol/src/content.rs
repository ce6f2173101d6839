//! Content packaging: authenticated encryption of a content stream, in chunks, so that content
//! of any size is packaged and played without holding it in memory.
//!
//! Construction (encrypt-then-MAC, per chunk): the content key gives, through HKDF-SHA-256, an
//! AES-128-CTR key and a 32-byte MAC key, both bound to the content ID and a random 16-byte
//! nonce. The stream is encrypted with AES-128-CTR (IV = the nonce); each chunk carries the tag
//! `BLAKE3-keyed(mac key, SHA-256(header) ‖ chunk index ‖ last-chunk flag ‖ ciphertext)`, compared
//! in constant time. The header is authenticated by every tag; the index stops reordering; the
//! flag stops truncation at a chunk boundary and extension. The byte layout is in
//! `docs/formats.md`; why BLAKE3 rather than HMAC-SHA-256 is in `docs/design.md`.
//!
//! ```
//! use treecast_protocol::content::{self, ContentKey};
//! use treecast_protocol::ContentId;
//! # fn main() -> Result<(), treecast_protocol::Error> {
//! // Seeded here for a reproducible example; a distributor seeds from the OS.
//! let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
//! let key = ContentKey::generate(&mut rng);
//! let movie = vec![7u8; 100_000];
//! let mut packaged = Vec::new();
//! let nonce = content::Nonce::generate(&mut rng);
//! content::package(ContentId(1), 1, 4096, &key, nonce, &movie[..], &mut packaged)?;
//! let mut played = Vec::new();
//! let header = content::open(&key, &packaged[..], &mut played)?;
//! assert_eq!((header.content_id, played), (ContentId(1), movie));
//! # Ok(()) }
//! # use rand_core::SeedableRng;
//! ```

use std::io::{BufRead, BufReader, Read, Write};

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use treecast_keytree::DecodeError;
use treecast_keytree::codec::Reader;
use zeroize::Zeroizing;

use crate::Error;
use crate::ids::ContentId;
use crate::kdf;

treecast_keytree::secret_type!(
    /// The key that encrypts one content item (AES-128). It never leaves the server except
    /// wrapped: under the current epoch key in the registry, under a client's binding key in a
    /// license.
    ContentKey,
    16
);

/// The header of a packaged content item.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct ContentHeader {
    /// The content.
    pub content_id: ContentId,
    /// The key epoch at packaging time.
    pub epoch: u64,
    /// The plaintext bytes per chunk (the last chunk may be shorter).
    pub chunk_size: u32,
    /// The package's random nonce (the CTR IV and part of the key derivation).
    pub nonce: [u8; 16],
}

impl ContentHeader {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut v = Vec::with_capacity(HEADER_LEN);
        v.extend_from_slice(&MAGIC);
        v.push(VERSION);
        v.extend_from_slice(&self.content_id.0.to_be_bytes());
        v.extend_from_slice(&self.epoch.to_be_bytes());
        v.extend_from_slice(&self.chunk_size.to_be_bytes());
        v.extend_from_slice(&self.nonce);
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(&v);
        out
    }

    /// Decodes and checks a header.
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong magic or version, or a chunk size that is not a power of two
    /// in `MIN_CHUNK..=MAX_CHUNK`.
    pub fn from_bytes(bytes: &[u8; HEADER_LEN]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.array::<4>("magic")? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let content_id = ContentId(r.u64("content id")?);
        let epoch = r.u64("epoch")?;
        let chunk_size = r.u32("chunk size")?;
        if !chunk_size.is_power_of_two() || !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return Err(DecodeError::InvalidValue("chunk size"));
        }
        let nonce = r.array::<16>("nonce")?;
        r.finish()?;
        Ok(Self {
            content_id,
            epoch,
            chunk_size,
            nonce,
        })
    }
}

/// A package's nonce: 16 bytes from a CSPRNG, used by exactly one [`package`] call. It is
/// neither `Clone` nor `Copy` and [`package`] consumes it, so the API offers no way to package
/// twice under one nonce.
pub struct Nonce([u8; 16]);

impl Nonce {
    /// A fresh nonce from `rng`.
    pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl core::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Nonce { .. }")
    }
}

/// Packages `input` as content `content_id` under `key`, writing the container to `output`.
/// `nonce` is consumed (see [`Nonce`]); `chunk_size` is a power of two in
/// `MIN_CHUNK..=MAX_CHUNK`.
///
/// # Errors
/// [`Error::Decode`] for a bad chunk size; [`Error::Io`] when reading or writing fails.
pub fn package(
    content_id: ContentId,
    epoch: u64,
    chunk_size: u32,
    key: &ContentKey,
    nonce: Nonce,
    input: impl Read,
    mut output: impl Write,
) -> Result<ContentHeader, Error> {
    let Nonce(nonce) = nonce;
    let header = ContentHeader {
        content_id,
        epoch,
        chunk_size,
        nonce,
    };
    let header_bytes = header.encode();
    ContentHeader::from_bytes(&header_bytes)?;
    let keys = ChunkKeys::derive(key, &header, &header_bytes)?;
    let mut cipher = keys.cipher(&nonce);
    output.write_all(&header_bytes)?;
    let size = chunk_size as usize;
    let mut input = BufReader::with_capacity(size, input);
    let mut chunk = Zeroizing::new(vec![0u8; size]);
    for index in 0u64.. {
        let n = read_full(&mut input, &mut chunk)?;
        let last = n < size || input.fill_buf()?.is_empty();
        let data = chunk.get_mut(..n).ok_or(Error::Internal("chunk length"))?;
        cipher.apply_keystream(data);
        output.write_all(data)?;
        output.write_all(&keys.tag(index, last, data))?;
        if last {
            break;
        }
    }
    output.flush()?;
    Ok(header)
}

/// Opens a container: checks every chunk's tag before writing its plaintext to `output`.
///
/// On an error, `output` may hold the verified chunks before the bad one; discard it.
///
/// # Errors
/// [`Error::Decode`] for a malformed header; [`Error::ContentCorrupt`] for any chunk that fails
/// authentication, a missing last chunk or data after it (including a wrong key);
/// [`Error::Io`] when reading or writing fails.
pub fn open(
    key: &ContentKey,
    input: impl Read,
    mut output: impl Write,
) -> Result<ContentHeader, Error> {
    let mut input = BufReader::new(input);
    let mut header_bytes = [0u8; HEADER_LEN];
    if read_full(&mut input, &mut header_bytes)? < HEADER_LEN {
        return Err(DecodeError::MissingData("content header").into());
    }
    let header = ContentHeader::from_bytes(&header_bytes)?;
    let keys = ChunkKeys::derive(key, &header, &header_bytes)?;
    let mut cipher = keys.cipher(&header.nonce);
    let size = header.chunk_size as usize + TAG_LEN;
    let mut chunk = vec![0u8; size];
    for index in 0u64.. {
        let n = read_full(&mut input, &mut chunk)?;
        let data_len = n.checked_sub(TAG_LEN).ok_or(Error::ContentCorrupt)?;
        let last = n < size || input.fill_buf()?.is_empty();
        let (data, tag) = chunk.split_at_mut(data_len);
        let tag = tag.get(..TAG_LEN).ok_or(Error::ContentCorrupt)?;
        keys.verify(index, last, data, tag)?;
        cipher.apply_keystream(data);
        output.write_all(data)?;
        data.fill(0);
        if last {
            break;
        }
    }
    output.flush()?;
    Ok(header)
}

/// Reads just the header of a container.
///
/// # Errors
/// [`DecodeError`] when `bytes` does not start with a valid header.
pub fn header(bytes: &[u8]) -> Result<ContentHeader, DecodeError> {
    let head = bytes
        .first_chunk::<HEADER_LEN>()
        .ok_or(DecodeError::MissingData("content header"))?;
    ContentHeader::from_bytes(head)
}

/// The per-package keys.
struct ChunkKeys {
    enc: Zeroizing<[u8; 16]>,
    mac: Zeroizing<[u8; 32]>,
    header_digest: [u8; 32],
}

impl ChunkKeys {
    fn derive(
        key: &ContentKey,
        header: &ContentHeader,
        header_bytes: &[u8],
    ) -> Result<Self, Error> {
        let id = header.content_id.0.to_be_bytes();
        Ok(Self {
            enc: kdf::expand(HKDF_SALT, key.secret_bytes(), &[b"enc", &id, &header.nonce])?,
            mac: kdf::expand(HKDF_SALT, key.secret_bytes(), &[b"mac", &id, &header.nonce])?,
            header_digest: Sha256::digest(header_bytes).into(),
        })
    }

    fn cipher(&self, nonce: &[u8; 16]) -> ctr::Ctr128BE<Aes128> {
        ctr::Ctr128BE::<Aes128>::new((&*self.enc).into(), nonce.into())
    }

    fn tag(&self, index: u64, last: bool, data: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = blake3::Hasher::new_keyed(&self.mac);
        mac.update(&self.header_digest);
        mac.update(&index.to_be_bytes());
        mac.update(&[u8::from(last)]);
        mac.update(data);
        *mac.finalize().as_bytes()
    }

    fn verify(&self, index: u64, last: bool, data: &[u8], tag: &[u8]) -> Result<(), Error> {
        if bool::from(self.tag(index, last, data).ct_eq(tag)) {
            Ok(())
        } else {
            Err(Error::ContentCorrupt)
        }
    }
}

/// Fills `buf` as far as the input allows; returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, Error> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match input.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

/// The magic label of a content container.
pub const MAGIC: [u8; 4] = *b"TCCT";
/// The container format version.
pub const VERSION: u8 = 1;
/// The header length.
pub const HEADER_LEN: usize = 4 + 1 + 8 + 8 + 4 + 16;
/// The tag length (keyed BLAKE3).
pub const TAG_LEN: usize = 32;
/// The smallest chunk size (1 KiB).
pub const MIN_CHUNK: u32 = 1 << 10;
/// The largest chunk size (16 MiB): also the most a reader allocates.
pub const MAX_CHUNK: u32 = 1 << 24;
/// The default chunk size (64 KiB).
pub const DEFAULT_CHUNK: u32 = 1 << 16;
const HKDF_SALT: &[u8] = b"treecast/v1/content";

#[cfg(test)]
mod tests {
    use super::*;

    fn test_nonce() -> Nonce {
        Nonce([1; 16])
    }

    fn packaged(len: usize, chunk: u32) -> (ContentKey, Vec<u8>, Vec<u8>) {
        let key = ContentKey::from_bytes([5; 16]);
        let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut out = Vec::new();
        package(
            ContentId(9),
            3,
            chunk,
            &key,
            test_nonce(),
            &plain[..],
            &mut out,
        )
        .unwrap();
        (key, plain, out)
    }

    #[test]
    fn round_trips_at_every_boundary() {
        for len in [0, 1, 1023, 1024, 1025, 2048, 5000] {
            let (key, plain, out) = packaged(len, 1024);
            let chunks = len.div_ceil(1024).max(1);
            assert_eq!(out.len(), HEADER_LEN + len + chunks * TAG_LEN);
            let mut back = Vec::new();
            let h = open(&key, &out[..], &mut back).unwrap();
            assert_eq!(back, plain, "length {len}");
            assert_eq!(
                (h.content_id, h.epoch, h.chunk_size),
                (ContentId(9), 3, 1024)
            );
        }
    }

    #[test]
    fn every_flip_truncation_and_extension_is_caught() {
        let (key, _, out) = packaged(2500, 1024);
        for bit in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&key, &bad[..], std::io::sink()).is_err(), "bit {bit}");
        }
        for len in 0..out.len() {
            assert!(
                open(&key, &out[..len], std::io::sink()).is_err(),
                "truncated to {len}"
            );
        }
        let mut longer = out.clone();
        longer.extend_from_slice(&[0; 40]);
        assert!(open(&key, &longer[..], std::io::sink()).is_err());
        // Two chunks swapped.
        let mut swapped = out.clone();
        let c = 1024 + TAG_LEN;
        let (a, b) = (HEADER_LEN, HEADER_LEN + c);
        let first: Vec<u8> = swapped[a..a + c].to_vec();
        let second: Vec<u8> = swapped[b..b + c].to_vec();
        swapped[a..a + c].copy_from_slice(&second);
        swapped[b..b + c].copy_from_slice(&first);
        assert_eq!(
            open(&key, &swapped[..], std::io::sink()),
            Err(Error::ContentCorrupt)
        );
        // Another key.
        let other = ContentKey::from_bytes([6; 16]);
        assert_eq!(
            open(&other, &out[..], std::io::sink()),
            Err(Error::ContentCorrupt)
        );
    }

    #[test]
    fn chunk_size_is_checked() {
        let key = ContentKey::from_bytes([5; 16]);
        for bad in [0, 1000, 512, 1 << 25] {
            assert!(
                package(
                    ContentId(1),
                    1,
                    bad,
                    &key,
                    test_nonce(),
                    &[][..],
                    Vec::new()
                )
                .is_err()
            );
        }
    }
}
