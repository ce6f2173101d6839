//! Secret key types: never `Copy`, zeroized on drop, redacted in `Debug`, compared in constant
//! time. Raw bytes leave only through `secret_bytes()`.

/// Defines a secret key type of a fixed length: not `Copy`, zeroized on drop, `Debug` that
/// prints only the type name, `PartialEq` in constant time, raw bytes only through
/// `secret_bytes()`. Used by the treecast crates for all of their key types.
#[macro_export]
macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name([u8; $len]);

        impl $name {
            /// The length of the key in bytes.
            pub const LEN: usize = $len;

            /// Wraps raw key bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// A fresh random key.
            pub fn generate(rng: &mut impl $crate::__private::rand_core::CryptoRng) -> Self {
                let mut bytes = [0u8; $len];
                rng.fill_bytes(&mut bytes);
                Self(bytes)
            }

            /// The raw key bytes. Handle with care: this is the only way out.
            pub const fn secret_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl Drop for $name {
            #[inline(never)]
            fn drop(&mut self) {
                $crate::__private::zeroize::Zeroize::zeroize(&mut self.0);
            }
        }

        impl $crate::__private::zeroize::ZeroizeOnDrop for $name {}

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl $crate::__private::subtle::ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> $crate::__private::subtle::Choice {
                self.0.ct_eq(&other.0)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                $crate::__private::subtle::ConstantTimeEq::ct_eq(self, other).into()
            }
        }

        impl Eq for $name {}
    };
}

secret_type!(
    /// The authority's one secret: every node key, label, device key and the EKB signing key of
    /// every tree it runs are derived from it.
    MasterSecret,
    32
);

secret_type!(
    /// The distributor's own secret, derived from the master secret for one tree and never
    /// delivered to any device: the root of the keys that protect what the distributor stores
    /// (content keys in the registry, the authentication of registry rows). Unlike a payload key,
    /// no EKB hands it out, so a registered or revoked device learns nothing of it.
    DistributorSecret,
    32
);

secret_type!(
    /// The key an EKB delivers to every non-revoked device (AES-128).
    PayloadKey,
    16
);

secret_type!(
    /// A device's own key, known to the device and (derived on demand) to the authority, never to
    /// another device. Licenses are bound to a device by wrapping under it.
    DeviceKey,
    16
);

secret_type!(
    /// A node key (Complete Subtree) or a label (Subset Difference) held by a device.
    NodeKey,
    16
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_eq_compares() {
        let a = PayloadKey::from_bytes([7; 16]);
        let b = PayloadKey::from_bytes([7; 16]);
        let c = PayloadKey::from_bytes([8; 16]);
        assert_eq!(format!("{a:?}"), "PayloadKey { .. }");
        assert!(a == b && a != c);
    }
}
