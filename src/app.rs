//! Builds the application: config -> store -> state -> every capability's router ->
//! middleware. The one place that knows every capability.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::accounts::{self, PasswordPolicy, ProfileCache};
use crate::audit::Audit;
use crate::auth::backoff::BackoffRules;
use crate::auth::{self, LoginBackoff, SessionCache, TokenService};
use crate::config::Config;
use crate::crypto::keys::{self, KeyRing};
use crate::crypto::password::{HashSettings, PasswordHasher};
use crate::crypto::secret::{self, MasterKey, SecretSource};
use crate::error::AppError;
use crate::events::Events;
use crate::http::guard::{ClientGuard, Guard, GuardLayer};
use crate::http::tls::{self, CertStore};
use crate::http::{RateLimits, cors, edge, problem, server};
use crate::store::notify::{self, Invalidation};
use crate::store::{Backend, Store};
use crate::telemetry::errors::Reporter;
use crate::{admin, events, oidc, openapi, ops};

/// Everything a request handler may need. Cloning is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub config: Config,
    pub store: Store,
    pub hasher: PasswordHasher,
    pub keys: Arc<KeyRing>,
    pub tokens: TokenService,
    pub sessions: Arc<SessionCache>,
    pub profiles: Arc<ProfileCache>,
    pub policy: PasswordPolicy,
    pub limits: Arc<RateLimits>,
    pub backoff: Arc<LoginBackoff>,
    pub audit: Arc<Audit>,
    pub exporter: ops::metrics::Exporter,
    pub reporter: Option<Arc<Reporter>>,
    pub events: Arc<Events>,
    pub mail: Arc<crate::mail::Mail>,
    /// Seals secrets stored at rest (TOTP secrets).
    pub master: Arc<MasterKey>,
    /// Checks passkey ceremonies for the configured relying party.
    pub webauthn: Arc<webauthn_rs::prelude::Webauthn>,
}

