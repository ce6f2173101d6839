//! Who may call what: the admin bearer token, and a user's credential.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;
use treecast_protocol::credential::UserCredential;
use zeroize::Zeroizing;

use crate::error::ApiError;

/// The admin bearer token: 64 hexadecimal digits. Not `Copy`, zeroized, redacted in `Debug`,
/// compared in constant time.
pub struct AdminToken(Zeroizing<String>);

impl core::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The longest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

impl AdminToken {
    /// A token from its text (surrounding whitespace ignored).
    ///
    /// # Errors
    /// A message when it is shorter than 32 characters.
    pub fn new(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() < 32 {
            return Err("an admin token must be at least 32 characters".into());
        }
        Ok(Self(Zeroizing::new(text.to_owned())))
    }

    /// Reads the token file at `path`, or creates it (mode 0600) with a fresh random token
    /// when it does not exist. An existing file that others can read is refused.
    ///
    /// # Errors
    /// A message when the file cannot be read or created, is too permissive, or holds no
    /// token.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), String> {
        let shown = path.display();
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                getrandom::fill(bytes.as_mut_slice())
                    .map_err(|e| format!("no system randomness: {e}"))?;
                let token = Zeroizing::new(hex::encode(bytes.as_slice()));
                file.write_all(token.as_bytes())
                    .and_then(|()| file.write_all(b"\n"))
                    .and_then(|()| file.sync_all())
                    .map_err(|e| format!("{shown}: {e}"))?;
                return Ok((Self(token), true));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{shown}: {e}")),
        }
        Ok((Self::load(path)?, false))
    }

    /// Reads the token file at `path` (SIGHUP reads it again); a file that others can read is
    /// refused.
    ///
    /// # Errors
    /// A message when the file cannot be read, is too permissive, or holds no token.
    pub fn load(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let file = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file
                .metadata()
                .map_err(|e| format!("{shown}: {e}"))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{shown}: readable by others (mode {:o}); chmod 600 it",
                    mode & 0o777
                ));
            }
        }
        let mut text = Zeroizing::new(String::with_capacity(MAX_TOKEN_FILE as usize + 1));
        file.take(MAX_TOKEN_FILE)
            .read_to_string(&mut text)
            .map_err(|e| format!("{shown}: {e}"))?;
        Self::new(&text).map_err(|e| format!("{shown}: {e}"))
    }

    /// Checks the request's `Authorization: Bearer` header against the token.
    ///
    /// # Errors
    /// 401 when it is missing or wrong.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = bearer(headers)?;
        if bool::from(presented.as_bytes().ct_eq(self.0.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("the admin token is wrong"))
        }
    }

    /// The token's text (to hand to a client of the admin API).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The bearer token of a request.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("an `Authorization: Bearer …` header is required"))
}

/// The user credential a request presents as its bearer token.
///
/// # Errors
/// 401 when it is missing or not a credential.
pub fn credential(headers: &HeaderMap) -> Result<UserCredential, ApiError> {
    UserCredential::from_hex(bearer(headers)?)
        .map_err(|_| ApiError::unauthorized("the bearer token is not a user credential"))
}
