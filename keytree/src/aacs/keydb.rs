//! Device keys as KEYDB.cfg `| DK |` lines, the form in which AACS device keys are commonly
//! exchanged:
//!
//! ```text
//! | DK | DEVICE_KEY 0x<32 hex> | DEVICE_NODE 0x<hex> | KEY_UV 0x<8 hex> | KEY_U_MASK_SHIFT 0x<2 hex> ; comment
//! ```
//!
//! `DEVICE_NODE` is the device number in the form published KEYDB files use: the leaf shifted
//! left by one with the low bit **clear**, `leaf << 1` (the widely circulated entry
//! `DEVICE_NODE 0x0800` is leaf 1024). The reader also takes the `uv` form with the low bit set,
//! `(leaf << 1) | 1`: no AACS processing step looks at bit 0 (a `u` mask never covers it, and a
//! device is never the `v` of a subset that applies to it). It is written with at least 4 hex
//! digits (the width of published KEYDB files) and as many as it needs. The low bit is written
//! clear because libaacs skips a device numbered `0xFFFFFFFF` (its first-device sentinel), which
//! the `uv` form gives the last leaf. `KEY_UV` is the `uv` of the node `v` of the stored label
//! `L(u, v)`, and `KEY_U_MASK_SHIFT` names `u`.
//!
//! The reader takes a whole KEYDB.cfg: it skips blank lines, `;` comments and every record
//! but `DK`, and takes the `DK` lines of one device. It is bounded: at most [`MAX_KEYDB_LEN`]
//! bytes and [`MAX_KEYS`] `DK` lines.

use core::fmt;
use core::fmt::Write as _;

use zeroize::Zeroizing;

use crate::aacs::{HEIGHT, Uv};
use crate::error::{DecodeError, Error};
use crate::secret::NodeKey;

/// The number of keys of a full device: `L(u, v)` for the 30 ancestors `u` below the root and
/// the nodes `v` hanging off the path below each, 30 + 29 + … + 1.
#[cfg(feature = "authority")]
pub(crate) const KEY_COUNT: usize = (HEIGHT as usize - 1) * HEIGHT as usize / 2;

/// The most `DK` lines the reader takes.
pub const MAX_KEYS: usize = 1024;

/// The largest KEYDB.cfg text the reader takes, 16 MiB.
pub const MAX_KEYDB_LEN: usize = 16 << 20;

/// One device key: the label `L(u, v)`, with `v`'s `uv` number and `u`'s mask shift. The label
/// compares in constant time.
#[derive(Clone, Eq, PartialEq)]
pub struct DeviceKeyEntry {
    /// The label.
    pub key: NodeKey,
    /// The node `v`.
    pub uv: Uv,
    /// `u_mask = 0xFFFFFFFF << u_mask_shift` keeps `u`'s path bits.
    pub u_mask_shift: u8,
}

impl fmt::Debug for DeviceKeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeyEntry")
            .field("uv", &self.uv)
            .field("u_mask_shift", &self.u_mask_shift)
            .finish_non_exhaustive()
    }
}

/// The device keys of one AACS-profile device. Zeroized on drop; `Debug` shows no key;
/// `PartialEq` compares every key in constant time.
#[derive(Clone, Debug)]
pub struct DeviceKeySet {
    device: Uv,
    keys: Vec<DeviceKeyEntry>,
}

impl subtle::ConstantTimeEq for DeviceKeySet {
    /// Compares every key, whatever the first difference.
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        let public = self.device == other.device
            && self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.uv == b.uv && a.u_mask_shift == b.u_mask_shift);
        self.keys
            .iter()
            .zip(&other.keys)
            .fold(subtle::Choice::from(u8::from(public)), |acc, (a, b)| {
                acc & a.key.ct_eq(&b.key)
            })
    }
}

impl PartialEq for DeviceKeySet {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(self, other).into()
    }
}

impl Eq for DeviceKeySet {}

