//! Keys in a PKCS#11 token (issue 29, item 4), through `cryptoki`: license servers' Ed25519
//! signing keys generated in the token and never out of it (`CKA_SENSITIVE`, not
//! `CKA_EXTRACTABLE`), and the master secret sealed (AES-256-GCM) under a token key of the same
//! kind, unsealed into zeroized memory at start. SoftHSM2 2.6 (Debian) has EdDSA and AES-GCM,
//! and no HKDF derive, so the tree's keys are still derived in memory from the unsealed master
//! secret (`docs/design.md`).
//!
//! A token is named by an RFC 7512 URI with the module's path and a PIN file:
//! `pkcs11:token=treecast;object=treecast?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/etc/treecast/pin`.
//! A PIN on the URI itself (`pin-value`) is refused: a URI ends up on command lines and in logs.
//! The module is code the process loads: a key file that names one is trusted configuration,
//! and its paths must be absolute.
//!
//! Left open: a session lost with its token (a network HSM restarted) is not opened again; every
//! signature then fails until the process restarts (`docs/service.md`).
//!
//! ```
//! use treecast_distributor::hsm::Pkcs11Uri;
//! let uri: Pkcs11Uri = "pkcs11:token=treecast;object=server-1\
//!     ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/treecast/pin"
//!     .parse()
//!     .unwrap();
//! assert_eq!(uri.token(), "treecast");
//! assert_eq!(uri.object(), Some("server-1"));
//! assert!("pkcs11:token=t?module-path=/m.so&pin-value=1234".parse::<Pkcs11Uri>().is_err());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use ed25519_dalek::VerifyingKey;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use treecast_protocol::Error;
use zeroize::Zeroizing;

/// An RFC 7512 `pkcs11:` URI naming a token (and an object in it), with the module to load
/// and the file holding the user PIN.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Pkcs11Uri {
    token: String,
    object: Option<String>,
    module: PathBuf,
    pin_file: PathBuf,
}

impl Pkcs11Uri {
    /// The token's label.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The object's label, if the URI names one.
    pub fn object(&self) -> Option<&str> {
        self.object.as_deref()
    }

    /// The same token, naming the object `label`.
    #[must_use]
    pub fn with_object(&self, label: &str) -> Self {
        Self {
            object: Some(label.to_owned()),
            ..self.clone()
        }
    }
}

impl core::str::FromStr for Pkcs11Uri {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Io(format!("not a usable pkcs11: URI: {why}"));
        let rest = text
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("it must start with `pkcs11:`"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let decode = |v: &str| -> Result<String, Error> {
            percent_decode_str(v)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| bad("an attribute is not UTF-8"))
        };
        let (mut token, mut object, mut module, mut pin_file) = (None, None, None, None);
        if text.len() > MAX_URI_LEN {
            return Err(bad("longer than 4 KiB"));
        }
        let once = |slot: &mut Option<String>, value: &str| -> Result<(), Error> {
            let value = decode(value)?;
            if slot.is_some() || value.is_empty() {
                return Err(bad("an attribute is repeated or empty"));
            }
            *slot = Some(value);
            Ok(())
        };
        for attribute in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| bad("a path attribute has no `=`"))?;
            match name {
                "token" => once(&mut token, value)?,
                "object" => once(&mut object, value)?,
                // Other path attributes (manufacturer, serial, type, id…) narrow nothing here:
                // a token is found by its label, which must then be unique.
                _ => {}
            }
        }
        for attribute in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| bad("a query attribute has no `=`"))?;
            match name {
                "module-path" => {
                    let mut slot = None;
                    once(&mut slot, value)?;
                    if module.is_some() {
                        return Err(bad("module-path is repeated"));
                    }
                    module = slot.map(PathBuf::from);
                }
                "pin-source" => {
                    let mut slot = None;
                    once(&mut slot, value)?;
                    if pin_file.is_some() {
                        return Err(bad("pin-source is repeated"));
                    }
                    pin_file = slot
                        .map(|v| PathBuf::from(v.strip_prefix("file:").unwrap_or(&v).to_owned()));
                }
                "pin-value" => {
                    return Err(bad(
                        "a PIN on the URI (pin-value) would end up on command lines: give \
                         pin-source=FILE",
                    ));
                }
                _ => {}
            }
        }
        let module = module.ok_or_else(|| bad("no module-path="))?;
        let pin_file = pin_file.ok_or_else(|| bad("no pin-source="))?;
        // The module is code this process loads: named absolutely, never found on a search
        // path or relative to wherever the process runs.
        if !module.is_absolute() || !pin_file.is_absolute() {
            return Err(bad("module-path and pin-source must be absolute paths"));
        }
        Ok(Self {
            token: token.ok_or_else(|| bad("no token="))?,
            object,
            module,
            pin_file,
        })
    }
}

