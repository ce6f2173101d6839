//! The HTTP transport: a `treecast serve` at a base URL, through `ureq` (rustls for `https`).

use std::time::Duration;

use ed25519_dalek::SigningKey;
use treecast_protocol::Error;
use treecast_protocol::credential::UserCredential;
use treecast_protocol::ids::{ClientId, ContentId, LicenseId, ServerId, UserId};
use treecast_protocol::registration::Registration;
use treecast_protocol::registration::{RegistrationKey, RegistrationRequest};

use super::Transport;

/// The largest answer read: a container of the service's default publishing limit, with room.
const MAX_ANSWER: u64 = 512 << 20;

/// The largest `421` answer read to find where to send the request.
const MAX_ERROR_ANSWER: u64 = 64 << 10;

/// How a transport retries a request that met a service restarting or overloaded (issue 28):
/// a refused or lost connection, or a `503` answer. Only a request that may be sent twice
/// without effect is retried after it may have reached the service: a read (`GET`) and a
/// device's signed request (license, certificate, renewal, return), which the service answers
/// from its records when it sees it again. Any request is retried when its connection was
/// refused (it never arrived). The wait doubles from `first` to at most `most`; a `Retry-After`
/// of the service (capped at `most`) replaces it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Retries {
    /// How many times a request is sent at most (1: never retried).
    pub tries: u32,
    /// The first wait.
    pub first: Duration,
    /// The longest wait.
    pub most: Duration,
}

impl Retries {
    /// No retry: every failure is answered at once.
    pub const NONE: Self = Self {
        tries: 1,
        first: Duration::ZERO,
        most: Duration::ZERO,
    };

    /// `tries` sends at most, waiting from `first` to `most` between them.
    pub const fn new(tries: u32, first: Duration, most: Duration) -> Self {
        Self { tries, first, most }
    }
}

impl Default for Retries {
    /// 9 sends, waiting 0.1 s, 0.2 s, … up to 4 s: about 15 s in all, long enough for a
    /// service or a database to restart.
    fn default() -> Self {
        Self::new(9, Duration::from_millis(100), Duration::from_secs(4))
    }
}

/// Whether a request was never sent: its connection was refused or could not be made.
fn never_sent(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// Whether a failure is the network's or a restart's, one that may pass.
fn transient(e: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
                | ErrorKind::NotConnected
        ),
        _ => false,
    }
}

/// A transport to a `treecast serve` at a base URL (`http://host:port` or `https://…`).
#[derive(Clone)]
pub struct HttpTransport {
    base: String,
    agent: ureq::Agent,
    /// For requests that must not be sent twice: a new connection each.
    unpooled: ureq::Agent,
    /// The URLs of the deployment's other processes, to which a request with a token may
    /// follow a `421 other_server`.
    peers: Vec<String>,
    retries: Retries,
    /// Plain `http://` to a host that is not this machine's loopback: refused unless allowed.
    plain_remote: bool,
    allow_plain_http: bool,
}