impl axum::extract::FromRef<AppState> for Arc<RateLimits> {
    fn from_ref(app: &AppState) -> Arc<RateLimits> {
        app.limits.clone()
    }
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// Sessions remembered per instance; entries are a few dozen bytes.
const SESSION_CACHE_CAPACITY: usize = 100_000;
/// Profiles remembered per instance; entries are a few hundred bytes.
const PROFILE_CACHE_CAPACITY: usize = 20_000;

impl AppState {
    /// Connects the database, applies migrations when configured to, and loads keys.
    pub async fn build(config: Config) -> anyhow::Result<AppState> {
        let store = Store::connect(&config).await?;
        let applied = store.applied_schema_version().await?;
        let latest = store.latest_schema_version();
        anyhow::ensure!(
            applied <= latest,
            "the database schema (version {applied}) is newer than this binary knows (version {latest}); run a newer portvakt"
        );
        if applied < latest {
            anyhow::ensure!(
                config.migrate_on_start,
                "the database schema is at version {applied}, this binary needs {latest}: run `portvakt migrate` (PORTVAKT_MIGRATE_ON_START is false)"
            );
            store
                .migrate()
                .await
                .context("applying database migrations")?;
            tracing::info!(from = applied, to = latest, "database migrated");
        }

        let (secret_key, source) = secret::resolve(&config)?;
        if let SecretSource::DevFile { created: true } = source {
            tracing::warn!(
                path = %config.data_dir.join(crate::config::DEV_SECRET_FILE).display(),
                "generated a development secret key; set PORTVAKT_SECRET_KEY in production"
            );
        }
        let master = Arc::new(MasterKey::new(&secret_key));
        let audit = Arc::new(Audit::new(&master));
        // Only the run that creates the audit tables signs their empty head: a head found
        // unsigned later is a reset log, and signing it would bless the reset.
        if applied < crate::audit::SCHEMA_VERSION {
            audit
                .seal_genesis(&store)
                .await
                .context("signing the audit log's initial head")?;
        }
        let mail = Arc::new(crate::mail::Mail::new(master.clone()));
        let keys = Arc::new(
            KeyRing::load_or_create(
                store.clone(),
                master.clone(),
                keys::retention(config.access_token_ttl),
                config.access_token_alg,
            )
            .await?,
        );
        // Ends with the ring: a rotation elsewhere reaches this instance within a refresh.
        keys::spawn_refresh(&keys);

        let hasher = PasswordHasher::start(HashSettings {
            memory_kib: config.argon2_memory_kib,
            iterations: config.argon2_iterations,
            parallelism: config.argon2_parallelism,
            threads: config.hash_thread_count(),
            queue: config.hash_queue,
        })
        .context("invalid argon2 settings")?;
        let tokens = TokenService::new(
            keys.clone(),
            config.issuer.clone(),
            config.access_token_ttl,
            config.token_cache_size,
        );
        let sessions = Arc::new(SessionCache::new(config.cache_ttl, SESSION_CACHE_CAPACITY));
        let profiles = Arc::new(ProfileCache::new(config.cache_ttl, PROFILE_CACHE_CAPACITY));
        let backoff = Arc::new(LoginBackoff::new(BackoffRules::from_config(&config)));
        if store.backend() == Backend::Postgres {
            let (s, p, b) = (sessions.clone(), profiles.clone(), backoff.clone());
            let appended = audit.appended();
            let m = mail.clone();
            let k = keys.clone();
            notify::spawn_listener(
                config.database_url.expose_secret().to_string(),
                Arc::new(move |event| match event {
                    Invalidation::Ids { kind, ids }
                        if kind == auth::sessions::INVALIDATION_KIND =>
                    {
                        s.forget_ids(&ids)
                    }
                    Invalidation::Ids { kind, ids }
                        if kind == accounts::cache::INVALIDATION_KIND =>
                    {
                        p.invalidate_ids(&ids)
                    }
                    Invalidation::Ids { kind, ids } if kind == auth::backoff::INVALIDATION_KIND => {
                        b.forget(&ids)
                    }
                    Invalidation::Ids { kind, .. } if kind == crate::audit::APPENDED_KIND => {
                        appended.notify_one()
                    }
                    Invalidation::Ids { kind, .. } if kind == crate::mail::ENQUEUED_KIND => {
                        m.wake()
                    }
                    Invalidation::Ids { kind, .. } if kind == keys::INVALIDATION_KIND => {
                        k.changed()
                    }
                    Invalidation::Ids { .. } => {}
                    Invalidation::Everything => {
                        s.clear();
                        p.clear();
                        m.wake();
                        k.changed();
                        // Appends announced meanwhile were missed: read the log now.
                        appended.notify_one();
                    }
                }),
            );
        }
        let policy = PasswordPolicy {
            min_length: config.password_min_length,
            min_score: config.password_min_score,
        };
        let limits = Arc::new(RateLimits::new(&config));
        let reporter = Reporter::from_config(&config);
        let events = Arc::new(Events::new(&config));
        let webauthn = Arc::new(
            config
                .webauthn
                .webauthn()
                .context("passkeys: the relying party settings")?,
        );
        let state = AppState(Arc::new(AppInner {
            config,
            store,
            hasher,
            keys,
            tokens,
            sessions,
            profiles,
            policy,
            limits,
            backoff,
            audit,
            exporter: ops::metrics::Exporter::default(),
            reporter,
            events,
            mail,
            master,
            webauthn,
        }));
        spawn_housekeeping(&state);
        Ok(state)
    }
}

/// How often idle rate-limit and backoff state is dropped.
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Drops the counters of clients gone quiet, so memory follows active clients. Holds only a
/// weak reference: the task ends with the state.
fn spawn_housekeeping(state: &AppState) {
    let weak = Arc::downgrade(&state.0);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(app) = weak.upgrade() else { break };
            app.limits.forget_idle();
            app.backoff.forget_idle();
        }
    });
}