/// The longest URI read.
const MAX_URI_LEN: usize = 4096;

/// The characters escaped in an attribute value.
const ESCAPED: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b';')
    .add(b'?')
    .add(b'&')
    .add(b'=')
    .add(b'#')
    .add(b'/');

/// The characters escaped in a query attribute's value (a path may keep its slashes).
const QUERY_ESCAPED: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'?')
    .add(b'&')
    .add(b'=')
    .add(b'#');

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = |v: &str| utf8_percent_encode(v, ESCAPED).to_string();
        write!(f, "pkcs11:token={}", e(&self.token))?;
        if let Some(object) = &self.object {
            write!(f, ";object={}", e(object))?;
        }
        let q = |v: &str| utf8_percent_encode(v, QUERY_ESCAPED).to_string();
        write!(
            f,
            "?module-path={}&pin-source=file:{}",
            q(&self.module.to_string_lossy()),
            q(&self.pin_file.to_string_lossy())
        )
    }
}

/// A logged-in session with a token, shared by its keys (a PKCS#11 session is used by one
/// thread at a time).
pub struct Token {
    session: Mutex<Session>,
    uri: Pkcs11Uri,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("token", &self.uri.token)
            .finish_non_exhaustive()
    }
}

/// The loaded modules: a module is initialized once a process.
fn module(path: &Path) -> Result<Pkcs11, Error> {
    static MODULES: OnceLock<Mutex<BTreeMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(|| Mutex::new(BTreeMap::new()))
        .lock()
        .map_err(|_| Error::Internal("PKCS#11 modules poisoned"))?;
    if let Some(loaded) = modules.get(path) {
        return Ok(loaded.clone());
    }
    let loaded =
        Pkcs11::new(path).map_err(|e| ck(&format!("cannot load {}", path.display()), e))?;
    match loaded.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(ck("C_Initialize", e)),
    }
    modules.insert(path.to_owned(), loaded.clone());
    Ok(loaded)
}

fn ck(what: &str, e: CkError) -> Error {
    Error::Io(format!("PKCS#11: {what}: {e}"))
}

