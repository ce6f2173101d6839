//! One module per claim of the seed patent (see `docs/claims.md`), end to end through the facade.
//! The whole suite runs on each store (`memory`, `sqlite`, `postgres`): one suite, three
//! registries, the same assertions.

use treecast::keytree::{Scheme, TreeHeight};
use treecast::license::Registry;

use crate::support::World;

/// A world on a boxed registry, as every store is.
pub(crate) type AnyWorld = World<Box<dyn Registry>>;

macro_rules! claims {
    () => {
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "audit_streams.rs"]
        mod audit_streams;
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "batch_registration.rs"]
        mod batch_registration;
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "claim01_registration_and_supply.rs"]
        mod claim01_registration_and_supply;
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "claim02_certificate_carries_destination_license.rs"]
        mod claim02_certificate_carries_destination_license;
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "claim03_license_servers.rs"]
        mod claim03_license_servers;
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "claim04_13_move_checks.rs"]
        mod claim04_13_move_checks;
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "claim05_06_registry_tables.rs"]
        mod claim05_06_registry_tables;
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "claim07_08_billing.rs"]
        mod claim07_08_billing;
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "claim09_11_client.rs"]
        mod claim09_11_client;
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "claim10_12_certificate_verification.rs"]
        mod claim10_12_certificate_verification;
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "retries.rs"]
        mod retries;
        #[allow(clippy::duplicate_mod, reason = "one suite, loaded once per store")]
        #[path = "revocation.rs"]
        mod revocation;
    };
}

fn height() -> TreeHeight {
    TreeHeight::new(16).unwrap()
}

mod memory;
mod postgres;
mod sqlite;