impl core::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport to the service at `base`, with a 60-second limit per request; an `https`
    /// service's certificate is checked against the web's roots (`webpki-roots`).
    ///
    /// A plain `http://` base is used only for a loopback host (`127.0.0.0/8`, `[::1]`,
    /// `localhost`): every request to another host is refused with [`Error::Io`] unless
    /// [`HttpTransport::danger_allow_plain_http`] says otherwise, since a user's credential and
    /// the admin token travel as bearer tokens.
    pub fn new(base: &str) -> Self {
        Self::with_config(base, ureq::Agent::config_builder)
    }

    /// A transport to an `https` service whose certificate chains to one of the PEM
    /// certificates in `roots` only (a private certificate authority, or a self-signed
    /// certificate).
    ///
    /// # Errors
    /// [`Error::Io`] when `roots` holds no PEM certificate.
    pub fn with_root_certificates(base: &str, roots: &[u8]) -> Result<Self, Error> {
        let certificates: Vec<_> = ureq::tls::parse_pem(roots)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certificates.is_empty() {
            return Err(Error::Io("no PEM certificate among the roots given".into()));
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(
                certificates,
            )))
            .build();
        Ok(Self::with_config(base, || {
            ureq::Agent::config_builder().tls_config(tls.clone())
        }))
    }

    /// `config` is called twice: for the pooled agent, and for the one that opens a connection
    /// of its own for each request that must not be sent twice.
    fn with_config(
        base: &str,
        config: impl Fn() -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope>,
    ) -> Self {
        // The service never redirects: following one could take a bearer token to another
        // host, or from https to plain http.
        // A pooled connection is reused only within 5 s: the service closes an idle keep-alive
        // connection after its header timeout (10 s by default), and a request written into a
        // connection the service just closed fails with a broken pipe (seen in CI with ureq's
        // default of 15 s).
        let common = || {
            config()
                .max_redirects(0)
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
        };
        let agent = common().max_idle_age(Duration::from_secs(5)).build().into();
        // A request that must not be sent twice goes on a connection of its own: on a pooled
        // one, the service may close it (idle, or draining on SIGTERM) as the request is
        // written, and then nothing tells whether it was served; a new connection is either
        // refused (retried: it never arrived) or accepted (issue 28).
        let unpooled = common().max_idle_connections(0).build().into();
        let base = base.trim_end_matches('/').to_owned();
        Self {
            plain_remote: is_plain_remote(&base),
            base,
            agent,
            unpooled,
            peers: Vec::new(),
            retries: Retries::default(),
            allow_plain_http: false,
        }
    }

    /// The same transport, knowing the URLs of the deployment's other processes (one per
    /// license server, issue 29): a request that carries a user's credential or the admin
    /// token follows a `421 other_server` answer only to one of them. A device's signed
    /// requests follow it anywhere allowed (they hold no secret).
    #[must_use]
    pub fn with_peers(mut self, urls: impl IntoIterator<Item = String>) -> Self {
        self.peers = urls
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        self
    }

    /// The same transport, retrying as `retries` says ([`Retries::default`] otherwise;
    /// [`Retries::NONE`] to answer every failure at once).
    #[must_use]
    pub const fn with_retries(mut self, retries: Retries) -> Self {
        self.retries = retries;
        self
    }

    /// **Dangerous**: lets this transport send requests over plain `http://` to a host other
    /// than the loopback, where anyone on the path reads the bearer tokens (credentials, the
    /// admin token) and who buys what. Registrations stay sealed to their device.
    #[must_use]
    pub fn danger_allow_plain_http(mut self) -> Self {
        self.allow_plain_http = true;
        self
    }

    fn url(&self, path: &str) -> Result<String, Error> {
        if self.plain_remote && !self.allow_plain_http {
            return Err(Error::Io(format!(
                "{}: refusing plain http to a host that is not this machine (bearer tokens \
                 would cross the network in the clear); use https, or allow it explicitly",
                self.base
            )));
        }
        Ok(format!("{}{path}", self.base))
    }

    /// Sends a request and reads the answer: the body of a 2xx, or the service's error.
    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(ureq::http::HeaderMap, Vec<u8>), Error> {
        let mut response = response.map_err(|e| Error::Io(format!("{}: {e}", self.base)))?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| Error::Io(format!("{}: {e}", self.base)))?;
        if status.is_success() {
            return Ok((response.headers().clone(), body));
        }
        Err(service_error(status.as_u16(), &body))
    }

    /// Sends a request to `path` by `send` (given the URL) until it is answered, as [`Retries`]
    /// says; `replayable`: it may be sent twice without effect; `bearer`: it carries a token.
    /// A `421 other_server` answer naming another process's URL is followed once (issue 29),
    /// where [`HttpTransport::follow`] allows it.
    fn retried(
        &self,
        replayable: bool,
        bearer: bool,
        path: &str,
        send: impl Fn(&str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(ureq::http::HeaderMap, Vec<u8>), Error> {
        let mut url = self.url(path)?;
        let mut followed = false;
        let mut wait = self.retries.first;
        let mut tries = 1;
        loop {
            let mut response = send(&url);
            if let Ok(r) = &mut response
                && r.status() == 421
                && !followed
            {
                let body = r
                    .body_mut()
                    .with_config()
                    .limit(MAX_ERROR_ANSWER)
                    .read_to_vec()
                    .map_err(|e| Error::Io(format!("{}: {e}", self.base)))?;
                match self.follow(&body, bearer) {
                    Some(next) => {
                        url = format!("{next}{path}");
                        followed = true;
                        continue;
                    }
                    None => return Err(service_error(421, &body)),
                }
            }
            let again = tries < self.retries.tries
                && match &response {
                    Err(e) => never_sent(e) || replayable && transient(e),
                    Ok(r) => replayable && r.status() == 503,
                };
            if !again {
                return self.answer(response);
            }
            let asked = response
                .as_ref()
                .ok()
                .and_then(|r| r.headers().get("retry-after"))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            std::thread::sleep(asked.unwrap_or(wait).min(self.retries.most));
            wait = wait.saturating_mul(2).min(self.retries.most);
            tries += 1;
        }
    }

    /// The URL a `421 other_server` answer sends the request to, when it may be followed: a
    /// peer of the deployment where the transport knows them (always, for a request with a
    /// token); otherwise an `https` URL, or a loopback `http` one from a loopback service; never
    /// from `https` to `http`, nor plain `http` off the loopback unless allowed.
    fn follow(&self, body: &[u8], bearer: bool) -> Option<String> {
        let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
        let url = answer.get("server_url")?.as_str()?.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) || url == self.base {
            return None;
        }
        let known = self.peers.iter().any(|p| p == url);
        if (bearer || !self.peers.is_empty()) && !known {
            return None;
        }
        if self.base.starts_with("https://") && !url.starts_with("https://") {
            return None;
        }
        // A service off this machine cannot point a device at this machine's own ports.
        if !known && on_loopback(url) && !on_loopback(&self.base) {
            return None;
        }
        if is_plain_remote(url) && !self.allow_plain_http {
            return None;
        }
        Some(url.to_owned())
    }

    fn post(
        &self,
        path: &str,
        body: &[u8],
        bearer: Option<&str>,
        replayable: bool,
    ) -> Result<Vec<u8>, Error> {
        self.post_typed(path, body, "application/octet-stream", bearer, replayable)
    }

    /// A POST that is not sent twice, of a body of type `kind`.
    fn post_as(
        &self,
        path: &str,
        body: &[u8],
        kind: &str,
        bearer: Option<&str>,
    ) -> Result<Vec<u8>, Error> {
        self.post_typed(path, body, kind, bearer, false)
    }

    fn post_typed(
        &self,
        path: &str,
        body: &[u8],
        kind: &str,
        bearer: Option<&str>,
        replayable: bool,
    ) -> Result<Vec<u8>, Error> {
        let agent = if replayable {
            &self.agent
        } else {
            &self.unpooled
        };
        let send = |url: &str| {
            let mut request = agent.post(url).header("content-type", kind);
            if let Some(token) = bearer {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            request.send(body)
        };
        Ok(self.retried(replayable, bearer.is_some(), path, send)?.1)
    }

    fn get(
        &self,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<(ureq::http::HeaderMap, Vec<u8>), Error> {
        self.retried(true, bearer.is_some(), path, |url| {
            let mut request = self.agent.get(url);
            if let Some(token) = bearer {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            request.call()
        })
    }
}

/// Whether requests to `base` are refused: plain `http://` to a host other than the loopback,
/// or a scheme that is neither `http` nor `https`.
fn is_plain_remote(base: &str) -> bool {
    // Schemes are case-insensitive (RFC 3986 §3.1): `HTTP://` is plain HTTP too.
    if base
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
    {
        return !on_loopback(base);
    }
    !base
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// Whether the host of an `http://` or `https://` URL is this machine's loopback
/// (`127.0.0.0/8`, `[::1]`, `localhost`).
fn on_loopback(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The library error of a service's error answer: the same variant where the code names one
/// without fields, [`Error::Service`] otherwise.
fn service_error(status: u16, body: &[u8]) -> Error {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let code = field("error").unwrap_or_else(|| "http".into());
    let mut message = field("message").unwrap_or_else(|| format!("HTTP {status}"));
    if let Some(url) = field("server_url") {
        // Not followed (a request with a token, to a URL not known as the deployment's): the
        // caller is told where to send it.
        message.push_str(&format!(" (it is served at {url})"));
    }
    match code.as_str() {
        "bad_signature" => Error::BadSignature,
        "bad_credential" => Error::BadCredential,
        "request_replayed" => Error::RequestReplayed,
        "request_stale" => Error::RequestStale,
        "certificate_expired" => Error::CertificateExpired,
        "not_released" => Error::NotReleased,
        "same_client" => Error::SameClient,
        "different_users" => Error::DifferentUsers,
        "not_for_this_client" => Error::NotForThisClient,
        _ => Error::Service {
            status,
            code,
            message,
        },
    }
}

/// A JSON answer's field as an integer.
fn number(answer: &serde_json::Value, name: &str) -> Result<u64, Error> {
    answer
        .get(name)
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| Error::Io(format!("the service's answer has no `{name}`")))
}

fn json(body: &[u8]) -> Result<serde_json::Value, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Io(format!("the service's answer: {e}")))
}

/// The admin and user calls of the service, beside the device's ([`Transport`]).
impl HttpTransport {
    /// Creates a user (admin): its ID and credential.
    ///
    /// # Errors
    /// The service's refusal (`unauthorized` without the right token), or a transport failure.
    pub fn create_user(&self, admin_token: &str) -> Result<(UserId, UserCredential), Error> {
        let answer = json(&self.post("/v1/admin/users", &[], Some(admin_token), false)?)?;
        let credential = answer
            .get("credential")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| Error::Io("the service's answer has no `credential`".into()))?;
        Ok((
            UserId(number(&answer, "user")?),
            UserCredential::from_hex(credential)?,
        ))
    }

    /// Rotates a user's credential (admin, issue 29): the new credential; the old one no
    /// longer works.
    ///
    /// # Errors
    /// As [`HttpTransport::create_user`].
    pub fn rotate_credential(
        &self,
        admin_token: &str,
        user: UserId,
    ) -> Result<UserCredential, Error> {
        let path = format!("/v1/admin/users/{}/credential", user.0);
        let answer = json(&self.post(&path, &[], Some(admin_token), false)?)?;
        let credential = answer
            .get("credential")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| Error::Io("the service's answer has no `credential`".into()))?;
        UserCredential::from_hex(credential)
    }

    /// Re-wraps every content key under storage key `key_id` (admin, issue 29): the numbers of
    /// envelopes re-wrapped, already under it, and changed meanwhile (left for another run).
    ///
    /// # Errors
    /// As [`HttpTransport::create_user`].
    pub fn rekey(&self, admin_token: &str, key_id: u32) -> Result<(u64, u64, u64), Error> {
        let path = format!("/v1/admin/storage-keys/{key_id}/rekey");
        let answer = json(&self.post(&path, &[], Some(admin_token), false)?)?;
        Ok((
            number(&answer, "rewrapped")?,
            number(&answer, "already")?,
            number(&answer, "changed")?,
        ))
    }

    /// Publishes `plain` as a new content (admin): its ID.
    ///
    /// # Errors
    /// As [`HttpTransport::create_user`].
    pub fn publish(&self, admin_token: &str, plain: &[u8]) -> Result<ContentId, Error> {
        let answer = json(&self.post("/v1/admin/contents", plain, Some(admin_token), false)?)?;
        Ok(ContentId(number(&answer, "content")?))
    }

    /// Publishes a clear fragmented MP4 (admin), which the service packages with Common
    /// Encryption (issue 30, `docs/cenc.md`): the new content's ID.
    ///
    /// # Errors
    /// As [`HttpTransport::create_user`]; the service's `malformed` for a file its packager
    /// refuses.
    pub fn publish_cenc(&self, admin_token: &str, mp4: &[u8]) -> Result<ContentId, Error> {
        let body = self.post_as("/v1/admin/contents", mp4, "video/mp4", Some(admin_token))?;
        Ok(ContentId(number(&json(&body)?, "content")?))
    }

    /// Revokes a client (admin): the new epoch.
    ///
    /// # Errors
    /// As [`HttpTransport::create_user`].
    pub fn revoke(&self, admin_token: &str, client: ClientId) -> Result<u64, Error> {
        let path = format!("/v1/admin/clients/{}/revoke", client.0);
        number(
            &json(&self.post(&path, &[], Some(admin_token), false)?)?,
            "epoch",
        )
    }

    /// The total billed to a user (admin).
    ///
    /// # Errors
    /// As [`HttpTransport::create_user`].
    pub fn user_total(&self, admin_token: &str, user: UserId) -> Result<u64, Error> {
        let path = format!("/v1/admin/users/{}", user.0);
        number(&json(&self.get(&path, Some(admin_token))?.1)?, "total")
    }

    /// A license's state as the service reports it: `active`, `moved` or `revoked`.
    ///
    /// # Errors
    /// The service's refusal, or a transport failure.
    pub fn license_state(
        &self,
        user: UserId,
        credential: &UserCredential,
        license: LicenseId,
    ) -> Result<String, Error> {
        let token = credential.to_hex();
        let path = format!("/v1/users/{}/licenses/{}", user.0, license.0);
        let answer = json(&self.get(&path, Some(&token))?.1)?;
        answer
            .get("state")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::Io("the service's answer has no `state`".into()))
    }

    /// A license's status document (issue 27), as the service's JSON text: its state, dates,
    /// offer and rights, the events of its history and where to renew and return it.
    ///
    /// # Errors
    /// The service's refusal, or a transport failure.
    pub fn status_document(
        &self,
        user: UserId,
        credential: &UserCredential,
        license: LicenseId,
    ) -> Result<String, Error> {
        let token = credential.to_hex();
        let path = format!("/v1/users/{}/licenses/{}/status", user.0, license.0);
        let (_, body) = self.get(&path, Some(&token))?;
        String::from_utf8(body).map_err(|_| Error::Io("the status document is not UTF-8".into()))
    }
}

