//! Decoders of every signed object a party receives: licenses (with terms too), copy
//! certificates, client certificates and requests (renewals and returns too), and the
//! authority's lists of a server's keys (issue 29), each with or without a key ID. Nothing may
//! panic, and what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use treecast_protocol::certificate::{
    ClientCertificateTbs, CopyCertificateTbs, LicenseRequestTbs, MoveRequestTbs,
};
use treecast_protocol::giveback::ReturnRequestTbs;
use treecast_protocol::license::LicenseTbs;
use treecast_protocol::renewal::RenewalRequestTbs;
use treecast_protocol::server::ServerKeyListTbs;
use treecast_protocol::sign::Signable;
use treecast_protocol::{SigningKey, Unverified};

fn check<T: Signable + Clone + core::fmt::Debug>(data: &[u8]) {
    if let Ok(decoded) = Unverified::<T>::from_bytes(data) {
        let mut payload = Vec::new();
        decoded.unverified().encode(&mut payload);
        // A key ID other than 0 sets the version byte's top bit and follows the payload.
        if decoded.key_id().0 != 0 {
            payload[4] |= 0x80;
            payload.extend_from_slice(&decoded.key_id().0.to_be_bytes());
        }
        assert_eq!(&data[..payload.len()], &payload[..]);
        // A random signature never verifies.
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert!(decoded.verify(&key).is_err());
    }
}

fuzz_target!(|data: &[u8]| {
    check::<LicenseTbs>(data);
    check::<CopyCertificateTbs>(data);
    check::<ClientCertificateTbs>(data);
    check::<LicenseRequestTbs>(data);
    check::<MoveRequestTbs>(data);
    check::<RenewalRequestTbs>(data);
    check::<ReturnRequestTbs>(data);
    check::<ServerKeyListTbs>(data);
    if let Ok(cert) = Unverified::<CopyCertificateTbs>::from_bytes(data) {
        assert!(cert.unverified().license().is_ok());
    }
});