impl DeviceKeySet {
    /// A key set for the device numbered `device` (a leaf's `uv`).
    ///
    /// # Errors
    /// [`Error::InvalidNode`] when `device` is not a leaf, or a key's `v` or `u` does not lie
    /// beside the device's path as a label's must; [`Error::TooLarge`] beyond [`MAX_KEYS`] keys.
    pub fn new(device: Uv, keys: Vec<DeviceKeyEntry>) -> Result<Self, Error> {
        if device.depth() != HEIGHT {
            return Err(Error::InvalidNode(u64::from(device.get())));
        }
        if keys.len() > MAX_KEYS {
            return Err(Error::TooLarge("device key count"));
        }
        let leaf = device.node()?;
        for k in &keys {
            let v = k.uv.node()?;
            let du = 32u8.saturating_sub(k.u_mask_shift);
            // v hangs off the path (its parent is on it, it is not) below u, and u is not the root.
            let on_path = v.parent().is_some_and(|p| p.contains(leaf)) && !v.contains(leaf);
            if !(1..v.depth()).contains(&du) || !on_path {
                return Err(Error::InvalidNode(u64::from(k.uv.get())));
            }
        }
        Ok(Self { device, keys })
    }

    /// The device number: the `uv` of the device's leaf.
    pub fn device_number(&self) -> Uv {
        self.device
    }

    /// The keys.
    pub fn keys(&self) -> &[DeviceKeyEntry] {
        &self.keys
    }

    /// The keys as KEYDB.cfg lines, one `| DK |` line each, after a comment line.
    pub fn to_keydb(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(128 * (self.keys.len() + 1)));
        let leaf = self.device.get() >> 1;
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "; treecast AACS-profile device keys: leaf {leaf}, {} keys",
            self.keys.len()
        );
        for k in &self.keys {
            let _ = write!(out, "| DK | DEVICE_KEY 0x");
            for b in k.key.secret_bytes() {
                let _ = write!(out, "{b:02X}");
            }
            let _ = writeln!(
                out,
                " | DEVICE_NODE 0x{:04X} | KEY_UV 0x{:08X} | KEY_U_MASK_SHIFT 0x{:02X}",
                published_node(self.device),
                k.uv.get(),
                k.u_mask_shift
            );
        }
        out
    }

    /// Reads the `| DK |` lines of a KEYDB.cfg text (see the module documentation).
    ///
    /// # Errors
    /// [`DecodeError::TooLarge`] beyond the bounds; [`DecodeError::InvalidValue`] for a `DK`
    /// line with a missing or malformed field, or `DK` lines of more than one device;
    /// [`DecodeError::MissingData`] when there is no `DK` line.
    pub fn from_keydb(text: &str) -> Result<Self, DecodeError> {
        if text.len() > MAX_KEYDB_LEN {
            return Err(DecodeError::TooLarge("KEYDB.cfg"));
        }
        let mut device = None;
        // Reserved up front for the largest set the reader takes: a vector that grew would leave
        // copies of keys in freed memory.
        let mut keys = Vec::with_capacity(MAX_KEYS);
        for line in text.lines() {
            let body = line.split(';').next().unwrap_or_default().trim();
            let mut fields = body.split('|').map(str::trim);
            if fields.next() != Some("") || fields.next() != Some("DK") {
                continue;
            }
            if keys.len() == MAX_KEYS {
                return Err(DecodeError::TooLarge("DK line count"));
            }
            let mut key = None;
            let mut node = None;
            let mut uv = None;
            let mut shift = None;
            for field in fields {
                let (name, value) = field.split_once(' ').unwrap_or((field, ""));
                let value = value.trim();
                match name {
                    "DEVICE_KEY" => key = Some(hex_key(value)?),
                    "DEVICE_NODE" => node = Some(hex_u32(value, "DEVICE_NODE")?),
                    "KEY_UV" => uv = Some(hex_u32(value, "KEY_UV")?),
                    "KEY_U_MASK_SHIFT" => shift = Some(hex_u32(value, "KEY_U_MASK_SHIFT")?),
                    _ => {}
                }
            }
            // Either form names the leaf `node >> 1`.
            let node = node.ok_or(DecodeError::InvalidValue("DEVICE_NODE"))? >> 1;
            if *device.get_or_insert(node) != node {
                return Err(DecodeError::InvalidValue(
                    "DK lines of more than one device",
                ));
            }
            let uv = uv
                .and_then(|uv| Uv::new(uv).ok())
                .ok_or(DecodeError::InvalidValue("KEY_UV"))?;
            let u_mask_shift = shift
                .and_then(|s| u8::try_from(s).ok())
                .ok_or(DecodeError::InvalidValue("KEY_U_MASK_SHIFT"))?;
            keys.push(DeviceKeyEntry {
                key: key.ok_or(DecodeError::InvalidValue("DEVICE_KEY"))?,
                uv,
                u_mask_shift,
            });
        }
        let leaf = device.ok_or(DecodeError::MissingData("DK line"))?;
        let device =
            Uv::new((leaf << 1) | 1).map_err(|_| DecodeError::InvalidValue("DEVICE_NODE"))?;
        Self::new(device, keys).map_err(|_| DecodeError::InvalidValue("DK line"))
    }
}

