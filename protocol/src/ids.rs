//! Identifiers: one newtype per kind, so a license ID can never be passed as a client ID.

use core::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A customer.
    UserId(u64), "user-"
);
id_type!(
    /// A client device of a user.
    ClientId(u64), "client-"
);
id_type!(
    /// A content item.
    ContentId(u64), "content-"
);
id_type!(
    /// A license: the right of one client to use one content.
    LicenseId(u64), "license-"
);
id_type!(
    /// A contents copy certificate.
    CertificateId(u64), "certificate-"
);
id_type!(
    /// A license server (each has its own key pair).
    ServerId(u32), "server-"
);
id_type!(
    /// One of a signer's keys over time (a license server's, issue 29): 0 for the first.
    KeyId(u32), "key-"
);
