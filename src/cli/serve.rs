//! `treecast serve`: the distributor's license servers as an HTTP service (`treecast-server`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgMatches, Args, CommandFactory};
use rand_core::SeedableRng;
use treecast::license::registry::StoreSpec;
use treecast::license::{DistributorConfig, Offer, OfferTerms, SystemClock, Tariff};
use treecast_keytree::{TreeConfig, TreeHeight, TreeId};
use treecast_server::{AdminToken, ContentDir, Limits, Metrics, Service};
use zeroize::Zeroizing;

use super::SchemeArg;
use super::logs::LogFormat;

mod config;

/// Arguments of `treecast serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The distributor key file (see `treecast keygen`).
    #[arg(long, env = "TREECAST_KEYS", required_unless_present = "check_config")]
    keys: Option<PathBuf>,
    /// Sell an offer besides purchases (issue 27), repeatable:
    /// `OFFER:PRICE:DURATION:WINDOW:RENEWABLE_FOR:RENEWAL_PRICE[:renew-expired]`, OFFER one
    /// of `rental`, `subscription`, `loan`, durations in seconds (WINDOW 0 for none), for
    /// example `rental:299:864000:172800:0:0`.
    #[arg(long = "offer", env = "TREECAST_OFFER", value_delimiter = ',', value_parser = parse_offer)]
    offers: Vec<(Offer, u64, OfferTerms)>,
    /// Lend each content to at most this many devices at once (a library's copies).
    #[arg(long, env = "TREECAST_LOAN_COPIES")]
    loan_copies: Option<u32>,
    /// The registry: `sqlite:PATH` or `postgres://…` (`memory` keeps nothing after exit).
    #[arg(
        long,
        env = "TREECAST_STORE",
        default_value = "sqlite:treecast-registry.sqlite"
    )]
    store: StoreSpec,
    /// The address to listen on; port 0 picks a free one (the address is printed).
    #[arg(long, env = "TREECAST_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The admin bearer token's file; created (mode 0600, a random token) when missing.
    #[arg(
        long,
        env = "TREECAST_ADMIN_TOKEN",
        required_unless_present = "check_config"
    )]
    admin_token: Option<PathBuf>,
    /// Hold the signing key of this license server only (repeatable); the others' public keys
    /// are still handed to clients. By default the process holds every server of the key file.
    #[arg(long = "server-id", env = "TREECAST_SERVER_ID", value_delimiter = ',')]
    server_ids: Vec<u32>,
    /// The URL of a license server's process, `N=URL` (repeatable): a request for server N
    /// that reaches this process is answered `421 other_server` naming that URL, and clients
    /// follow it (issue 29).
    #[arg(long = "server-url", env = "TREECAST_SERVER_URL", value_delimiter = ',', value_parser = parse_server_url)]
    server_urls: Vec<(u32, String)>,
    /// The storage key ID new content keys are enveloped under (issue 29: to rotate it, start
    /// every process with the next ID, then `treecast admin rekey --to ID` re-wraps the rest).
    #[arg(long, env = "TREECAST_STORAGE_KEY_ID", default_value_t = 1)]
    storage_key_id: u32,
    /// Where published containers are kept (shared by every process of a deployment).
    #[arg(
        long,
        env = "TREECAST_CONTENT_DIR",
        default_value = "treecast-contents"
    )]
    content_dir: PathBuf,
    /// The key tree's scheme.
    #[arg(long, env = "TREECAST_SCHEME", value_enum, default_value = "cs")]
    scheme: SchemeArg,
    /// The key tree's height (a stored registry must have been created with it).
    #[arg(long, env = "TREECAST_HEIGHT", default_value_t = 32)]
    height: u8,
    /// The largest content the admin publishes in one request, in bytes.
    #[arg(long, env = "TREECAST_MAX_CONTENT_SIZE", default_value_t = 256 << 20)]
    max_content_size: usize,
    /// How many seconds a request may take before it is answered 408.
    #[arg(long, env = "TREECAST_TIMEOUT", default_value_t = 30)]
    timeout: u64,
    /// How many requests are served at once (a request takes its slot once its body is read).
    #[arg(long, env = "TREECAST_CONCURRENCY", default_value_t = 256)]
    concurrency: usize,
    /// How many seconds a request's body may take to arrive before it is answered 408 (for a
    /// publish: the longest pause between two parts of its body).
    #[arg(long, env = "TREECAST_BODY_TIMEOUT", default_value_t = 10)]
    body_timeout: u64,
    /// How many seconds a client may take to send its headers, and a keep-alive connection
    /// may stay idle, before the connection is closed.
    #[arg(long, env = "TREECAST_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,
    /// How many seconds a TLS handshake may take.
    #[arg(long, env = "TREECAST_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    handshake_timeout: u64,
    /// How many seconds a write to a client may make no progress (a client that stopped
    /// reading) before its connection is closed.
    #[arg(long, env = "TREECAST_WRITE_TIMEOUT", default_value_t = 30)]
    write_timeout: u64,
    /// How many connections may be open at once; more are closed as they are accepted.
    #[arg(long, env = "TREECAST_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// How many connections one client address (an IPv6 /56) may have open at once. Behind a
    /// reverse proxy every connection comes from the proxy: raise it there.
    #[arg(
        long,
        env = "TREECAST_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 64
    )]
    max_connections_per_address: usize,
    /// How many publishes run at once; more are answered 503 with Retry-After.
    #[arg(long, env = "TREECAST_MAX_PUBLISHES", default_value_t = 2)]
    max_publishes: usize,
    /// Failed authentications (admin token, user credential) allowed per minute from one
    /// address before it is answered 429; 0: no limit.
    #[arg(long, env = "TREECAST_AUTH_FAILURES_PER_ADDRESS", default_value_t = 10)]
    auth_failures_per_address: u32,
    /// Failed authentications allowed per minute for one user; 0: no limit. Above the
    /// per-address limit, so that one address alone cannot lock a user out.
    #[arg(long, env = "TREECAST_AUTH_FAILURES_PER_USER", default_value_t = 100)]
    auth_failures_per_user: u32,
    /// Serve HTTPS (rustls) with this PEM certificate chain (with `--tls-key`).
    #[arg(long, env = "TREECAST_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "TREECAST_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address other than the loopback (refused by default: bearer
    /// tokens and who buys what would cross the network in the clear). Behind a
    /// TLS-terminating proxy on another host, say so with this flag.
    #[arg(long, env = "TREECAST_INSECURE_HTTP")]
    insecure_http: bool,
    /// A file holding the PostgreSQL password (its first line), so that the password is in
    /// neither the URL nor the process's arguments. Without it, and without a password in the
    /// URL, libpq's conventions apply: `PGPASSWORD`, then the passfile (`PGPASSFILE` or
    /// `~/.pgpass`).
    #[arg(long, env = "TREECAST_STORE_PASSWORD_FILE")]
    store_password_file: Option<PathBuf>,
    /// Log lines as `text` or `json` (one object a line), on stderr.
    #[arg(long, env = "TREECAST_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// The log level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or filter directives
    /// (`info,treecast::access=warn` drops the access lines). Every request's access line is
    /// at `info` (`warn` for a refusal, `error` for a failure).
    #[arg(long, env = "TREECAST_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Serve `GET /metrics` on this address instead of the service's (an admin network's);
    /// plain HTTP.
    #[arg(long, env = "TREECAST_METRICS_LISTEN", conflicts_with = "no_metrics")]
    metrics_listen: Option<SocketAddr>,
    /// Record no metrics and serve no `/metrics`.
    #[arg(long, env = "TREECAST_NO_METRICS")]
    no_metrics: bool,
    /// Serve `/metrics` on the service's address even when it is not a loopback address (by
    /// default it is served there only on the loopback; `--metrics-listen` puts it on an admin
    /// network's address).
    #[arg(
        long,
        env = "TREECAST_METRICS_PUBLIC",
        conflicts_with_all = ["no_metrics", "metrics_listen"]
    )]
    metrics_public: bool,
    /// After SIGTERM, answer `/v1/ready` 503 and go on serving for this many seconds (so that a
    /// load balancer sends new requests elsewhere first), then stop accepting connections and
    /// finish the requests in flight.
    #[arg(long, env = "TREECAST_DRAIN_DELAY", default_value_t = 0)]
    drain_delay: u64,
    /// How long a copy certificate stays valid, in seconds: a move package (the web device's,
    /// `client move-out`'s) must be moved in before then, or the move fails and the license is
    /// lost to both devices (the source deleted it).
    #[arg(long, env = "TREECAST_CERTIFICATE_VALIDITY", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=2_592_000))]
    certificate_validity: u64,
    /// Serve the web device's page (issue 30) from this directory at `/app/`: what
    /// `scripts/build-web.sh` builds (`target/web`).
    #[arg(long, env = "TREECAST_APP")]
    app: Option<PathBuf>,
    /// Read settings from this TOML file: its keys are these flags' long names, below flags and
    /// `TREECAST_*` variables in precedence (`docs/operations.md`).
    #[arg(long, env = "TREECAST_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (each value with its source, secrets redacted) and
    /// exit.
    #[arg(long)]
    check_config: bool,
}

