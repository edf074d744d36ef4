//! Building, running and reloading a node from a validated `Config`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::audit::{AuditLog, Notice};
use crate::backend::Backend;
use crate::backend::gate::GatedBackend;
use crate::cache::CacheLimits;
use crate::config::{Config, FrontSettings};
use crate::http::api::AppSettings;
use crate::http::{self, App, ServeSettings, TlsContext};
use crate::keys::KeyService;
use crate::keystore::{KeyStore, KeystoreError};
use crate::limits::{Rate, RateLimiter};
use crate::metrics::Metrics;
use crate::readiness::{ProbeSettings, Readiness, State};
use crate::tls::{self, PinnedClient, PinnedClients, Refusal, RefusalHook, Role};

/// Why a node could not start (or reload). Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("keystore {path}: {source}")]
    Keystore { path: String, source: KeystoreError },
    #[error("keystore {path}: {message}")]
    KeystoreContent { path: String, message: String },
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Backend(String),
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Load the keystore the config names.
pub fn load_keystore(config: &Config) -> Result<KeyStore, StartError> {
    let ks = &config.keystore;
    KeyStore::load(&ks.file, &ks.password, ks.key_password.as_ref()).map_err(|source| {
        StartError::Keystore {
            path: ks.file.display().to_string(),
            source,
        }
    })
}

/// The keystore's certificate entries that are pinned clients, with roles.
pub fn pinned_clients(
    config: &Config,
    keystore: &KeyStore,
) -> Result<Vec<PinnedClient>, StartError> {
    let path = config.keystore.file.display().to_string();
    let mut pins = Vec::new();
    for entry in keystore.certificates() {
        let role = if config
            .clients
            .backend_aliases
            .iter()
            .any(|p| p.matches(entry.alias()))
        {
            Role::Backend
        } else if config
            .clients
            .device_aliases
            .iter()
            .any(|p| p.matches(entry.alias()))
        {
            Role::Device
        } else {
            continue;
        };
        let pin = PinnedClient::new(entry.alias(), role, entry.cert()).map_err(|message| {
            StartError::KeystoreContent {
                path: path.clone(),
                message,
            }
        })?;
        pins.push(pin);
    }
    if pins.is_empty() {
        let patterns: Vec<String> = config
            .clients
            .backend_aliases
            .iter()
            .chain(&config.clients.device_aliases)
            .map(ToString::to_string)
            .collect();
        return Err(tls::TlsError::NoClients(patterns.join(", ")).into());
    }
    Ok(pins)
}

/// The server's TLS context: identity `kms.server.key.alias`, pinned clients.
pub fn tls_context(
    config: &Config,
    keystore: &KeyStore,
    hook: Option<RefusalHook>,
) -> Result<TlsContext, StartError> {
    let server = keystore
        .private_key(&config.server.key_alias)
        .map_err(|source| StartError::Keystore {
            path: config.keystore.file.display().to_string(),
            source,
        })?;
    let pins = Arc::new(PinnedClients::new(pinned_clients(config, keystore)?));
    let cfg = tls::server_config(
        server.chain().to_vec(),
        server.key_der(),
        Arc::clone(&pins),
        hook,
    )?;
    Ok(TlsContext {
        config: cfg,
        pins,
        generation: http::next_generation(),
    })
}

fn app_settings(config: &Config) -> AppSettings {
    let rate = |r: &crate::config::RateLimit| Rate {
        per_second: f64::from(r.rate),
        burst: f64::from(r.burst),
    };
    AppSettings {
        max_body: config.server.max_request_bytes,
        body_timeout: config.server.header_timeout,
        backend_rate: rate(&config.limits.backend),
        device_rate: rate(&config.limits.device),
    }
}

fn cache_limits(config: &Config) -> CacheLimits {
    CacheLimits {
        ttl: config.cache.ttl,
        max_entries: config.cache.max_entries,
        idle: config.cache.idle_ttl,
    }
}

