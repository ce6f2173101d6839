//! A device's key set never crosses a network in the clear (issue 24, item 4): the registration
//! answer is sealed to the device's X25519 key (HPKE), and plain HTTP is refused off the
//! loopback, by `serve` and by the client.

use std::io::{Read, Write};
use std::net::TcpStream;

use treecast::license::registration::{RegistrationKey, RegistrationRequest};
use treecast::license::transport::{HttpTransport, Transport};
use treecast::license::{Client, Error, Registration, ServerId, SigningKey};

use crate::cli::{path, treecast};
use crate::service::Served;

/// One HTTP/1.1 POST over a raw socket, as a passive observer of plain HTTP sees it: the
/// answer's status and body bytes.
fn observed_post(base: &str, target: &str, bearer: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let address = base.trim_start_matches("http://");
    let mut socket = TcpStream::connect(address).unwrap();
    write!(
        socket,
        "POST {target} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {bearer}\r\n\
         content-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    socket.write_all(body).unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    // The service answers with a content-length (no chunking) for these bodies.
    (status, answer[split + 4..].to_vec())
}

#[test]
fn an_observer_of_plain_http_learns_no_key_set() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        treecast(&["keygen", "--out", path(&dir.path().join("keys"))])
            .status
            .success()
    );
    let store = format!("sqlite:{}", dir.path().join("registry.sqlite").display());
    let served = Served::start(dir.path(), &store, &[]);
    let t = HttpTransport::new(&served.base);
    let (alice, credential) = t.create_user(&served.admin).unwrap();
    let route = format!("/v1/users/{}/clients", alice.0);

    // What crosses the wire: the request and the sealed answer.
    let device = SigningKey::from_bytes(&[41; 32]);
    let request = RegistrationRequest::new(alice, ServerId(1), &device).unwrap();
    let (status, sealed) = observed_post(
        &served.base,
        &route,
        &credential.to_hex(),
        &request.to_bytes(),
    );
    assert_eq!(status, 201);
    assert!(matches!(
        Registration::from_bytes(&sealed),
        Err(Error::Decode(_))
    ));
    // The device opens it; the key set it holds is nowhere in the bytes observed.
    let opener = RegistrationKey::derive(&device).unwrap();
    let registration = Registration::open_sealed(&sealed, &opener, &request).unwrap();
    let key_set = registration.device_keys.to_bytes();
    assert!(key_set.len() > 100);
    for window in key_set.chunks(16) {
        assert!(!sealed.windows(16).any(|w| w == window));
    }
    let client = Client::new(device.clone(), registration).unwrap();
    assert_eq!(client.user(), alice);

    // Another key (the observer's, or a proxy's) does not open it, nor does a changed byte.
    let observer = RegistrationKey::derive(&SigningKey::from_bytes(&[42; 32])).unwrap();
    assert_eq!(
        Registration::open_sealed(&sealed, &observer, &request).map(|_| ()),
        Err(Error::UnwrapFailed)
    );
    let mut altered = sealed.clone();
    *altered.last_mut().unwrap() ^= 1;
    assert_eq!(
        Registration::open_sealed(&altered, &opener, &request).map(|_| ()),
        Err(Error::UnwrapFailed)
    );

    // The request of earlier versions (a server ID and a public key, nothing to seal to) is
    // refused: no key set is ever answered in the clear.
    let (status, _) = observed_post(
        &served.base,
        &route,
        &credential.to_hex(),
        &request.to_bytes()[..36],
    );
    assert_eq!(status, 400);

    // A proxy (or anyone on the path) swapping in its own X25519 key: the device's signature
    // no longer verifies, so the service seals nothing to the proxy's key. Nor does the request
    // of one user verify for another.
    let proxy = SigningKey::from_bytes(&[44; 32]);
    let mut swapped = request.to_bytes();
    swapped[36..68].copy_from_slice(&RegistrationKey::derive(&proxy).unwrap().public_bytes());
    let (status, answer) = observed_post(&served.base, &route, &credential.to_hex(), &swapped);
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&answer));
    let (bob, bob_credential) = t.create_user(&served.admin).unwrap();
    let (status, _) = observed_post(
        &served.base,
        &format!("/v1/users/{}/clients", bob.0),
        &bob_credential.to_hex(),
        &request.to_bytes(),
    );
    assert_eq!(status, 403);
    // And an answer to one request does not open as the answer to another.
    let other_request = RegistrationRequest::new(alice, ServerId(2), &device).unwrap();
    assert_eq!(
        Registration::open_sealed(&sealed, &opener, &other_request).map(|_| ()),
        Err(Error::UnwrapFailed)
    );

    // The transport does all of this for a device.
    let other = SigningKey::from_bytes(&[43; 32]);
    let registration = t.register(alice, &credential, ServerId(1), &other).unwrap();
    Client::new(other, registration).unwrap();
}

#[test]
fn serve_refuses_plain_http_off_the_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    assert!(treecast(&["keygen", "--out", path(&keys)]).status.success());
    let token = dir.path().join("admin.token");
    let store = format!("sqlite:{}", dir.path().join("registry.sqlite").display());
    let out = treecast(&[
        "serve",
        "--keys",
        path(&keys),
        "--store",
        &store,
        "--listen",
        "0.0.0.0:0",
        "--admin-token",
        path(&token),
        "--content-dir",
        path(&dir.path().join("contents")),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve plain HTTP") && err.contains("--insecure-http"),
        "{err}"
    );
    // Refused before anything was made.
    assert!(!token.exists());
    assert!(!dir.path().join("registry.sqlite").exists());
}