/// Reads `serve`'s configuration file, if `--config` names one, into the command line's
/// arguments (`config.rs`); answers `--check-config` and exits.
///
/// # Errors
/// When the file cannot be read or holds something that is not a setting.
pub(crate) fn with_config_file(sub: &ArgMatches) -> anyhow::Result<Option<ArgMatches>> {
    let command = super::Cli::command();
    let serve = command
        .find_subcommand("serve")
        .context("the serve command")?;
    let mut file = None;
    let mut reparsed = None;
    if let Some(path) = sub.get_one::<PathBuf>("config") {
        let from = config::from_file(path, serve, sub)?;
        let all = super::Cli::command()
            .try_get_matches_from(config::with_file_args(&from))
            .unwrap_or_else(|e| e.exit());
        file = Some((path.clone(), from));
        reparsed = Some(all);
    }
    if sub.get_flag("check_config") {
        let effective = reparsed
            .as_ref()
            .and_then(|m| m.subcommand_matches("serve"))
            .unwrap_or(sub);
        config::print_effective(serve, effective, file.as_ref().map(|(p, f)| (p, f)));
        std::process::exit(0);
    }
    Ok(reparsed)
}

pub(crate) fn run(args: &ServeArgs) -> anyhow::Result<()> {
    super::logs::init(args.log_format, &args.log_level)?;
    anyhow::ensure!(
        args.tls_cert.is_some() || args.listen.ip().is_loopback() || args.insecure_http,
        "refusing to serve plain HTTP on {}, which is not a loopback address: give \
         --tls-cert and --tls-key, or --insecure-http behind a TLS-terminating proxy",
        args.listen
    );
    // SIGHUP is caught from here on: its default action would end the process, and a reload
    // may come while the store is still being checked (review of issue 28).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let hangups = runtime.block_on(async { hangup_signal() });
    // The addresses first: a port that is taken stops the process before it creates a
    // registry, a token file or a content directory (issue 28).
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let metrics_listener = args
        .metrics_listen
        .map(|a| {
            std::net::TcpListener::bind(a)
                .with_context(|| format!("cannot listen on {a} (metrics)"))
        })
        .transpose()?;
    let height = TreeHeight::new(args.height)?;
    let (Some(key_file), Some(admin_token)) = (&args.keys, &args.admin_token) else {
        anyhow::bail!("--keys and --admin-token are required");
    };
    let config = TreeConfig::new(args.scheme.into(), height, TreeId(1));
    let keys = super::keys::ServeKeys::load(key_file, config, &args.server_ids)?;
    let password = args
        .store_password_file
        .as_deref()
        .map(read_password)
        .transpose()?;
    let registry = args
        .store
        .open_with_password(height, password.as_ref().map(|p| p.as_str()))
        .with_context(|| args.store.name())?;
    drop(password);
    // A damaged store is refused before it is served (a SQLite file is read whole).
    let probed = std::time::Instant::now();
    registry
        .probe(treecast::license::registry::Probe::Startup)
        .with_context(|| format!("{}: the startup check failed", args.store.name()))?;
    tracing::info!(
        seconds = probed.elapsed().as_secs_f64(),
        "the store passed its startup check"
    );
    let distributor = keys.distributor(
        registry,
        tariff(&args.offers, args.loan_copies)?,
        Arc::new(SystemClock),
        DistributorConfig::default()
            .with_storage_key_id(args.storage_key_id)
            .with_certificate_validity(args.certificate_validity),
    )?;
    let (admin, created) = AdminToken::load_or_create(admin_token).map_err(anyhow::Error::msg)?;
    if created {
        eprintln!(
            "wrote a new admin token to {} (mode 0600)",
            admin_token.display()
        );
    }
    let contents = ContentDir::open(&args.content_dir)?;
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice())
        .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let rng = rand_chacha::ChaCha20Rng::from_seed(*seed);
    let inline = !matches!(args.store, StoreSpec::Postgres(_));
    let service = Arc::new(
        Service::new(distributor, contents, admin, rng)
            .inline(inline)
            .with_server_urls(args.server_urls.iter().cloned()),
    );
    let limits = limits(args);
    let metrics = if args.no_metrics {
        None
    } else {
        Some(
            Metrics::install(env!("CARGO_PKG_VERSION"), env!("TREECAST_COMMIT"))
                .map_err(anyhow::Error::msg)?,
        )
    };
    // `/metrics` on the service's own address only where that address is the loopback (a
    // proxy or an agent on this host decides who reads it) or where the operator says so:
    // elsewhere it would show anyone the build and the traffic (review of issue 28).
    let on_service =
        args.metrics_listen.is_none() && (args.listen.ip().is_loopback() || args.metrics_public);
    let app = treecast_server::router_with_metrics(
        Arc::clone(&service),
        &limits,
        metrics.clone().filter(|_| on_service),
    );
    let app = match &args.app {
        Some(dir) => {
            anyhow::ensure!(
                dir.join("index.html").is_file() && dir.join("pkg").is_dir(),
                "--app {}: not a built web device (scripts/build-web.sh builds one)",
                dir.display()
            );
            treecast_server::app::with_app(app, dir, limits.timeout)
        }
        None => app,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            treecast_server::Tls::load(cert, key).context("TLS")?,
        )),
        _ => None,
    };
    let served = runtime.block_on(async {
        let address = listener.local_addr()?;
        let scheme = if args.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        if let Some(m) = &metrics {
            let m = m.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(5));
                loop {
                    every.tick().await;
                    m.upkeep();
                }
            });
        }
        let metrics_address = match (metrics_listener, &metrics) {
            (Some(l), Some(m)) => {
                let address = l.local_addr()?;
                l.set_nonblocking(true)?;
                let l = tokio::net::TcpListener::from_std(l)?;
                let app =
                    treecast_server::metrics::router(Arc::clone(&service), m.clone(), &limits);
                tokio::spawn(async move {
                    let never = std::future::pending::<()>();
                    let _ = treecast_server::serve(l, app, &limits, never).await;
                });
                format!(", metrics on http://{address}/metrics")
            }
            _ => String::new(),
        };
        println!(
            "treecast serve: listening on {scheme}://{address} ({}){metrics_address}",
            args.store.name()
        );
        tracing::info!(
            address = %address,
            store = %args.store.name(),
            version = env!("CARGO_PKG_VERSION"),
            commit = env!("TREECAST_COMMIT"),
            "listening"
        );
        let drain = Duration::from_secs(args.drain_delay);
        let draining = Arc::clone(&service);
        let shutdown = async move {
            treecast_server::shutdown_signal().await;
            draining.drain();
            tokio::time::sleep(drain).await;
        };
        tokio::spawn(reload_on_hangup(
            hangups,
            Arc::clone(&service),
            admin_token.clone(),
            tls.clone(),
        ));
        match tls {
            Some(tls) => {
                treecast_server::serve_tls(listener, app, &limits, tls, shutdown).await?;
            }
            _ => {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                treecast_server::serve(listener, app, &limits, shutdown).await?;
            }
        }
        anyhow::Ok(())
    });
    // The registry is dropped outside the runtime: the PostgreSQL client closes its
    // connections on a runtime of its own, which cannot start inside another.
    drop(runtime);
    drop(service);
    tracing::info!("stopped");
    eprintln!("treecast serve: stopped");
    served
}

