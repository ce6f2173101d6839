//! The admin token's file: created 0600 with a random token when missing, read back the same,
//! refused when others can read it; compared in constant time against the bearer header.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests fail loudly by design"
)]

use axum::http::{HeaderMap, HeaderValue, header};
use treecast_server::AdminToken;

#[test]
fn the_token_file_is_created_private_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.token");
    let (token, created) = AdminToken::load_or_create(&path).unwrap();
    assert!(created);
    assert_eq!(token.as_str().len(), 64);
    assert!(token.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (again, created) = AdminToken::load_or_create(&path).unwrap();
    assert!(!created);
    assert_eq!(again.as_str(), token.as_str());
    assert_eq!(format!("{again:?}"), "AdminToken(<redacted>)");

    let mut headers = HeaderMap::new();
    assert!(token.check(&headers).is_err());
    let bearer = format!("Bearer {}", token.as_str());
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&bearer).unwrap(),
    );
    assert!(token.check(&headers).is_ok());
    // The token with its last digit changed (to one it is not).
    let last = if token.as_str().ends_with('0') {
        '1'
    } else {
        '0'
    };
    let wrong = format!("Bearer {}{last}", &token.as_str()[..63]);
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&wrong).unwrap(),
    );
    assert_eq!(token.check(&headers).unwrap_err().status(), 401);
}

#[cfg(unix)]
#[test]
fn a_token_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.token");
    std::fs::write(&path, "0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = AdminToken::load_or_create(&path).unwrap_err();
    assert!(refused.contains("chmod 600"), "{refused}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(AdminToken::load_or_create(&path).is_ok());
    std::fs::write(&path, "short").unwrap();
    assert!(AdminToken::load_or_create(&path).is_err());
}