fn serve_settings(config: &Config) -> ServeSettings {
    let s = &config.server;
    ServeSettings {
        handshake_timeout: s.handshake_timeout,
        header_timeout: s.header_timeout,
        idle_timeout: s.idle_timeout,
        shutdown_grace: s.shutdown_grace,
        max_connections: s.max_connections,
        max_lifetime: s.max_connection_lifetime,
        max_pending_per_source: s.max_pending_per_source,
        max_pending: s.max_pending,
    }
}

/// Days until each keystore certificate expires, for the metrics.
fn cert_expiry(keystore: &KeyStore) -> BTreeMap<(String, String), i64> {
    let now = crate::time::unix_now();
    let days = |der: &[u8]| {
        x509_parser::parse_x509_certificate(der)
            .ok()
            .map(|(_, c)| (c.validity().not_after.timestamp() - now).div_euclid(86_400))
    };
    let mut out = BTreeMap::new();
    for (alias, _) in keystore.entries() {
        if let Ok(pk) = keystore.private_key(alias) {
            if let Some(d) = pk.chain().first().and_then(|c| days(c.as_ref())) {
                out.insert((alias.to_owned(), "private-key".to_owned()), d);
            }
        } else if let Ok(c) = keystore.certificate(alias)
            && let Some(d) = days(c.cert().as_ref())
        {
            out.insert((alias.to_owned(), "certificate".to_owned()), d);
        }
    }
    out
}

/// What a refused handshake leaves behind: a metric (counted in the accept
/// loop) and an aggregated audit record (bounded in size and rate).
fn refusal_hook(audit: Option<Arc<AuditLog>>) -> RefusalHook {
    Arc::new(move |why: Refusal, subject: &str, fingerprint: &str| {
        if let Some(audit) = &audit {
            audit.notice(&Notice {
                operation: "tls-handshake",
                outcome: why.audit_outcome(),
                fingerprint,
                subject,
                ..Notice::default()
            });
        }
    })
}

/// A node that is listening.
pub struct Node {
    pub local_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    /// The load balancers' readiness check listener (`kms.health.*`).
    pub health_addr: Option<SocketAddr>,
    pub app: Arc<App>,
    pub tls: Arc<ArcSwap<TlsContext>>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    health_listener: Option<TcpListener>,
    front: Arc<FrontSettings>,
    settings: ServeSettings,
    probe: ProbeSettings,
    config_path: PathBuf,
    /// `kms.cache.type=distributed`: the cluster and its bound port.
    cluster: Option<(Arc<crate::cluster::Cluster>, TcpListener)>,
    /// `kms.control.socket`.
    control_socket: PathBuf,
}

