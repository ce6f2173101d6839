//! treecast-web: the device in a browser (issue 30). Compiled to `wasm32-unknown-unknown` and
//! bound to JavaScript by `wasm-bindgen` (`scripts/build-web.sh`), it is what the page at
//! `/app/` of `treecast serve --app DIR` runs: [`WebDevice`] registers, buys, plays, moves out
//! and in, and saves its state as `treecast-device`'s [`Client`](treecast_device::Client) does
//! for the command line.
//!
//! It does no I/O of its own (sans-I/O): every method takes bytes and gives bytes, and the
//! page's JavaScript fetches them from the service, keeps them in IndexedDB and hands the
//! ClearKey license to the browser's Encrypted Media Extensions. Randomness comes in as bytes
//! (the signing key's seed, from `crypto.getRandomValues`) and time as a number, so the same
//! inputs give the same outputs natively, under test, and in the page.
//!
//! ```
//! # fn main() -> Result<(), treecast_web::WebError> {
//! // A page starts without a device: it draws a seed and makes a registration request.
//! let mut seed = [7u8; 32]; // in the page: crypto.getRandomValues(new Uint8Array(32))
//! let pending = treecast_web::WebDevice::start_registration(&mut seed, 1, 1)?;
//! assert_eq!(seed, [0; 32]); // taken into the module, zeroed where it came from
//! let request = pending.request(); // POST /v1/users/1/clients, then pending.finish(answer)
//! assert_eq!(request.len(), treecast_protocol::registration::RegistrationRequest::LEN);
//! # Ok(()) }
//! ```
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

mod device;
mod keys;

pub use device::{PendingRegistration, SecretBytes, WebDevice, WebError};