impl AppState {
    /// Runs a write section on a task of its own, so that it finishes (commit and the cache
    /// updates that follow it) even if the request that started it is dropped mid-way: the
    /// client went away or the request timed out. Otherwise a committed revocation could miss
    /// this instance's session cache. Log lines keep the request's context.
    pub async fn to_completion<T, F>(
        &self,
        section: impl FnOnce(AppState) -> F,
    ) -> Result<T, AppError>
    where
        F: Future<Output = Result<T, AppError>> + Send + 'static,
        T: Send + 'static,
    {
        let work = section(self.clone());
        // Task-locals do not cross a spawn: carry the request context over explicitly.
        let context = crate::telemetry::context::current();
        let task = async move {
            match context {
                Some(context) => crate::telemetry::context::scope(context, work).await,
                None => work.await,
            }
        };
        tokio::spawn(task)
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("write task failed: {e}")))?
    }
}

/// The HTTP application: every route and the middleware around them. Pure, so tests can
/// drive it without a socket.
pub fn router(state: AppState) -> Router {
    let config = &state.config;
    // Outermost last. Bodies are only ever read through extractors, which honour
    // `DefaultBodyLimit` (also for bodies streamed without a length); a body-wrapping limit
    // layer on top cost about 5 µs per request for nothing.
    Router::new()
        .merge(accounts::router())
        .merge(admin::router())
        .merge(auth::router())
        .merge(events::router())
        .merge(ops::router(config.metrics_addr.is_none()))
        .merge(oidc::router())
        .merge(openapi::router(config))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(problem::panic_response))
        .layer(GuardLayer(Arc::new(Guard::new(
            config,
            state.limits.clone(),
        ))))
        .layer(tower::util::option_layer(cors::layer(config)))
        .layer(edge::EdgeLayer {
            guard: Arc::new(ClientGuard::new(config)),
            reporter: state.reporter.clone(),
        })
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::NotFound
}

/// How long shutdown waits for database connections to be handed back and closed.
const POOL_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long shutdown waits for the email worker to finish the message in hand.
const MAIL_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A bound, ready-to-serve instance.
pub struct Application {
    listener: TcpListener,
    /// The separate `/metrics` listener, when `metrics_addr` asks for one.
    metrics: Option<TcpListener>,
    state: AppState,
    local_addr: SocketAddr,
    tls: Option<NativeTls>,
}

