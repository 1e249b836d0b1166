//! The built-in fake tenant (see shared/docs/emulator.md).
//!
//! An axum server on loopback that behaves like Microsoft Graph (`/v1.0` and
//! `/beta`) and the Entra ID v2.0 token endpoint, over a [`Tenant`] loaded from a
//! fixture ([`Tenant::load`]) or generated from a seed ([`Tenant::generate`]).
//! Where Graph is strict the emulator is strict: permissions per endpoint, the
//! 650-id presence cap, `$top` limits, `ConsistencyLevel: eventual`, opaque signed
//! `$skiptoken`s, sign-ins that show up late, throttling with fractional
//! `Retry-After`, and injectable faults.
//!
//! ```no_run
//! # async fn demo() -> Result<(), graph_emulator::EmulatorError> {
//! use graph_emulator::{self as emulator, EmulatorConfig, GenerateSpec, Tenant};
//! let tenant = Tenant::generate(&GenerateSpec { users: 100, sign_ins: 1000, seed: 1, ..Default::default() });
//! let emu = emulator::start("127.0.0.1:0".parse().unwrap(), EmulatorConfig::new(tenant)).await?;
//! let asset = emu.asset_json("client_credentials")?; // a connector asset pointing at emu
//! # let _ = asset; Ok(()) }
//! ```
//!
//! Runtime knobs for tests: [`RunningEmulator::set_faults`], [`RunningEmulator::fail_next`],
//! [`RunningEmulator::set_throttle`], [`RunningEmulator::set_clock`] /
//! [`RunningEmulator::advance_clock`] (the virtual "now" used for token expiry, throttling
//! windows and sign-in visibility), [`RunningEmulator::add_sign_ins`],
//! [`RunningEmulator::delete_user`] / [`RunningEmulator::delete_user_at_batch`] and the
//! [`RequestLog`].
//!
//! # Module map
//!
//! Data: `tenant` (the fixture model), `generate` (seeded tenants), `faults` (fault
//! plans, throttle limits and windows), `log` (the request log), `error`
//! ([`EmulatorError`]).
//!
//! Serving, each line using only the lines above it (and the data modules):
//! - `sessions`: presence sessions per user (app sessions, preferred presence, status
//!   message) and their aggregate on the virtual clock.
//! - `state`: what every request shares (`Shared`: directory with indexes, virtual
//!   clock, settings, refresh tokens, keys); `odata`: query, path and `$skiptoken`
//!   pieces; `listener`: TCP connections a fault can cut.
//! - `request`: per-request facts (`Ctx`, route family, parsed path, answer marks);
//!   `http_error`: Graph and AADSTS error answers; `access_token`: minting and
//!   validating bearer tokens.
//! - `routes`: the token endpoint and one module per Graph resource, behind one `match`.
//! - `layers`: request log, fault injection, body, authentication and throttling
//!   around the routes; `server` stacks them.
//! - `running`: [`RunningEmulator`], the handle with the test knobs; this file:
//!   configuration, [`start`] and [`start_in_background`].

mod access_token;
mod error;
mod faults;
mod generate;
mod http_error;
mod layers;
mod listener;
mod log;
mod odata;
mod request;
mod routes;
mod running;
mod server;
mod sessions;
mod state;
mod tenant;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use uuid::Uuid;

pub use error::EmulatorError;
pub use faults::{
    Family, FaultKind, FaultPlan, FaultRule, RateLimit, ResourceBucket, ThrottleConfig,
};
pub use generate::{
    DEFAULT_DAY, DELEGATED_PASSWORD, DELEGATED_USER, FULL_APP_CLIENT_ID, FULL_APP_SECRET,
    GenerateSpec, MFA_USER, READ_APP_CLIENT_ID, READ_APP_SECRET, TENANT_ID,
};
pub use log::{LogEntry, RequestLog, TokenRequest};
pub use routes::{NO_PHOTO_CODES, blank_photo_metadata, no_photo_answer};
pub use running::RunningEmulator;
pub use sessions::{APP_COMBINATIONS, PREFERRED_COMBINATIONS};
pub use tenant::{
    AppCertificate, AppRegistration, DelegatedUser, DirectoryObject, Office, Photo, Presence,
    RiskyUser, SignIn, Tenant, Text, User,
};

use listener::{Conn, FaultListener};
use state::{Clock, Directory, Settings, Shared};

/// How to run the emulator. `EmulatorConfig::new(tenant)` gives the defaults.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub tenant: Tenant,
    /// `expires_in` of access tokens (default 3599 s).
    pub token_lifetime: Duration,
    /// Default: Microsoft's published limits, fractional `Retry-After`.
    pub throttle: ThrottleConfig,
    /// Faults at start; when empty, the tenant's `faults:` spec (if any) is used.
    pub faults: FaultPlan,
    /// Also append every request as one JSON line to this file.
    pub request_log_path: Option<PathBuf>,
    /// Start with the virtual clock frozen at this instant (default: real time).
    pub clock: Option<Timestamp>,
    /// Allow a refresh token to be redeemed more than once. Default true, as Entra
    /// does: "refresh tokens aren't revoked when used to acquire new access tokens"
    /// (https://learn.microsoft.com/entra/identity-platform/refresh-tokens); each
    /// answer still carries a new one. `false` makes each single-use (AADSTS70008).
    pub refresh_token_reuse: bool,
    /// Refresh tokens unused this long are refused with AADSTS700082 (default 90 days).
    pub refresh_token_max_inactive: Duration,
    /// How long a `$skiptoken` stays usable, on the virtual clock (default 1 hour);
    /// later it is refused with 400 `Directory_ExpiredPageToken`.
    pub skiptoken_ttl: Duration,
    /// Enforce the sign-in log's retention (30 days with P1/P2, 7 without) and the
    /// 90-day limit of a `createdDateTime` filter, on the virtual clock (default true).
    pub sign_in_retention: bool,
    /// Serve HTTPS with a certificate made at start ([`RunningEmulator::ca_pem`] is its
    /// authority); the base URL is then `https://`.
    pub tls: bool,
}