impl Node {
    /// Build everything and bind the listeners; nothing is served yet. A
    /// down backend does not stop this: the node starts `unavailable`.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let keystore = load_keystore(config)?;
        let b = crate::hsm::backend(config, &keystore)?;
        Self::bind_with_backend(config, b).await
    }

    /// As [`Node::bind`], with a backend built by the caller.
    pub async fn bind_with_backend(
        config: &Config,
        backend: Arc<dyn Backend>,
    ) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::default());
        metrics
            .vault_token_ttl_seconds
            .store(-1, std::sync::atomic::Ordering::Relaxed);
        let audit = Some(Arc::new(AuditLog::open(&config.audit.file)?));
        let keystore = load_keystore(config)?;
        let ctx = tls_context(config, &keystore, Some(refusal_hook(audit.clone())))?;
        metrics.set_cert_expiry(cert_expiry(&keystore));
        let gated: Arc<dyn Backend> = Arc::new(GatedBackend::new(
            backend,
            config.limits.backend_concurrency,
            Arc::clone(&metrics),
        ));
        let readiness = Arc::new(Readiness::new(gated.kind().label()));
        let mut keys = KeyService::new(gated, cache_limits(config));
        let cluster = match &config.cache.cluster {
            Some(settings) => {
                let (c, l) = crate::cluster::glue::start(settings, config, &keystore).await?;
                let weak = Arc::downgrade(&c);
                let _ = metrics.extra.set(Box::new(move |o: &mut String| {
                    if let Some(c) = weak.upgrade() {
                        c.render_metrics(o);
                    }
                }));
                keys = keys.with_cluster(Arc::clone(&c));
                Some((c, l))
            }
            None => None,
        };
        let app = Arc::new(App {
            keys: ArcSwap::from_pointee(keys),
            readiness,
            settings: ArcSwap::from_pointee(app_settings(config)),
            metrics,
            audit,
            limiter: RateLimiter::default(),
            probes: crate::http::probing::ProbeWatch::default(),
            ids: crate::http::RequestIds::new(),
        });
        let addr = SocketAddr::new(config.server.address, config.server.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let (metrics_listener, metrics_addr) = if config.metrics.port == 0 {
            (None, None)
        } else {
            let maddr = SocketAddr::new(config.metrics.address, config.metrics.port);
            let l = TcpListener::bind(maddr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: maddr,
                    source,
                })?;
            let a = l.local_addr().ok();
            (Some(l), a)
        };
        let (health_listener, health_addr) = if config.health.port == 0 {
            (None, None)
        } else {
            let haddr = SocketAddr::new(config.health.address, config.health.port);
            let l = TcpListener::bind(haddr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: haddr,
                    source,
                })?;
            let a = l.local_addr().ok();
            (Some(l), a)
        };
        Ok(Self {
            local_addr,
            metrics_addr,
            health_addr,
            app,
            tls: Arc::new(ArcSwap::from_pointee(ctx)),
            listener,
            metrics_listener,
            health_listener,
            front: Arc::new(config.front.clone()),
            settings: serve_settings(config),
            probe: ProbeSettings {
                interval: config.readiness.interval,
                timeout: config.readiness.timeout,
                slow: config.readiness.slow,
            },
            config_path: config.source.clone(),
            cluster,
            control_socket: config.cache.control_socket.clone(),
        })
    }

    /// Change how often and how patiently the readiness canary runs.
    pub fn set_probe_settings(&mut self, probe: ProbeSettings) {
        self.probe = probe;
    }

    /// A handle that reloads this node's configuration.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            path: self.config_path.clone(),
            app: Arc::clone(&self.app),
            tls: Arc::clone(&self.tls),
        }
    }

    /// Serve until `shutdown` resolves, then drain: tell systemd
    /// (`STOPPING=1`), report `draining` on the check listener and, when
    /// there is one (a balancer may be watching), keep serving for
    /// `kms.server.drain-delay` so the balancer takes the node out first;
    /// then close connections (see [`http::serve`]). The readiness canary,
    /// the systemd watchdog, the metrics and check listeners and SIGHUP
    /// reloads run meanwhile.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        self.run_until(shutdown, std::future::pending()).await;
    }

    /// As [`Node::run`]; `cut_drain` resolving during the drain delay ends
    /// it at once (a second SIGTERM: the operator does not want to wait).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()>,
        cut_drain: impl Future<Output = ()>,
    ) {
        let backend = Arc::clone(self.app.keys.load().backend());
        let cache = Arc::downgrade(self.app.keys.load().cache());
        let mut tasks = vec![
            tokio::spawn(crate::cache::sweep(cache)),
            tokio::spawn(Arc::clone(&self.app.readiness).run(backend, self.probe)),
            tokio::spawn(crate::notify::watchdog()),
            tokio::spawn(crate::signals::reload_on_sighup(self.reloader())),
        ];
        if let Some((cluster, l)) = self.cluster {
            tasks.extend(crate::cluster::glue::spawn(&cluster, l, &self.app));
        }
        if let Some(l) = crate::cluster::control::bind(&self.control_socket) {
            tasks.push(tokio::spawn(crate::cluster::control::serve(
                l,
                Arc::clone(&self.app),
            )));
        }
        if let Some(l) = self.metrics_listener {
            tasks.push(tokio::spawn(crate::http::metrics::serve(
                l,
                Arc::clone(&self.app),
            )));
        }
        // Without a check listener no balancer can see `draining`: a
        // delay would only slow the stop.
        let delay = if self.health_listener.is_some() {
            self.front.drain_delay
        } else {
            std::time::Duration::ZERO
        };
        if let Some(l) = self.health_listener {
            tasks.push(tokio::spawn(crate::http::health::serve(
                l,
                Arc::clone(&self.app.readiness),
            )));
        }
        // `cmx-kms drain` (SIGUSR1) and `cmx-kms drain --resume` (SIGUSR2).
        let (retire_tx, retire_rx) = tokio::sync::watch::channel(false);
        tasks.push(tokio::spawn(crate::signals::drain_on_request(
            Arc::clone(&self.app.readiness),
            retire_tx,
            delay,
        )));
        crate::notify::ready(&format!("serving on {}", self.local_addr));
        let audit = self.app.audit.clone();
        let readiness = Arc::clone(&self.app.readiness);
        let drain = async move {
            shutdown.await;
            crate::notify::stopping();
            readiness.set_stopping();
            tracing::info!(
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "draining: the health check reports draining; still serving until the delay ends"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cut_drain => tracing::info!("second stop signal: drain delay cut short"),
            }
        };
        http::serve(
            self.listener,
            self.tls,
            self.app,
            self.settings,
            self.front,
            drain,
            retire_rx,
        )
        .await;
        // Counted refusals and 429s of the current interval: write them now.
        if let Some(audit) = audit {
            audit.flush().await;
        }
        for t in tasks {
            t.abort();
        }
    }
}