impl Token {
    /// Opens the token `uri` names and logs in with its PIN file's first line (a file others
    /// can read is refused).
    ///
    /// # Errors
    /// [`Error::Io`] naming what failed: the module, the token, the PIN file, the login.
    pub fn open(uri: &Pkcs11Uri) -> Result<Arc<Self>, Error> {
        let pkcs11 = module(&uri.module)?;
        let slots = pkcs11
            .get_slots_with_token()
            .map_err(|e| ck("C_GetSlotList", e))?;
        let slot = slots
            .into_iter()
            .find(|s| {
                pkcs11
                    .get_token_info(*s)
                    .is_ok_and(|info| info.label().trim_end() == uri.token)
            })
            .ok_or_else(|| Error::Io(format!("PKCS#11: no token labelled `{}`", uri.token)))?;
        let session = pkcs11
            .open_rw_session(slot)
            .map_err(|e| ck("C_OpenSession", e))?;
        let pin = read_pin(&uri.pin_file)?;
        match session.login(UserType::User, Some(&AuthPin::new(pin.to_string()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(ck(&format!("login to `{}`", uri.token), e)),
        }
        Ok(Arc::new(Self {
            session: Mutex::new(session),
            uri: uri.clone(),
        }))
    }

    fn session(&self) -> Result<std::sync::MutexGuard<'_, Session>, Error> {
        self.session
            .lock()
            .map_err(|_| Error::Internal("PKCS#11 session poisoned"))
    }

    /// The URI of the object `label` in this token.
    pub fn uri_of(&self, label: &str) -> Pkcs11Uri {
        self.uri.with_object(label)
    }

    /// The handles of the objects labelled `label` (of `class`).
    fn find(&self, label: &str, class: ObjectClass) -> Result<Vec<ObjectHandle>, Error> {
        self.session()?
            .find_objects(&[
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Class(class),
            ])
            .map_err(|e| ck("C_FindObjects", e))
    }

    /// The one object labelled `label` of `class`.
    fn one(&self, label: &str, class: ObjectClass) -> Result<ObjectHandle, Error> {
        match self.find(label, class)?.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::Io(format!(
                "PKCS#11: token `{}` has no key labelled `{label}`",
                self.uri.token
            ))),
            _ => Err(Error::Io(format!(
                "PKCS#11: token `{}` has several keys labelled `{label}`",
                self.uri.token
            ))),
        }
    }

    /// Whether any object is labelled `label`.
    ///
    /// # Errors
    /// [`Error::Io`] when the token refuses.
    pub fn has(&self, label: &str) -> Result<bool, Error> {
        let found = self
            .session()?
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .map_err(|e| ck("C_FindObjects", e))?;
        Ok(!found.is_empty())
    }

    /// Generates an Ed25519 key pair labelled `label`, its private half sensitive and not
    /// extractable.
    ///
    /// # Errors
    /// [`Error::Io`] when the token refuses.
    pub fn generate_ed25519(self: &Arc<Self>, label: &str) -> Result<TokenKey, Error> {
        let public = [
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::EcParams(ED25519_OID.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        self.session()?
            .generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
            .map_err(|e| ck("generating an Ed25519 key", e))?;
        TokenKey::find(self, label)
    }

    /// Generates an AES-256 key labelled `label`, sensitive and not extractable, for sealing.
    ///
    /// # Errors
    /// [`Error::Io`] when the token refuses.
    pub fn generate_aes(&self, label: &str) -> Result<(), Error> {
        self.session()?
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Sign(false),
                    Attribute::Verify(false),
                    Attribute::ValueLen(32.into()),
                    Attribute::Label(label.as_bytes().to_vec()),
                ],
            )
            .map_err(|e| ck("generating an AES key", e))?;
        Ok(())
    }

    /// Seals `secret` under the AES key `label`: a 12-byte IV from the token, then AES-256-GCM
    /// (128-bit tag) with `aad`.
    ///
    /// # Errors
    /// [`Error::Io`] when the token refuses.
    pub fn seal(&self, label: &str, aad: &[u8], secret: &[u8]) -> Result<Vec<u8>, Error> {
        let key = self.one(label, ObjectClass::SECRET_KEY)?;
        let session = self.session()?;
        let mut iv = [0u8; 12];
        session
            .generate_random_slice(&mut iv)
            .map_err(|e| ck("C_GenerateRandom", e))?;
        // Some tokens ignore the caller's IV and write the one they chose into it: the IV kept
        // is what the buffer holds after the call.
        let sealed = {
            let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(|e| ck("GCM", e))?;
            session
                .encrypt(&Mechanism::AesGcm(params), key, secret)
                .map_err(|e| ck("sealing", e))?
        };
        Ok(iv.iter().copied().chain(sealed).collect())
    }

    /// Opens what [`Token::seal`] sealed, into zeroized memory.
    ///
    /// # Errors
    /// [`Error::Io`] when the token refuses or the sealed bytes were altered.
    pub fn unseal(
        &self,
        label: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let key = self.one(label, ObjectClass::SECRET_KEY)?;
        let (iv, body) = sealed
            .split_at_checked(12)
            .ok_or_else(|| Error::Io("PKCS#11: the sealed secret is cut".into()))?;
        let mut iv: [u8; 12] = iv.try_into().map_err(|_| Error::Internal("IV length"))?;
        let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(|e| ck("GCM", e))?;
        self.session()?
            .decrypt(&Mechanism::AesGcm(params), key, body)
            .map(Zeroizing::new)
            .map_err(|e| {
                ck(
                    &format!("unsealing with `{label}` (altered, or another token's key)"),
                    e,
                )
            })
    }
}

