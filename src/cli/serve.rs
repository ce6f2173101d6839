//! `treecast serve`: the distributor's license servers as an HTTP service (`treecast-server`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rand_core::SeedableRng;
use treecast::license::registry::StoreSpec;
use treecast::license::{
    Distributor, DistributorConfig, Offer, OfferTerms, ServerId, SystemClock, Tariff,
};
use treecast_keytree::{Authority, TreeConfig, TreeHeight, TreeId};
use treecast_server::{AdminToken, ContentDir, Limits, Service};
use zeroize::Zeroizing;

use super::SchemeArg;
use super::input::read_key_file;

/// Arguments of `treecast serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The distributor key file (see `treecast keygen`).
    #[arg(long)]
    keys: PathBuf,
    /// Sell an offer besides purchases (issue 27), repeatable:
    /// `OFFER:PRICE:DURATION:WINDOW:RENEWABLE_FOR:RENEWAL_PRICE[:renew-expired]`, OFFER one
    /// of `rental`, `subscription`, `loan`, durations in seconds (WINDOW 0 for none), for
    /// example `rental:299:864000:172800:0:0`.
    #[arg(long = "offer", value_parser = parse_offer)]
    offers: Vec<(Offer, u64, OfferTerms)>,
    /// Lend each content to at most this many devices at once (a library's copies).
    #[arg(long)]
    loan_copies: Option<u32>,
    /// The registry: `sqlite:PATH` or `postgres://…` (`memory` keeps nothing after exit).
    #[arg(long, default_value = "sqlite:treecast-registry.sqlite")]
    store: StoreSpec,
    /// The address to listen on; port 0 picks a free one (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The admin bearer token's file; created (mode 0600, a random token) when missing.
    #[arg(long)]
    admin_token: PathBuf,
    /// Hold the signing key of this license server only (repeatable); the others' public keys
    /// are still handed to clients. By default the process holds every server of the key file.
    #[arg(long = "server-id")]
    server_ids: Vec<u32>,
    /// Where published containers are kept (shared by every process of a deployment).
    #[arg(long, default_value = "treecast-contents")]
    content_dir: PathBuf,
    /// The key tree's scheme.
    #[arg(long, value_enum, default_value = "cs")]
    scheme: SchemeArg,
    /// The key tree's height (a stored registry must have been created with it).
    #[arg(long, default_value_t = 32)]
    height: u8,
    /// The largest content the admin publishes in one request, in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    max_content_size: usize,
    /// How many seconds a request may take before it is answered 408.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// How many requests are served at once (a request takes its slot once its body is read).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// How many seconds a request's body may take to arrive before it is answered 408 (for a
    /// publish: the longest pause between two parts of its body).
    #[arg(long, default_value_t = 10)]
    body_timeout: u64,
    /// How many seconds a client may take to send its headers, and a keep-alive connection
    /// may stay idle, before the connection is closed.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// How many seconds a TLS handshake may take.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// How many seconds a write to a client may make no progress (a client that stopped
    /// reading) before its connection is closed.
    #[arg(long, default_value_t = 30)]
    write_timeout: u64,
    /// How many connections may be open at once; more are closed as they are accepted.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// How many connections one client address (an IPv6 /56) may have open at once. Behind a
    /// reverse proxy every connection comes from the proxy: raise it there.
    #[arg(long, default_value_t = 64)]
    max_connections_per_address: usize,
    /// How many publishes run at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 2)]
    max_publishes: usize,
    /// Failed authentications (admin token, user credential) allowed per minute from one
    /// address before it is answered 429; 0: no limit.
    #[arg(long, default_value_t = 10)]
    auth_failures_per_address: u32,
    /// Failed authentications allowed per minute for one user; 0: no limit. Above the
    /// per-address limit, so that one address alone cannot lock a user out.
    #[arg(long, default_value_t = 100)]
    auth_failures_per_user: u32,
    /// Serve HTTPS (rustls) with this PEM certificate chain (with `--tls-key`).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address other than the loopback (refused by default: bearer
    /// tokens and who buys what would cross the network in the clear). Behind a
    /// TLS-terminating proxy on another host, say so with this flag.
    #[arg(long)]
    insecure_http: bool,
}

