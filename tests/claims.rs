//! One module per claim of the seed patent (see `docs/claims.md`), end to end through the facade.

mod claim01_registration_and_supply;
mod claim02_certificate_carries_destination_license;
mod claim03_license_servers;
mod claim04_13_move_checks;
mod claim05_06_registry_tables;
mod claim07_08_billing;
mod claim09_11_client;
mod claim10_12_certificate_verification;
mod revocation;