/// The tokens one key file opens, each once.
#[derive(Default)]
pub(crate) struct Tokens(BTreeMap<String, Arc<Token>>);

impl Tokens {
    /// The token `uri` names, opened and logged in the first time.
    pub(crate) fn open(&mut self, uri: &Pkcs11Uri) -> Result<Arc<Token>, Error> {
        let key = Pkcs11Uri {
            object: None,
            ..uri.clone()
        }
        .to_string();
        if let Some(token) = self.0.get(&key) {
            return Ok(Arc::clone(token));
        }
        let token = Token::open(uri)?;
        self.0.insert(key, Arc::clone(&token));
        Ok(token)
    }
}

/// An Ed25519 key pair in a token: signs there; its public key read once.
#[derive(Clone)]
pub struct TokenKey {
    token: Arc<Token>,
    handle: ObjectHandle,
    public: VerifyingKey,
    label: String,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("label", &self.label)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// The key pair labelled `label` in `token`.
    ///
    /// # Errors
    /// [`Error::Io`] when there is none (or several), or its public key is not Ed25519.
    pub fn find(token: &Arc<Token>, label: &str) -> Result<Self, Error> {
        let private = token.one(label, ObjectClass::PRIVATE_KEY)?;
        let public = token.one(label, ObjectClass::PUBLIC_KEY)?;
        let attributes = token
            .session()?
            .get_attributes(public, &[AttributeType::EcPoint, AttributeType::KeyType])
            .map_err(|e| ck("C_GetAttributeValue", e))?;
        let mut point = None;
        for attribute in attributes {
            match attribute {
                Attribute::EcPoint(p) => point = Some(p),
                Attribute::KeyType(t) if t != KeyType::EC_EDWARDS => {
                    return Err(Error::Io(format!("PKCS#11: `{label}` is not an EdDSA key")));
                }
                _ => {}
            }
        }
        let point = point.ok_or_else(|| Error::Io(format!("PKCS#11: `{label}` has no point")))?;
        // DER OCTET STRING (04 20 …) as SoftHSM gives it, or the 32 bytes bare.
        let bytes = match point.as_slice() {
            [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
            bare if bare.len() == 32 => bare,
            _ => return Err(Error::Io(format!("PKCS#11: `{label}` is not Ed25519"))),
        };
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Internal("point length"))?;
        let public = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| Error::Io(format!("PKCS#11: `{label}`'s point is not on the curve")))?;
        let key = Self {
            token: Arc::clone(token),
            handle: private,
            public,
            label: label.to_owned(),
        };
        // The two halves are paired by label only: one signature, verified, shows that they
        // belong together (and that the token signs plain Ed25519).
        let probe = b"treecast/v1 token key check";
        let signature = ed25519_dalek::Signature::from_bytes(&key.sign(probe)?);
        key.public.verify_strict(probe, &signature).map_err(|_| {
            Error::Io(format!(
                "PKCS#11: `{label}`'s private and public halves do not belong together"
            ))
        })?;
        Ok(key)
    }

    /// The public key.
    pub const fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// The URI naming this key.
    pub fn uri(&self) -> Pkcs11Uri {
        self.token.uri_of(&self.label)
    }

    /// Signs `message` in the token (pure Ed25519, `CKM_EDDSA`).
    ///
    /// # Errors
    /// [`Error::Io`] when the token refuses.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], Error> {
        let signature = self
            .token
            .session()?
            .sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                self.handle,
                message,
            )
            .map_err(|e| ck("C_Sign", e))?;
        signature
            .try_into()
            .map_err(|_| Error::Io("PKCS#11: an Ed25519 signature is 64 bytes".into()))
    }

    /// Whether the token says the private key is sensitive and not extractable (read back,
    /// for checks).
    ///
    /// # Errors
    /// [`Error::Io`] when the token refuses.
    pub fn stays_in_token(&self) -> Result<bool, Error> {
        let attributes = self
            .token
            .session()?
            .get_attributes(
                self.handle,
                &[AttributeType::Sensitive, AttributeType::Extractable],
            )
            .map_err(|e| ck("C_GetAttributeValue", e))?;
        let (mut sensitive, mut extractable) = (false, true);
        for attribute in attributes {
            match attribute {
                Attribute::Sensitive(s) => sensitive = s,
                Attribute::Extractable(e) => extractable = e,
                _ => {}
            }
        }
        Ok(sensitive && !extractable)
    }
}

