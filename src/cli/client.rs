//! `treecast client` and `treecast admin`: a person's devices and a distributor's operator,
//! talking to a `treecast serve` over HTTP (the library's `HttpTransport`).
//!
//! A device is a directory (mode 0700): `server` (the service's URL), `key` (the device's
//! signing key, hexadecimal, 0600), `registration` (what registration returned: it holds the
//! device's key set, 0600) and `state` (its contents, licenses and counters: `Client::save`,
//! 0600). Credentials and tokens are read from files, never from the command line.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use treecast::license::credential::UserCredential;
use treecast::license::transport::{HttpTransport, Transport, TransportExt as _};
use treecast::license::{
    Client, ClientId, Clock, ContentId, Error, Offer, Registration, RenewFrom, ServerId,
    SigningKey, SystemClock, UserId,
};
use zeroize::Zeroizing;

use super::input::write_secret_file as write_secret;

mod moves;

/// `treecast client …`: one of a user's devices.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Register a new device of a user into a new device directory.
    Register {
        /// The service's URL, for example `http://127.0.0.1:8080`.
        #[arg(long)]
        server: String,
        /// The user.
        #[arg(long)]
        user: u64,
        /// The file holding the user's credential (from `treecast admin create-user`).
        #[arg(long)]
        credential_file: PathBuf,
        /// The license server to register with.
        #[arg(long, default_value_t = 1)]
        license_server: u32,
        /// The new device directory (it must not exist).
        #[arg(long)]
        device: PathBuf,
        /// For an `https` service with a private certificate authority: its PEM certificate
        /// (kept in the device directory for later commands).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Accept plain `http://` to a host that is not this machine (bearer tokens then cross
        /// the network in the clear; kept in the device directory for later commands).
        #[arg(long)]
        insecure_http: bool,
    },
    /// Buy a content on a device: download its container and acquire a license (a purchase,
    /// or a rental, subscription or loan where the distributor sells one).
    Buy {
        #[command(flatten)]
        device: DeviceArgs,
        /// The content.
        #[arg(long)]
        content: u64,
        /// The offer to buy under.
        #[arg(long, value_enum, default_value = "purchase")]
        offer: OfferArg,
    },
    /// Renew a content's license (a rental, subscription or loan), from its end or from now.
    Renew {
        #[command(flatten)]
        device: DeviceArgs,
        /// The content.
        #[arg(long)]
        content: u64,
        /// Where the extension starts.
        #[arg(long, value_enum, default_value = "end")]
        from: RenewFromArg,
    },
    /// Return a loan or a rental early: the device deletes it, then tells the service.
    Return {
        #[command(flatten)]
        device: DeviceArgs,
        /// The content.
        #[arg(long)]
        content: u64,
    },
    /// Play a content into a file.
    Play {
        /// The device directory.
        #[arg(long)]
        device: PathBuf,
        /// The content.
        #[arg(long)]
        content: u64,
        /// Where to write what plays (`-` for standard output).
        #[arg(long)]
        out: PathBuf,
    },
    /// Move a content from one device of the user to another.
    Move {
        /// The source device directory.
        #[arg(long)]
        from: PathBuf,
        /// The destination device directory.
        #[arg(long)]
        to: PathBuf,
        /// The content.
        #[arg(long)]
        content: u64,
        /// The file holding the user's credential (the destination downloads the container).
        #[arg(long)]
        credential_file: PathBuf,
    },
    /// Move a content out of this device to another device of the user (a browser's, or one on
    /// another machine): write the move package (the copy certificate and this device's release,
    /// secret until the destination uses it) to a new file, for `client move-in` or the web
    /// device, which must move in before the certificate expires (printed). The license is
    /// deleted here before the file is written. A failed run is retried as it was: the same
    /// request, or the same certificate, gives the same package.
    MoveOut {
        /// The source device directory.
        #[arg(long)]
        device: PathBuf,
        /// The content.
        #[arg(long)]
        content: u64,
        /// The destination client's ID (shown by `client status` or the web device's page).
        #[arg(long)]
        to_client: u64,
        /// Where to write the move package (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Move a content into this device from a move package another device wrote (`client
    /// move-out`, or the web device's page): the license it carries is stored once it verifies,
    /// and the content downloaded.
    MoveIn {
        #[command(flatten)]
        device: DeviceArgs,
        /// The move package file.
        #[arg(long)]
        package: PathBuf,
    },
    /// Show a device: its ID, server and licenses, with their state at the service.
    Status {
        #[command(flatten)]
        device: DeviceArgs,
        /// Print each license's status document (JSON) too.
        #[arg(long)]
        documents: bool,
    },
}