/// On each SIGHUP: reads the admin token file and the TLS files again, without dropping a
/// connection; a file that cannot be read leaves what is in use, and says so in the log.
async fn reload_on_hangup(
    hangups: Hangups,
    service: Arc<Service>,
    token: PathBuf,
    tls: Option<Arc<treecast_server::Tls>>,
) {
    #[cfg(unix)]
    {
        let Some(mut hangups) = hangups else {
            tracing::warn!("SIGHUP cannot be caught: no reloads");
            return;
        };
        while hangups.recv().await.is_some() {
            match AdminToken::load(&token) {
                Ok(admin) => {
                    service.replace_admin_token(admin);
                    tracing::info!(file = %token.display(), "SIGHUP: admin token reloaded");
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: admin token kept"),
            }
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: TLS certificate kept"),
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (hangups, service, token, tls);
}

/// SIGHUP, caught from the moment this is called (`None` where it cannot be).
#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

/// Starts catching SIGHUP (within the runtime).
fn hangup_signal() -> Hangups {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    }
}

/// The service's limits, from the flags.
fn limits(args: &ServeArgs) -> Limits {
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
    limits
}

/// The first line of a password file (at most 4 KiB read), zeroized when dropped.
pub(crate) fn read_password(path: &std::path::Path) -> anyhow::Result<Zeroizing<String>> {
    use std::io::Read;
    let shown = || format!("--store-password-file {}", path.display());
    let file = std::fs::File::open(path).with_context(shown)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().with_context(shown)?.permissions().mode();
        anyhow::ensure!(
            mode & 0o077 == 0,
            "{}: readable by others (mode {:o}); chmod 600 it",
            shown(),
            mode & 0o777
        );
    }
    let mut text = Zeroizing::new(String::new());
    file.take(4096)
        .read_to_string(&mut text)
        .with_context(shown)?;
    let line = text.lines().next().unwrap_or_default();
    anyhow::ensure!(
        !line.is_empty(),
        "--store-password-file {}: empty",
        path.display()
    );
    Ok(Zeroizing::new(line.to_owned()))
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

/// A `--server-url` argument: `N=URL`, the URL `http://` or `https://`.
fn parse_server_url(text: &str) -> Result<(u32, String), String> {
    let usage = || format!("`{text}`: expected N=URL, for example 2=https://licenses-2.example");
    let (id, url) = text.split_once('=').ok_or_else(usage)?;
    let id: u32 = id.trim().parse().map_err(|_| usage())?;
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.contains(char::is_whitespace)
    {
        return Err(usage());
    }
    Ok((id, url.to_owned()))
}
