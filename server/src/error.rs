//! Errors as the service answers them: a status code and `{"error": CODE, "message": …}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use treecast_protocol::Error;

/// An error answer: its status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<std::time::Duration>,
    server_url: Option<String>,
}

impl ApiError {
    /// An answer with the given parts.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            server_url: None,
        }
    }

    /// The same answer, naming the URL of the process that serves the request
    /// (`421 other_server`).
    #[must_use]
    pub fn server_url(mut self, url: String) -> Self {
        self.server_url = Some(url);
        self
    }

    /// The same answer, telling the caller to retry after `wait` (`Retry-After`, in whole
    /// seconds, at least 1).
    #[must_use]
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// 401: the bearer token or credential is missing or wrong.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 400: the request is malformed.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    /// 404: nothing there.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500: the service failed (the message says how; nothing secret is in it).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The status code.
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub const fn code(&self) -> &'static str {
        self.code
    }
}

/// The status code of each library error: the client's fault is 4xx, the service's 5xx.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Decode(_)
        | Error::SameClient
        | Error::NotForThisClient
        | Error::NoLicense(_)
        | Error::NotReleased
        | Error::UnwrapFailed
        | Error::ContentCorrupt
        | Error::CertificateReplayed(_)
        | Error::InvalidTerms(_)
        | Error::UnknownServer(_) => StatusCode::BAD_REQUEST,
        Error::BadCredential => StatusCode::UNAUTHORIZED,
        Error::BadSignature
        | Error::ClientRevoked(_)
        | Error::LicenseNotHeld(_)
        | Error::DifferentUsers
        | Error::RightsDenied(_)
        | Error::AuthorityOnly(_) => StatusCode::FORBIDDEN,
        Error::ClientNotFound(_)
        | Error::ContentNotFound(_)
        | Error::LicenseNotFound(_)
        | Error::UserNotFound(_) => StatusCode::NOT_FOUND,
        Error::ClientLimit(_)
        | Error::LicenseMoved(_)
        | Error::RequestReplayed
        | Error::NoCopyAvailable(_) => StatusCode::CONFLICT,
        Error::RequestStale
        | Error::StaleEpoch { .. }
        | Error::CertificateExpired
        | Error::LicenseExpired(_)
        | Error::LicenseNotYetValid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Storage(_)
        | Error::EkbNotPublished(_)
        | Error::KeyTree(treecast_keytree::Error::TreeFull) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = status_of(&e);
        // A storage failure's text can name the database; the operator's log has it, the
        // answer says only what happened.
        let message = match &e {
            Error::Storage(_) => "the registry is unavailable; try again".to_owned(),
            // No ID: the caller named it, and an answer that echoes nothing is the same for a
            // missing row and another user's (`docs/threat-model.md`, issue 24).
            Error::ClientNotFound(_) => "no such client".to_owned(),
            Error::LicenseNotFound(_) => "no such license".to_owned(),
            Error::KeyTree(treecast_keytree::Error::TreeFull) => {
                tracing::error!(
                    "no leaf left to register a client: the tree (or this license server's subtree) is full"
                );
                "no leaf is left for a new client; the operator's log has the details".to_owned()
            }
            Error::Internal(_)
            | Error::Tampered(_)
            | Error::Io(_)
            | Error::KeyTree(treecast_keytree::Error::Signer(_)) => {
                tracing::error!(error = %e, "the service failed");
                "the service failed; the operator's log has the details".to_owned()
            }
            _ => e.to_string(),
        };
        if let Error::Storage(detail) = &e {
            tracing::error!(detail = %detail, "registry storage");
        }
        Self::new(status, e.code(), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.server_url {
            None => serde_json::json!({"error": self.code, "message": self.message}),
            Some(url) => serde_json::json!({
                "error": self.code,
                "message": self.message,
                "server_url": url,
            }),
        };
        let mut response = (self.status, Json(body)).into_response();
        response
            .extensions_mut()
            .insert(crate::observe::Refusal(self.code));
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}