/// An offer, on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum OfferArg {
    Purchase,
    Rental,
    Subscription,
    Loan,
}

impl From<OfferArg> for Offer {
    fn from(o: OfferArg) -> Self {
        match o {
            OfferArg::Purchase => Self::Purchase,
            OfferArg::Rental => Self::Rental,
            OfferArg::Subscription => Self::Subscription,
            OfferArg::Loan => Self::Loan,
        }
    }
}

/// Where a renewal's extension starts, on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum RenewFromArg {
    End,
    Now,
}

/// A device and its user's credential.
#[derive(Debug, Args)]
pub(crate) struct DeviceArgs {
    /// The device directory.
    #[arg(long)]
    device: PathBuf,
    /// The file holding the user's credential.
    #[arg(long)]
    credential_file: PathBuf,
}

/// `treecast admin …`: the distributor's operator.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Create a user; write its credential to a new file (mode 0600) and print its ID.
    CreateUser {
        #[command(flatten)]
        admin: AdminArgs,
        /// Where to write the user's credential (it must not exist).
        #[arg(long)]
        credential_out: PathBuf,
    },
    /// Publish a file as a new content; print its ID.
    Publish {
        #[command(flatten)]
        admin: AdminArgs,
        /// The content's plaintext.
        #[arg(long)]
        file: PathBuf,
        /// The file is a clear fragmented MP4, to package with Common Encryption for browsers
        /// (`docs/cenc.md`).
        #[arg(long)]
        cenc: bool,
    },
    /// Rotate a user's credential (issue 29): the old one stops working; the user's devices,
    /// licenses and bills stay. Writes the new credential to a new file.
    RotateCredential {
        #[command(flatten)]
        admin: AdminArgs,
        /// The user.
        #[arg(long)]
        user: u64,
        /// Where to write the new credential (it must not exist).
        #[arg(long)]
        credential_out: PathBuf,
    },
    /// Re-wrap every content key under a new storage key ID, online (issue 29); start the
    /// service with `--storage-key-id` set to it first, so that new contents come under it too.
    Rekey {
        #[command(flatten)]
        admin: AdminArgs,
        /// The storage key ID to re-wrap under.
        #[arg(long)]
        to: u32,
    },
    /// Revoke a client; print the new epoch.
    Revoke {
        #[command(flatten)]
        admin: AdminArgs,
        /// The client.
        #[arg(long)]
        client: u64,
    },
}

/// The service and the admin token.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// The service's URL.
    #[arg(long)]
    server: String,
    /// The admin token's file (as `serve --admin-token` wrote it).
    #[arg(long)]
    admin_token: PathBuf,
    /// For an `https` service with a private certificate authority: its PEM certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Accept plain `http://` to a host that is not this machine (the admin token then
    /// crosses the network in the clear).
    #[arg(long)]
    insecure_http: bool,
}

impl AdminArgs {
    fn transport(&self) -> anyhow::Result<HttpTransport> {
        transport(&self.server, self.ca_file.as_deref(), self.insecure_http)
    }
}

/// A transport to `server`, trusting `ca_file`'s certificates only when given, and plain
/// `http://` to another host only when `insecure_http`.
fn transport(
    server: &str,
    ca_file: Option<&Path>,
    insecure_http: bool,
) -> anyhow::Result<HttpTransport> {
    let t = match ca_file {
        None => HttpTransport::new(server),
        Some(path) => {
            let pem = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            HttpTransport::with_root_certificates(server, &pem)?
        }
    };
    let t = t.with_retries(retries_from_env()?);
    Ok(if insecure_http {
        t.danger_allow_plain_http()
    } else {
        t
    })
}