impl treecast_keytree::ExternalSigner for TokenKey {
    fn verifying_key(&self) -> VerifyingKey {
        self.public
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], treecast_keytree::Error> {
        TokenKey::sign(self, message).map_err(|e| treecast_keytree::Error::Signer(e.to_string()))
    }
}

/// The first line of a PIN file, refused when others can read it.
fn read_pin(path: &Path) -> Result<Zeroizing<String>, Error> {
    use std::io::Read;
    let shown = || format!("PIN file {}", path.display());
    let file = std::fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", shown())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(Error::Io(format!(
                "{}: readable by others (mode {:o}); chmod 600 it",
                shown(),
                mode & 0o777
            )));
        }
    }
    let mut text = Zeroizing::new(String::with_capacity(4096 + 1));
    file.take(4096)
        .read_to_string(&mut text)
        .map_err(|_| Error::Io(format!("{}: not text", shown())))?;
    let pin = Zeroizing::new(text.lines().next().unwrap_or_default().to_owned());
    if pin.is_empty() {
        return Err(Error::Io(format!("{}: empty", shown())));
    }
    Ok(pin)
}

/// The DER of the Ed25519 curve's OID (1.3.101.112), as `CKA_EC_PARAMS`.
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2B, 0x65, 0x70];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn uris_round_trip_and_bad_ones_are_refused() {
        let uri: Pkcs11Uri =
            "pkcs11:token=my%20token;object=a%3Bb;manufacturer=x?module-path=/m.so&pin-source=/p"
                .parse()
                .unwrap();
        assert_eq!(uri.token(), "my token");
        assert_eq!(uri.object(), Some("a;b"));
        assert_eq!(uri.to_string().parse::<Pkcs11Uri>().unwrap(), uri);
        for bad in [
            "pkcs12:token=t?module-path=/m&pin-source=/p",
            "pkcs11:object=o?module-path=/m&pin-source=/p",
            "pkcs11:token=t?pin-source=/p",
            "pkcs11:token=t?module-path=/m",
            "pkcs11:token=t?module-path=/m&pin-value=1",
            "pkcs11:token?module-path=/m&pin-source=/p",
            "pkcs11:token=%FF?module-path=/m&pin-source=/p",
            "pkcs11:token=?module-path=/m&pin-source=/p",
            "pkcs11:token=a;token=b?module-path=/m&pin-source=/p",
            "pkcs11:token=t?module-path=m.so&pin-source=/p",
            "pkcs11:token=t?module-path=/m&pin-source=file:pin",
            "pkcs11:token=t?module-path=/m&module-path=/n&pin-source=/p",
        ] {
            assert!(bad.parse::<Pkcs11Uri>().is_err(), "{bad}");
        }
    }
}