pub(crate) fn run(args: &ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.tls_cert.is_some() || args.listen.ip().is_loopback() || args.insecure_http,
        "refusing to serve plain HTTP on {}, which is not a loopback address: give \
         --tls-cert and --tls-key, or --insecure-http behind a TLS-terminating proxy",
        args.listen
    );
    let height = TreeHeight::new(args.height)?;
    let keys = read_key_file(&args.keys)?;
    let config = TreeConfig::new(args.scheme.into(), height, TreeId(1));
    let authority = Authority::new(keys.master(), config)?;
    let all = keys.servers();
    for id in &args.server_ids {
        anyhow::ensure!(
            all.iter().any(|s| s.id() == ServerId(*id)),
            "the key file has no license server {id}"
        );
    }
    let held = all
        .iter()
        .filter(|s| args.server_ids.is_empty() || args.server_ids.contains(&s.id().0))
        .cloned();
    let peers = all.iter().map(|s| (s.id(), s.verifying_key()));
    let registry = args.store.open(height).with_context(|| args.store.name())?;
    let distributor = Distributor::new(
        authority,
        held,
        registry,
        tariff(&args.offers, args.loan_copies)?,
        Arc::new(SystemClock),
        DistributorConfig::default(),
    )?
    .with_peer_servers(peers);
    drop(keys);
    let (admin, created) =
        AdminToken::load_or_create(&args.admin_token).map_err(anyhow::Error::msg)?;
    if created {
        eprintln!(
            "wrote a new admin token to {} (mode 0600)",
            args.admin_token.display()
        );
    }
    let contents = ContentDir::open(&args.content_dir)?;
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice())
        .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let rng = rand_chacha::ChaCha20Rng::from_seed(*seed);
    let inline = !matches!(args.store, StoreSpec::Postgres(_));
    let service = Arc::new(Service::new(distributor, contents, admin, rng).inline(inline));
    let mut limits = Limits::default();
    limits.content = args.max_content_size;
    limits.timeout = Duration::from_secs(args.timeout);
    limits.concurrency = args.concurrency.max(1);
    limits.body_timeout = Duration::from_secs(args.body_timeout);
    limits.header_timeout = Duration::from_secs(args.header_timeout);
    limits.handshake_timeout = Duration::from_secs(args.handshake_timeout);
    limits.write_timeout = Duration::from_secs(args.write_timeout.max(1));
    limits.connections = args.max_connections.max(1);
    limits.connections_per_address = args.max_connections_per_address.max(1);
    limits.publishes = args.max_publishes.max(1);
    limits.auth_failures_per_address = args.auth_failures_per_address;
    limits.auth_failures_per_user = args.auth_failures_per_user;
    let app = treecast_server::router(Arc::clone(&service), &limits);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let listener = std::net::TcpListener::bind(args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let scheme = if args.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        println!(
            "treecast serve: listening on {scheme}://{address} ({})",
            args.store.name()
        );
        match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                treecast_server::serve_tls(
                    listener,
                    app,
                    &limits,
                    cert,
                    key,
                    treecast_server::shutdown_signal(),
                )
                .await
                .context("TLS")?;
            }
            _ => {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                treecast_server::serve(listener, app, &limits, treecast_server::shutdown_signal())
                    .await?;
            }
        }
        anyhow::Ok(())
    });
    // The registry is dropped outside the runtime: the PostgreSQL client closes its
    // connections on a runtime of its own, which cannot start inside another.
    drop(runtime);
    drop(service);
    eprintln!("treecast serve: stopped");
    served
}

/// The tariff `serve` sells at: the default prices, the offers given, the loan copies.
fn tariff(offers: &[(Offer, u64, OfferTerms)], loan_copies: Option<u32>) -> anyhow::Result<Tariff> {
    let mut tariff = Tariff::default();
    for &(offer, price, terms) in offers {
        tariff = tariff.with_offer(offer, price, terms)?;
    }
    Ok(match loan_copies {
        Some(copies) => tariff.with_loan_copies(copies),
        None => tariff,
    })
}

/// An `--offer` argument: `OFFER:PRICE:DURATION:WINDOW:RENEWABLE_FOR:RENEWAL_PRICE[:renew-expired]`.
fn parse_offer(text: &str) -> Result<(Offer, u64, OfferTerms), String> {
    let parts: Vec<&str> = text.split(':').collect();
    let usage = || {
        format!(
            "`{text}`: expected OFFER:PRICE:DURATION:WINDOW:RENEWABLE_FOR:RENEWAL_PRICE\
             [:renew-expired] (durations in seconds)"
        )
    };
    let (fields, renew_expired) = match parts.as_slice() {
        [fields @ .., "renew-expired"] if fields.len() == 6 => (fields, true),
        fields if fields.len() == 6 => (fields, false),
        _ => return Err(usage()),
    };
    let [offer, price, duration, window, renewable_for, renewal_price] = fields else {
        return Err(usage());
    };
    let offer: Offer = offer
        .parse()
        .map_err(|e: treecast::license::Error| e.to_string())?;
    let number = |s: &str| s.parse::<u64>().map_err(|_| usage());
    let terms = OfferTerms {
        duration: number(duration)?,
        play_window: u32::try_from(number(window)?).map_err(|_| usage())?,
        renewable_for: number(renewable_for)?,
        renewal_price: number(renewal_price)?,
        renew_expired,
    };
    Ok((offer, number(price)?, terms))
}