/// How many times a request is sent at most: `TREECAST_CLIENT_TRIES` (1: no retry), or the
/// transport's default (`Retries::default`: 9, about 15 s of waiting).
fn retries_from_env() -> anyhow::Result<treecast::license::transport::Retries> {
    use treecast::license::transport::Retries;
    let Ok(text) = std::env::var("TREECAST_CLIENT_TRIES") else {
        return Ok(Retries::default());
    };
    let tries: u32 =
        text.parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
            anyhow::anyhow!("TREECAST_CLIENT_TRIES `{text}`: a whole number from 1")
        })?;
    let default = Retries::default();
    Ok(Retries::new(tries, default.first, default.most))
}

pub(crate) fn run_admin(cmd: AdminCommand) -> anyhow::Result<()> {
    let token = |a: &AdminArgs| -> anyhow::Result<Zeroizing<String>> {
        let text = Zeroizing::new(
            fs::read_to_string(&a.admin_token)
                .with_context(|| format!("cannot read {}", a.admin_token.display()))?,
        );
        Ok(Zeroizing::new(text.trim().to_owned()))
    };
    match cmd {
        AdminCommand::CreateUser {
            admin,
            credential_out,
        } => {
            let t = admin.transport()?;
            let (user, credential) = t.create_user(&token(&admin)?)?;
            write_secret(&credential_out, credential.to_hex().as_bytes())?;
            println!("user {}", user.0);
            eprintln!("its credential is in {}", credential_out.display());
        }
        AdminCommand::Publish { admin, file, cenc } => {
            let plain =
                fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let t = admin.transport()?;
            let id = if cenc {
                t.publish_cenc(&token(&admin)?, &plain)?
            } else {
                t.publish(&token(&admin)?, &plain)?
            };
            println!("content {}", id.0);
        }
        AdminCommand::RotateCredential {
            admin,
            user,
            credential_out,
        } => {
            let t = admin.transport()?;
            let file = super::input::create_secret_file(&credential_out)?;
            let rotated = t.rotate_credential(&token(&admin)?, treecast::license::UserId(user));
            let credential = match rotated {
                Ok(credential) => credential,
                Err(e) => {
                    drop(file);
                    let _ = fs::remove_file(&credential_out);
                    return Err(e.into());
                }
            };
            super::input::fill_secret_file(file, &credential_out, credential.to_hex().as_bytes())?;
            println!("user {user}: credential rotated");
            eprintln!("the new credential is in {}", credential_out.display());
        }
        AdminCommand::Rekey { admin, to } => {
            let t = admin.transport()?;
            let (rewrapped, already, changed) = t.rekey(&token(&admin)?, to)?;
            println!(
                "storage key {to}: {rewrapped} re-wrapped, {already} already under it, {changed} \
                 changed meanwhile"
            );
            if changed > 0 {
                eprintln!("run it again to re-wrap the rows that changed meanwhile");
            }
        }
        AdminCommand::Revoke { admin, client } => {
            let t = admin.transport()?;
            let epoch = t.revoke(&token(&admin)?, treecast::license::ClientId(client))?;
            println!("client {client} revoked; epoch {epoch}");
        }
    }
    Ok(())
}