/// Processing keys, as published KEYDB.cfg files carry them in `| PK | 0x<32 hex>` lines: each
/// the processing key of one subset of some MKB, enough to derive that MKB's media key without
/// any device key. Zeroized on drop; `Debug` shows only the count.
#[derive(Clone)]
pub struct ProcessingKeys(Vec<NodeKey>);

impl ProcessingKeys {
    /// The `| PK |` lines of a KEYDB.cfg text; every other line is skipped.
    ///
    /// # Errors
    /// [`DecodeError::TooLarge`] beyond [`MAX_KEYDB_LEN`] bytes or [`MAX_KEYS`] keys;
    /// [`DecodeError::InvalidValue`] for a `PK` line whose key is not `0x` and 32 hex digits;
    /// [`DecodeError::MissingData`] when there is no `PK` line.
    pub fn from_keydb(text: &str) -> Result<Self, DecodeError> {
        if text.len() > MAX_KEYDB_LEN {
            return Err(DecodeError::TooLarge("KEYDB.cfg"));
        }
        // Reserved up front, as for device keys.
        let mut keys = Vec::with_capacity(MAX_KEYS);
        for line in text.lines() {
            let body = line.split(';').next().unwrap_or_default().trim();
            let mut fields = body.split('|').map(str::trim);
            if fields.next() != Some("") || fields.next() != Some("PK") {
                continue;
            }
            if keys.len() == MAX_KEYS {
                return Err(DecodeError::TooLarge("PK line count"));
            }
            let value = fields.next().unwrap_or_default();
            keys.push(hex_key(value).map_err(|_| DecodeError::InvalidValue("PK"))?);
        }
        if keys.is_empty() {
            return Err(DecodeError::MissingData("PK line"));
        }
        Ok(Self(keys))
    }

    /// The keys, in file order.
    pub fn keys(&self) -> &[NodeKey] {
        &self.0
    }
}

impl fmt::Debug for ProcessingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessingKeys")
            .field("count", &self.0.len())
            .finish_non_exhaustive()
    }
}

/// A device's `DEVICE_NODE` as published KEYDB files write it: its leaf's `uv` with the low bit
/// clear, `leaf << 1`.
pub(crate) fn published_node(device: Uv) -> u32 {
    device.get() & !1
}

/// `0x` and 1 to 8 hex digits.
fn hex_u32(value: &str, what: &'static str) -> Result<u32, DecodeError> {
    let digits = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .filter(|d| (1..=8).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(DecodeError::InvalidValue(what))?;
    u32::from_str_radix(digits, 16).map_err(|_| DecodeError::InvalidValue(what))
}

/// `0x` and exactly 32 hex digits.
fn hex_key(value: &str) -> Result<NodeKey, DecodeError> {
    let digits = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .ok_or(DecodeError::InvalidValue("DEVICE_KEY"))?;
    let mut key = Zeroizing::new([0u8; 16]);
    hex::decode_to_slice(digits, key.as_mut_slice())
        .map_err(|_| DecodeError::InvalidValue("DEVICE_KEY"))?;
    Ok(NodeKey::from_bytes(*key))
}