/// Re-reads kms.properties and the keystore, validates everything, then swaps
/// the TLS configuration, pinned clients, limits and backend. New connections
/// use them at once; open connections judge their client against the new pins
/// (a new generation number) before their next request. On any error the
/// node keeps its current configuration.
#[derive(Clone)]
pub struct Reloader {
    path: PathBuf,
    app: Arc<App>,
    tls: Arc<ArcSwap<TlsContext>>,
}

impl Reloader {
    pub fn metrics(&self) -> &Metrics {
        &self.app.metrics
    }

    pub fn reload(&self) -> Result<(), StartError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let loaded =
            crate::config::load(&self.path, &env).map_err(|e| StartError::Config(e.to_string()))?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let config = loaded.config;
        let keystore = load_keystore(&config)?;
        let ctx = tls_context(
            &config,
            &keystore,
            Some(refusal_hook(self.app.audit.clone())),
        )?;
        let backend = crate::hsm::backend(&config, &keystore)?;
        // Everything is valid: publish.
        let gated: Arc<dyn Backend> = Arc::new(GatedBackend::new(
            backend,
            config.limits.backend_concurrency,
            Arc::clone(&self.app.metrics),
        ));
        let keys = self.app.keys.load().with_backend(gated);
        // New cache limits apply to the keys already cached: a shorter TTL or
        // a smaller bound evicts now, and kms.cache.ttl=0 empties the cache.
        keys.cache().set_limits(cache_limits(&config));
        self.app.keys.store(Arc::new(keys));
        self.app.settings.store(Arc::new(app_settings(&config)));
        self.app.metrics.set_cert_expiry(cert_expiry(&keystore));
        let pins = ctx.pins.len();
        self.tls.store(Arc::new(ctx));
        tracing::info!(pinned_clients = pins, "configuration reloaded");
        Ok(())
    }
}

/// Readiness as a number for the metrics: 2 ready, 1 degraded, 0 unavailable.
pub fn ready_gauge(state: State) -> u8 {
    match state {
        State::Ready => 2,
        State::Degraded => 1,
        State::Unavailable => 0,
    }
}