pub(crate) fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Register {
            server,
            user,
            credential_file,
            license_server,
            device,
            ca_file,
            insecure_http,
        } => {
            let credential = read_credential(&credential_file)?;
            anyhow::ensure!(
                !device.exists(),
                "{} exists: a new device needs a new directory",
                device.display()
            );
            // Built beside its final name and renamed into place once complete, so that a
            // failed registration leaves nothing that would stop a retry.
            let partial = partial_dir(&device)?;
            let registered = register(
                &partial,
                (&server, UserId(user), &credential, ServerId(license_server)),
                ca_file.as_deref(),
                insecure_http,
            );
            let id = match registered {
                Ok(id) => id,
                Err(e) => {
                    let _ = fs::remove_dir_all(&partial);
                    return Err(e);
                }
            };
            fs::rename(&partial, &device).inspect_err(|_| {
                let _ = fs::remove_dir_all(&partial);
            })?;
            println!("client {id} of user {user}, registered with server {license_server}");
        }
        ClientCommand::Buy {
            device,
            content,
            offer,
        } => {
            let credential = read_credential(&device.credential_file)?;
            let (mut client, t) = load(&device.device)?;
            let content = ContentId(content);
            // The signed request is kept until its answer is stored: a retry after a lost
            // answer sends the same bytes, which the service answers again (billed once).
            let pending_name = format!("pending-license-{}", content.0);
            let pending = device.device.join(&pending_name);
            let request = if pending.exists() {
                fs::read(&pending).with_context(|| format!("cannot read {}", pending.display()))?
            } else {
                let container = t.download(client.user(), &credential, content)?;
                store_media(&device.device, &mut client, content, container)?;
                let request = client.license_request_for(content, offer.into(), SystemClock.now());
                // The request's nonce is saved as used before the request is kept or sent.
                save(&device.device, &client)?;
                write_atomically(&device.device, &pending_name, request.as_bytes())?;
                request.as_bytes().to_vec()
            };
            if !client.holds(content) && !cenc_path(&device.device, content).exists() {
                let container = t.download(client.user(), &credential, content)?;
                store_media(&device.device, &mut client, content, container)?;
            }
            let license = t.license(&request).inspect_err(|e| {
                if matches!(e, Error::RequestStale) {
                    // Too old to be answered again: the next run makes a new request.
                    let _ = fs::remove_file(&pending);
                }
            })?;
            // The server's newest key list first: a retired key's license is refused.
            let server = client.server();
            refresh_server_keys(&t, &mut client, server);
            t.with_server_keys(&mut client, |c| c.acquire_license(&license))?;
            t.complete(&mut client, content)?;
            save(&device.device, &client)?;
            fs::remove_file(&pending)?;
            println!("bought content {}", content.0);
        }
        ClientCommand::Play {
            device,
            content,
            out,
        } => {
            let (mut client, _) = load(&device)?;
            let content = ContentId(content);
            let cenc = cenc_path(&device, content);
            if cenc.exists() {
                // A Common Encryption MP4: the clear MP4, with the key of this device's license.
                let (kid, key) = client.cenc_key(content)?;
                let protected =
                    fs::read(&cenc).with_context(|| format!("cannot read {}", cenc.display()))?;
                if treecast_cenc::key_id(&protected)?.0 != kid {
                    anyhow::bail!("{} is not content {}'s", cenc.display(), content.0);
                }
                let clear = treecast_cenc::decrypt(
                    &protected,
                    &treecast_cenc::CencKey::from_bytes(*key.secret_bytes()),
                )?;
                if out == Path::new("-") {
                    std::io::stdout().lock().write_all(&clear)?;
                } else {
                    fs::write(&out, &clear)
                        .with_context(|| format!("cannot write {}", out.display()))?;
                }
                eprintln!("played content {} (a Common Encryption MP4)", content.0);
                return Ok(());
            }
            // With the time: a license with terms plays only inside them (issue 27).
            let now = SystemClock.now();
            let header = if out == Path::new("-") {
                client.play_at(content, now, std::io::stdout().lock())?
            } else {
                let mut file = fs::File::create(&out)
                    .with_context(|| format!("cannot create {}", out.display()))?;
                let header = client.play_at(content, now, &mut file)?;
                file.flush()?;
                header
            };
            // A window started and the clock's reading are the device's to keep.
            if client.license_terms(content).is_some() {
                save(&device, &client)?;
            }
            eprintln!("played content {} (epoch {})", content.0, header.epoch);
        }
        ClientCommand::Move {
            from,
            to,
            content,
            credential_file,
        } => moves::between(&from, &to, ContentId(content), &credential_file)?,
        ClientCommand::MoveOut {
            device,
            content,
            to_client,
            out,
        } => moves::out(&device, ContentId(content), ClientId(to_client), &out)?,
        ClientCommand::MoveIn { device, package } => {
            moves::into(&device.device, &device.credential_file, &package)?;
        }
        ClientCommand::Renew {
            device,
            content,
            from,
        } => {
            let (mut client, t) = load(&device.device)?;
            let content = ContentId(content);
            let from = match from {
                RenewFromArg::End => RenewFrom::End,
                RenewFromArg::Now => RenewFrom::Now,
            };
            let request = client.renewal_request(content, from, SystemClock.now())?;
            // The request's nonce is saved as used before the request is sent.
            save(&device.device, &client)?;
            let license = t.renew(request.as_bytes())?;
            let server = client.server();
            refresh_server_keys(&t, &mut client, server);
            t.with_server_keys(&mut client, |c| c.acquire_license(&license))?;
            save(&device.device, &client)?;
            let end = client.license_terms(content).map(|(t, _)| t.not_after().0);
            println!(
                "renewed content {} until {}",
                content.0,
                end.unwrap_or_default()
            );
        }
        ClientCommand::Return { device, content } => {
            let (mut client, t) = load(&device.device)?;
            let content = ContentId(content);
            // The signed request is kept until the service answers: the license is deleted
            // (and saved deleted) before the request exists, and a retry sends the same bytes.
            let pending_name = format!("pending-return-{}", content.0);
            let pending = device.device.join(&pending_name);
            let request = if pending.exists() {
                fs::read(&pending).with_context(|| format!("cannot read {}", pending.display()))?
            } else {
                let (license, receipt) = client.return_license(content)?;
                let request = client.return_request(license, receipt, SystemClock.now());
                save(&device.device, &client)?;
                write_atomically(&device.device, &pending_name, request.as_bytes())?;
                request.as_bytes().to_vec()
            };
            t.give_back(&request)?;
            fs::remove_file(&pending)?;
            println!("returned content {}", content.0);
        }
        ClientCommand::Status { device, documents } => {
            let credential = read_credential(&device.credential_file)?;
            let (client, t) = load(&device.device)?;
            println!(
                "client {} of user {}, server {}",
                client.id().0,
                client.user().0,
                client.server().0
            );
            let held: Vec<ContentId> = client.licensed().collect();
            if held.is_empty() {
                println!("no licenses");
            }
            for content in held {
                if let Some(license) = client.license_id(content) {
                    let state = t.license_state(client.user(), &credential, license)?;
                    match client.license_terms(content) {
                        Some((terms, first_play)) => println!(
                            "content {}: {license} ({state}, {} until {}{})",
                            content.0,
                            terms.offer(),
                            terms.not_after().0,
                            first_play
                                .map_or(String::new(), |at| format!(", first played {}", at.0))
                        ),
                        None => println!("content {}: {license} ({state})", content.0),
                    }
                    if documents {
                        println!(
                            "{}",
                            t.status_document(client.user(), &credential, license)?
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// A new directory beside `device` to build it in: `.NAME.partial-RANDOM`, mode 0700.
fn partial_dir(device: &Path) -> anyhow::Result<PathBuf> {
    let name = device
        .file_name()
        .with_context(|| format!("{}: not a directory name", device.display()))?;
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let partial = device.with_file_name(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        hex::encode(suffix)
    ));
    fs::create_dir(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&partial, fs::Permissions::from_mode(0o700))?;
    }
    Ok(partial)
}

/// Registers a new device into the directory `dir`: its key, registration, server, state.
fn register(
    dir: &Path,
    (server, user, credential, license_server): (&str, UserId, &UserCredential, ServerId),
    ca_file: Option<&Path>,
    insecure_http: bool,
) -> anyhow::Result<u64> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice())
        .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let t = transport(server, ca_file, insecure_http)?;
    let registration = t.register(user, credential, license_server, &key)?;
    write_secret(&dir.join("registration"), &registration.to_bytes())?;
    write_secret(&dir.join("key"), hex::encode(seed.as_slice()).as_bytes())?;
    fs::write(dir.join("server"), server.as_bytes())?;
    if let Some(ca) = ca_file {
        fs::copy(ca, dir.join("ca.pem"))?;
    }
    if insecure_http {
        fs::write(dir.join("insecure-http"), b"")?;
    }
    let mut client = Client::new(key, registration)?;
    client.store_ekb(&t.current_ekb()?.1)?;
    save(dir, &client)?;
    Ok(client.id().0)
}

/// A device from its directory, with the transport to its service (and the current EKB).
fn load(dir: &Path) -> anyhow::Result<(Client, HttpTransport)> {
    let read = |name: &str| {
        fs::read(dir.join(name))
            .with_context(|| format!("{}: not a device directory (no {name})", dir.display()))
    };
    let server = String::from_utf8(read("server")?).context("the server file is not text")?;
    let key_hex = Zeroizing::new(read("key")?);
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(key_hex.trim_ascii(), key.as_mut_slice())
        .context("the key file is not 64 hexadecimal digits")?;
    let registration = Registration::from_bytes(&Zeroizing::new(read("registration")?))?;
    let state = Zeroizing::new(read("state")?);
    let mut client = Client::load(SigningKey::from_bytes(&key), registration, &state)?;
    let ca = dir.join("ca.pem");
    let insecure_http = dir.join("insecure-http").exists();
    let t = transport(
        server.trim(),
        ca.exists().then_some(ca.as_path()),
        insecure_http,
    )?;
    client.store_ekb(&t.current_ekb()?.1)?;
    Ok((client, t))
}

/// Saves a device's state (written to a new file, synced, then renamed over the old one).
fn save(dir: &Path, client: &Client) -> anyhow::Result<()> {
    write_atomically(dir, "state", &client.save())
}

/// Writes `name` in `dir` (mode 0600) as a whole or not at all: a new file, synced, renamed
/// over the old one, so that a crash leaves the old file or the new one, never a cut one.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = dir.join(format!("{name}.new"));
    let _ = fs::remove_file(&temporary);
    write_secret(&temporary, bytes)?;
    fs::rename(&temporary, dir.join(name))?;
    Ok(())
}