/// The certificate being served and the SIGHUP task that reloads it.
struct NativeTls {
    store: Arc<CertStore>,
    acceptor: tokio_rustls::TlsAcceptor,
    reloader: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for NativeTls {
    fn drop(&mut self) {
        if let Some(task) = &self.reloader {
            task.abort();
        }
    }
}

impl NativeTls {
    /// Loads the certificate before anything else is started, so a bad file stops the start
    /// early with the file's name.
    fn start(files: &crate::config::TlsFiles) -> anyhow::Result<NativeTls> {
        let (store, summary) = CertStore::open(files.clone())?;
        tls::log_certificate(&summary, "TLS certificate loaded");
        let acceptor = store.acceptor()?;
        #[cfg(unix)]
        let reloader =
            Some(tls::reload_on_sighup(store.clone()).context("cannot listen for SIGHUP")?);
        #[cfg(not(unix))]
        let reloader = None;
        Ok(NativeTls {
            store,
            acceptor,
            reloader,
        })
    }
}

impl Application {
    /// Builds the state and binds the listen address (`config.addr`; port 0 picks one).
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let started = Instant::now();
        let addr = config.addr;
        let tls = config.tls.as_ref().map(NativeTls::start).transpose()?;
        let state = AppState::build(config).await?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local_addr = listener.local_addr()?;
        let metrics = match state.config.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {addr}"))?,
            ),
            None => None,
        };
        tracing::info!(
            addr = %local_addr,
            tls = tls.is_some(),
            issuer = %state.config.issuer,
            env = %state.config.env,
            database = state.store.backend().name(),
            startup_ms = started.elapsed().as_millis() as u64,
            "portvakt is ready"
        );
        if let Some(m) = &metrics {
            tracing::info!(addr = %m.local_addr()?, "serving /metrics on its own listener");
        }
        Ok(Application {
            listener,
            metrics,
            state,
            local_addr,
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The address of the separate metrics listener, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The certificate store when serving native TLS; `reload()` on it does what SIGHUP does.
    pub fn tls(&self) -> Option<&Arc<CertStore>> {
        self.tls.as_ref().map(|t| &t.store)
    }

    /// Serves until `shutdown` resolves, lets in-flight requests finish, then closes the pool.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        let options = server::ServeOptions {
            header_read_timeout: self.state.config.header_read_timeout,
            max_connections: self.state.config.max_connections,
            max_connections_per_ip: self.state.config.max_connections_per_ip,
            trusted_proxies: self.state.config.trusted_proxies.clone(),
            shutdown_timeout: self.state.config.shutdown_timeout,
        };
        let store = self.state.store.clone();
        let acceptor = self.tls.as_ref().map(|t| t.acceptor.clone());
        let housekeeping = crate::audit::prune::spawn_maintenance(
            store.clone(),
            self.state.audit.clone(),
            self.state.config.audit_retention_days,
        );
        let events = self.state.events.clone();
        let tail = events.spawn_tail(store.clone(), self.state.audit.appended());
        let shutdown_timeout = options.shutdown_timeout;
        let shutdown = {
            let events = events.clone();
            async move {
                shutdown.await;
                // Sockets are not requests in flight: tell them to close with 1001 at once
                // rather than let them hold the drain until its timeout.
                events.shut_down();
            }
        };
        let reporter = self.state.reporter.clone();
        // Both listeners stop on the one shutdown signal.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let metrics_server = self.metrics.map(|listener| {
            let app = ops::metrics_router()
                .layer(CatchPanicLayer::custom(problem::panic_response))
                .with_state(self.state.clone());
            let options = options.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                server::serve(listener, app, options, None, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            })
        });
        let (mail_stop, mail_stop_rx) = tokio::sync::watch::channel(false);
        let mail_worker = match crate::mail::worker::spawn(
            store.clone(),
            self.state.mail.clone(),
            &self.state.config,
            mail_stop_rx,
        ) {
            Ok(task) => Some(task),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the email worker cannot start; email stays in the outbox");
                None
            }
        };
        let key_schedule = keys::rotation::spawn_schedule(
            store.clone(),
            self.state.keys.clone(),
            self.state.audit.clone(),
            self.state.config.key_rotation_interval,
        );
        let backups = crate::ops::backup::schedule::Schedule::from_config(&self.state.config)
            .map(|s| crate::ops::backup::schedule::spawn(store.clone(), s));
        server::serve(
            self.listener,
            router(self.state),
            options,
            acceptor,
            async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            },
        )
        .await;
        if let Some(task) = metrics_server {
            let _ = task.await;
        }
        events.closed(shutdown_timeout).await;
        // The worker finishes the message in hand, so that a delivery is recorded before the
        // pool closes; one cut short is sent again after its claim expires.
        let _ = mail_stop.send(true);
        if let Some(mut task) = mail_worker
            && tokio::time::timeout(MAIL_STOP_TIMEOUT, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
        tail.abort();
        housekeeping.abort();
        key_schedule.abort();
        if let Some(task) = backups {
            task.abort();
        }
        if let Some(reporter) = &reporter {
            reporter.flush();
        }
        // Stops the SIGHUP reloader.
        drop(self.tls);
        if tokio::time::timeout(POOL_CLOSE_TIMEOUT, store.close())
            .await
            .is_err()
        {
            tracing::warn!("database connections did not close in time");
        }
        tracing::info!("stopped");
    }
}
