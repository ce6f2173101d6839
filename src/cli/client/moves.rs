//! `treecast client move`, `move-out` and `move-in`: a content moves between two devices of a
//! user (claim 11), both on this machine (`move`) or through a move package file (`move-out`
//! on the source, `move-in` on the destination: another machine, or the web device, issue 30).
//!
//! The source keeps its signed move request (`pending-move-N`) until the certificate arrives,
//! and the certificate (`pending-move-N.certificate`) until its package is handed on: a retry
//! sends the same bytes (the service answers the same certificate, even after the freshness
//! window) or needs no service at all, and the source gives the same package again
//! (`Device::move_out`).

use std::fs;
use std::path::Path;

use anyhow::{Context, bail};
use treecast::license::certificate::{CopyCertificateTbs, MoveRequestTbs};
use treecast::license::transport::{HttpTransport, Transport, TransportExt as _};
use treecast::license::{
    Client, ClientId, Clock, ContentId, Error, MovePackage, SystemClock, Unverified,
};

/// The largest move package file read: a certificate at its largest and the rest, with room.
const MAX_PACKAGE: u64 = 64 << 10;

use super::{
    cenc_path, load, read_credential, refresh_server_keys, save, store_media, write_atomically,
};

/// `client move`: from the device directory `from` to `to`, both here.
pub(super) fn between(
    from: &Path,
    to: &Path,
    content: ContentId,
    credential_file: &Path,
) -> anyhow::Result<()> {
    let credential = read_credential(credential_file)?;
    let (mut source, _) = load(from)?;
    // The certificate is signed by the destination's license server: the request goes to the
    // destination's process (issue 29), as does all the destination's traffic.
    let (mut destination, t) = load(to)?;
    let certificate = certificate(from, &mut source, &t, content, destination.id())?;
    let package = package(from, &mut source, &t, &certificate)?;
    if package.content.is_none() && !destination.holds(content) && !cenc_path(to, content).exists()
    {
        let container = t.download(destination.user(), &credential, content)?;
        store_media(to, &mut destination, content, container)?;
    }
    receive(to, &mut destination, &t, &package)?;
    forget_pending(from, content)?;
    println!(
        "moved content {} from client {} to client {}",
        content.0,
        source.id().0,
        destination.id().0
    );
    Ok(())
}

/// `client move-out`: the package for client `to` written to `out`.
pub(super) fn out(
    device: &Path,
    content: ContentId,
    to: ClientId,
    out: &Path,
) -> anyhow::Result<()> {
    // Never over an existing file: `--out` naming the device's own state would destroy it.
    anyhow::ensure!(
        !out.exists(),
        "{} exists: the move package goes to a new file",
        out.display()
    );
    let (mut source, t) = load(device)?;
    let certificate = certificate(device, &mut source, &t, content, to)?;
    let certified = unverified(&certificate)?;
    if certified.destination != to {
        bail!(
            "a move of {content} to {} is under way in {}: move it out to that client",
            certified.destination,
            device.display()
        );
    }
    let package = package(device, &mut source, &t, &certificate)?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a file name", out.display()))?;
    write_atomically(dir, &name.to_string_lossy(), &package.to_bytes())?;
    forget_pending(device, content)?;
    println!(
        "moved content {} out of client {} to client {}: {} (to move in before Unix time {})",
        content.0,
        source.id().0,
        to.0,
        out.display(),
        certified.expires_at.0
    );
    Ok(())
}

/// `client move-in`: the package in the file `package` stored on the device `device`.
pub(super) fn into(device: &Path, credential_file: &Path, package: &Path) -> anyhow::Result<()> {
    let credential = read_credential(credential_file)?;
    let (mut destination, t) = load(device)?;
    let bytes = zeroize::Zeroizing::new(
        super::super::input::read_bounded(package, MAX_PACKAGE)
            .with_context(|| format!("cannot read {}", package.display()))?,
    );
    let package = MovePackage::from_bytes(&bytes)
        .with_context(|| format!("{}: not a move package", package.display()))?;
    let content = unverified(&package.certificate)?.content_id;
    if !destination.holds(content) && !cenc_path(device, content).exists() {
        let container = t.download(destination.user(), &credential, content)?;
        store_media(device, &mut destination, content, container)?;
    }
    receive(device, &mut destination, &t, &package)?;
    println!(
        "moved content {} into client {}",
        content.0,
        destination.id().0
    );
    Ok(())
}