impl EmulatorConfig {
    pub fn new(tenant: Tenant) -> EmulatorConfig {
        EmulatorConfig {
            tenant,
            token_lifetime: Duration::from_secs(3599),
            throttle: ThrottleConfig::published(),
            faults: FaultPlan::none(),
            request_log_path: None,
            clock: None,
            refresh_token_reuse: true,
            refresh_token_max_inactive: Duration::from_secs(90 * 24 * 3600),
            skiptoken_ttl: Duration::from_secs(3600),
            sign_in_retention: true,
            tls: false,
        }
    }
}

impl Default for EmulatorConfig {
    /// A small generated tenant (`GenerateSpec::default()`).
    fn default() -> Self {
        EmulatorConfig::new(Tenant::generate(&GenerateSpec::default()))
    }
}

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    k[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    k
}

/// Serve `config.tenant` on `listen` (loopback only; port 0 picks a free port).
/// Must be called inside a tokio runtime; the server runs as a task of it.
pub async fn start(
    listen: SocketAddr,
    config: EmulatorConfig,
) -> Result<RunningEmulator, EmulatorError> {
    if !listen.ip().is_loopback() {
        return Err(EmulatorError::NotLoopback(listen));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| EmulatorError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind {
            addr: listen,
            source,
        })?;
    let tls = config.tls.then(tls::generate).transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut shared = build_shared(addr, config)?;
    shared.base_url = format!("{scheme}://{addr}");
    let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
    let shared = Arc::new(shared);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = server::router(shared.clone());
    let serve = axum::serve(
        FaultListener {
            tcp: listener,
            tls: tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server)),
        },
        app.into_make_service_with_connect_info::<Conn>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopped.await;
    });
    tokio::spawn(async move {
        if let Err(e) = serve.await {
            tracing::error!("emulator server: {e}");
        }
    });
    tracing::info!("emulator listening on {scheme}://{addr}");
    Ok(RunningEmulator {
        addr,
        shared,
        ca_pem,
        stop: Some(stop),
        thread: None,
    })
}

/// Like [`start`], on a thread with its own tokio runtime: for plain `#[test]`s and
/// for callers inside another runtime that must not share it.
pub fn start_in_background(
    listen: SocketAddr,
    config: EmulatorConfig,
) -> Result<RunningEmulator, EmulatorError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("msgraph-emulator".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(EmulatorError::Config(format!("tokio runtime: {e}"))));
                    return;
                }
            };
            rt.block_on(async move {
                match start(listen, config).await {
                    Ok(mut emu) => {
                        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                        let inner_stop = emu.stop.take();
                        let _ = tx.send(Ok((
                            emu.addr,
                            emu.shared.clone(),
                            emu.ca_pem.clone(),
                            stop_tx,
                        )));
                        let _ = stop_rx.await;
                        if let Some(s) = inner_stop {
                            let _ = s.send(());
                        }
                        // Let in-flight answers finish, briefly.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|e| EmulatorError::Config(format!("emulator thread: {e}")))?;
    let (addr, shared, ca_pem, stop) = rx
        .recv()
        .map_err(|_| EmulatorError::Config("emulator thread ended early".into()))??;
    Ok(RunningEmulator {
        addr,
        shared,
        ca_pem,
        stop: Some(stop),
        thread: Some(thread),
    })
}

fn build_shared(addr: SocketAddr, config: EmulatorConfig) -> Result<Shared, EmulatorError> {
    let mut faults = config.faults;
    if faults == FaultPlan::none()
        && let Some(spec) = &config.tenant.faults
    {
        faults = FaultPlan::parse(spec).map_err(EmulatorError::Config)?;
    }
    let log = RequestLog::with_file(config.request_log_path.as_deref()).map_err(|source| {
        EmulatorError::Log {
            path: config
                .request_log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            source,
        }
    })?;
    let clock = Clock::default();
    if let Some(at) = config.clock {
        clock.set(at);
    }
    let rng = fastrand::Rng::with_seed(faults.seed);
    Ok(Shared {
        dir: RwLock::new(Directory::new(config.tenant)),
        clock,
        faults: Mutex::new((faults, rng)),
        throttle: Mutex::new((config.throttle, Default::default())),
        refresh: Mutex::default(),
        token_requests: Default::default(),
        log,
        token_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &random_key()),
        pages: odata::PageTokens::new(&random_key()),
        base_url: format!("http://{addr}"),
        settings: Settings {
            token_lifetime: config.token_lifetime,
            refresh_token_reuse: config.refresh_token_reuse,
            refresh_token_max_inactive: config.refresh_token_max_inactive,
            skiptoken_ttl: config.skiptoken_ttl,
            sign_in_retention: config.sign_in_retention,
        },
        batches: Default::default(),
        scheduled_deletions: Default::default(),
        sessions: Default::default(),
    })
}