fn read_credential(path: &Path) -> anyhow::Result<UserCredential> {
    let text = Zeroizing::new(
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    UserCredential::from_hex(&text).with_context(|| format!("{}: not a credential", path.display()))
}

/// Takes the authority's newest list of `server`'s keys before the device stores what that
/// server signed (issue 29), so that a retired key's objects are refused. A list that cannot be
/// fetched or does not verify is said and left: the device keeps the keys it holds, and an
/// object of a key it lacks still fetches the list (`TransportExt::with_server_keys`).
fn refresh_server_keys(t: &HttpTransport, device: &mut Client, server: ServerId) {
    if let Err(e) = t.refresh_server_keys(device, server) {
        eprintln!("treecast client: the list of {server}'s keys was not taken: {e}");
    }
}

/// Where a device directory keeps a content packaged with Common Encryption: beside its state,
/// not in it (the MP4 is public, and its key is the license's).
fn cenc_path(device: &Path, content: ContentId) -> PathBuf {
    device.join(format!("content-{}.mp4", content.0))
}

/// Stores a downloaded content: treecast's container in the device's state, a Common
/// Encryption MP4 (issue 30) in its own file once its key ID names `content`.
fn store_media(
    dir: &Path,
    client: &mut Client,
    content: ContentId,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    if bytes.get(4..8) != Some(b"ftyp") {
        client.store_content(bytes)?;
        return Ok(());
    }
    let kid = treecast_cenc::key_id(&bytes)?;
    if kid.0 != treecast::license::cenc::key_id(content) {
        anyhow::bail!(
            "the MP4 downloaded for content {} is of another content",
            content.0
        );
    }
    write_atomically(dir, &format!("content-{}.mp4", content.0), &bytes)
}