/// The certificate of the move of `content` from `source` (in `dir`) to `destination`: kept
/// from an earlier run, or asked for with the kept request, or with a new one.
fn certificate(
    dir: &Path,
    source: &mut Client,
    t: &HttpTransport,
    content: ContentId,
    destination: ClientId,
) -> anyhow::Result<Vec<u8>> {
    let pending = format!("pending-move-{}", content.0);
    let kept = format!("{pending}.certificate");
    if dir.join(&kept).exists() {
        return fs::read(dir.join(&kept))
            .with_context(|| format!("cannot read {}", dir.join(&kept).display()));
    }
    let request = if dir.join(&pending).exists() {
        let request = fs::read(dir.join(&pending))
            .with_context(|| format!("cannot read {}", dir.join(&pending).display()))?;
        let to_client = Unverified::<MoveRequestTbs>::from_bytes(&request)
            .map(|r| r.unverified().destination)
            .context("the pending move request is not one")?;
        if to_client != destination {
            bail!(
                "a move of {content} to {to_client} is pending in {}: run the same move to \
                 that device",
                dir.display()
            );
        }
        request
    } else {
        let Some(license) = source.license_id(content) else {
            bail!("{} holds no license for {content}", dir.display());
        };
        let request = source.move_request(license, destination, SystemClock.now());
        save(dir, source)?;
        write_atomically(dir, &pending, request.as_bytes())?;
        request.as_bytes().to_vec()
    };
    let certificate = t.certificate(&request).inspect_err(|e| {
        if matches!(e, Error::RequestStale) {
            let _ = fs::remove_file(dir.join(&pending));
        }
    })?;
    write_atomically(dir, &kept, &certificate)?;
    Ok(certificate)
}

/// Moves out of `source` with `certificate` and saves the deletion before the package leaves.
fn package(
    dir: &Path,
    source: &mut Client,
    t: &HttpTransport,
    certificate: &[u8],
) -> anyhow::Result<MovePackage> {
    // The certificate is the destination server's: its newest key list first.
    refresh_server_keys(t, source, unverified(certificate)?.server_id);
    let package = t.with_server_keys(source, |c| c.move_out(certificate))?;
    save(dir, source)?;
    Ok(package)
}

/// Stores `package` on `destination` (in `dir`), with the current EKB and its server's newest
/// key list, and saves it.
fn receive(
    dir: &Path,
    destination: &mut Client,
    t: &HttpTransport,
    package: &MovePackage,
) -> anyhow::Result<()> {
    let content = unverified(&package.certificate)?.content_id;
    destination.store_ekb(&t.current_ekb()?.1)?;
    let server = destination.server();
    refresh_server_keys(t, destination, server);
    match t.with_server_keys(destination, |c| c.move_in(package, SystemClock.now())) {
        Ok(()) => {}
        // Moved in by an earlier run that stopped before it forgot the request: done, if the
        // device still holds what that run stored.
        Err(Error::CertificateReplayed(_)) if destination.license_id(content).is_some() => {}
        Err(e) => return Err(e.into()),
    }
    t.complete(destination, content)?;
    save(dir, destination)
}

/// What a copy certificate says, read without verifying it: where a package goes and what it
/// moves, for routing it (the container to download, whose keys to take); the devices verify
/// it before they act on it.
fn unverified(certificate: &[u8]) -> Result<CopyCertificateTbs, Error> {
    Ok(Unverified::<CopyCertificateTbs>::from_bytes(certificate)?
        .unverified()
        .clone())
}

/// Forgets the source's kept request and certificate once the package is handed on.
fn forget_pending(dir: &Path, content: ContentId) -> anyhow::Result<()> {
    let pending = format!("pending-move-{}", content.0);
    fs::remove_file(dir.join(format!("{pending}.certificate")))?;
    let _ = fs::remove_file(dir.join(&pending));
    Ok(())
}
