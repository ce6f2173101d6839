//! Integration tests of the facade: one binary, one module per area.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests fail loudly by design"
)]

mod aacs_interop;
mod aacs_libaacs;
mod binding;
mod boundary;
mod browser;
mod claims;
mod cli;
mod cli_retry;
mod cover_vectors;
mod crash;
mod delegation;
mod move_package;
mod pg;
mod postgres_registry;
mod saved_state;
mod sealed_registration;
mod server_key_rotation;
mod service;
mod simulator;
mod sqlite_registry;
mod support;
mod timed_licenses;