impl Transport for HttpTransport {
    fn current_ekb(&self) -> Result<(u64, Vec<u8>), Error> {
        let (headers, body) = self.get("/v1/ekb", None)?;
        let epoch = headers
            .get("treecast-epoch")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::Io(format!("{}: the EKB answer has no epoch", self.base)))?;
        Ok((epoch, body))
    }

    fn ekb(&self, epoch: u64) -> Result<Vec<u8>, Error> {
        Ok(self.get(&format!("/v1/ekb/{epoch}"), None)?.1)
    }

    /// `204` (no body) before any list.
    fn server_keys(&self, server: ServerId) -> Result<Option<Vec<u8>>, Error> {
        let (_, body) = self.get(&format!("/v1/servers/{}/keys", server.0), None)?;
        Ok((!body.is_empty()).then_some(body))
    }

    fn register(
        &self,
        user: UserId,
        credential: &UserCredential,
        server: ServerId,
        signing_key: &SigningKey,
    ) -> Result<Registration, Error> {
        let request = RegistrationRequest::new(user, server, signing_key)?;
        let token = credential.to_hex();
        let sealed = self.post(
            &format!("/v1/users/{}/clients", user.0),
            &request.to_bytes(),
            Some(&token),
            false,
        )?;
        Registration::open_sealed(&sealed, &RegistrationKey::derive(signing_key)?, &request)
    }

    fn download(
        &self,
        user: UserId,
        credential: &UserCredential,
        content: ContentId,
    ) -> Result<Vec<u8>, Error> {
        let token = credential.to_hex();
        Ok(self
            .get(
                &format!("/v1/users/{}/contents/{}", user.0, content.0),
                Some(&token),
            )?
            .1)
    }

    fn license(&self, request: &[u8]) -> Result<Vec<u8>, Error> {
        self.post("/v1/licenses", request, None, true)
    }

    fn certificate(&self, request: &[u8]) -> Result<Vec<u8>, Error> {
        self.post("/v1/certificates", request, None, true)
    }

    fn renew(&self, request: &[u8]) -> Result<Vec<u8>, Error> {
        self.post("/v1/renewals", request, None, true)
    }

    fn give_back(&self, request: &[u8]) -> Result<(), Error> {
        self.post("/v1/returns", request, None, true).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::{HttpTransport, is_plain_remote};

    /// Where a `421` naming `url` sends a request from a transport to `base` (with `peers`).
    fn followed(base: &str, peers: &[&str], url: &str, bearer: bool) -> Option<String> {
        let t = HttpTransport::new(base).with_peers(peers.iter().map(|p| (*p).to_owned()));
        let body = format!(r#"{{"error":"other_server","message":"m","server_url":"{url}"}}"#);
        t.follow(body.as_bytes(), bearer)
    }

    /// Review of issue 29: a `421` sends a token only to the deployment's peers, and a device's
    /// signed request only where it could have been sent anyway.
    #[test]
    fn a_421_is_followed_only_where_it_is_safe() {
        let b = "https://one.example";
        let two = "https://two.example";
        // Signed requests (no token): another https host, unless peers are known.
        assert_eq!(followed(b, &[], two, false).as_deref(), Some(two));
        assert_eq!(followed(b, &[b, "https://three.example"], two, false), None);
        assert_eq!(followed(b, &[b, two], two, false).as_deref(), Some(two));
        // A token: to a peer only.
        assert_eq!(followed(b, &[], two, true), None);
        assert_eq!(followed(b, &[b, two], two, true).as_deref(), Some(two));
        // Never https to http, never from a remote service to this machine, never itself.
        assert_eq!(followed(b, &[], "http://two.example", false), None);
        assert_eq!(followed(b, &[], "https://127.0.0.1:9000", false), None);
        assert_eq!(followed(b, &[], "https://localhost", false), None);
        assert_eq!(followed(b, &[], b, false), None);
        assert_eq!(followed(b, &[], "ftp://two.example", false), None);
        // On one host (tests, a single machine): loopback to loopback.
        let local = "http://127.0.0.1:8080";
        assert_eq!(
            followed(local, &[], "http://127.0.0.1:8081", false).as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(followed(local, &[], "http://two.example", false), None);
    }

    #[test]
    fn plain_http_is_allowed_to_the_loopback_only() {
        for local in [
            "http://127.0.0.1:8080",
            "http://127.3.2.1",
            "http://[::1]:80/x",
            "http://localhost:1",
            "http://LOCALHOST",
            "https://example.com",
            "HTTPS://example.com",
            "HTTP://127.0.0.1:1",
        ] {
            assert!(!is_plain_remote(local), "{local}");
        }
        for remote in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://127.0.0.1.example.com",
            "http://localhost.example.com:80",
            "http://user@evil.example:80",
            "HTTP://example.com",
            "Http://10.0.0.1",
            "ftp://example.com",
            "example.com:80",
            "http://[fe80::1]:80",
            "http://0.0.0.0:80",
        ] {
            assert!(is_plain_remote(remote), "{remote}");
        }
    }
}
