//! Building, running and reloading a node from a validated `Config`.
//!
//! - [`parts`]: the keystore, pinned clients, TLS context and settings.
//! - [`reload`]: [`Reloader`] (SIGHUP) and [`load_config`].
//! - [`signals`]: SIGTERM/SIGINT, SIGHUP, SIGUSR1/SIGUSR2.
//! - [`clustering`]: the node's part of the cluster; [`control`]: the control
//!   socket behind `cache flush` and `cluster status`.
//! - [`files`]: the files the configuration names, checked before a start
//!   and by `check-config`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::audit::AuditLog;
use crate::backend::gate::GatedBackend;
use crate::backend::{Backend, BuildError};
use crate::config::restart::AtStart;
use crate::config::{Config, ConfigErrors, FrontSettings};
use crate::hierarchy::KeyService;
use crate::http::{self, App, ServeSettings, TlsContext};
use crate::keystore::KeystoreFileError;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::readiness::{ProbeSettings, Readiness};
use crate::tls;

mod clustering;
pub mod control;
pub mod files;
mod parts;
mod reload;
pub mod signals;

use parts::{app_settings, cache_limits, cert_expiry, refusal_hook, serve_settings};
pub use parts::{load_keystore, pinned_clients, tls_context, unmatched_aliases};
pub use reload::{Reloader, load_config};

/// Why a node could not start (or reload). Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The keystore does not open, or lacks an entry.
    #[error(transparent)]
    Keystore(#[from] KeystoreFileError),
    /// An entry is there but unusable (a pinned certificate that does not parse).
    #[error("keystore {path}: {message}")]
    KeystoreContent {
        /// The keystore file.
        path: String,
        /// What is wrong with the entry.
        message: String,
    },
    /// The server's TLS configuration cannot be made.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// The backend cannot be made from the configuration.
    #[error(transparent)]
    Backend(#[from] BuildError),
    /// The audit file cannot be opened.
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    /// kms.properties does not load (on a reload; at start the commands load it).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// `kms.cluster.address` does not resolve to an address of this host.
    #[error("kms.cluster.address: {0}")]
    ClusterAddress(String),
    /// The reload task panicked or was cancelled: a bug, not a configuration problem.
    #[error("reload task failed: {0}")]
    ReloadTask(#[from] tokio::task::JoinError),
    /// A port cannot be bound.
    #[error("cannot listen on {addr}: {source} ({})", bind_hint(.source))]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The next step after a failed bind, by its cause.
fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc_errno) if libc_errno == nix::errno::Errno::EADDRNOTAVAIL as i32 => {
            "this host has no such address: check the address setting, or `ip addr` on this host"
        }
        Some(libc_errno) if libc_errno == nix::errno::Errno::EACCES as i32 => {
            "a port below 1024 needs root or CAP_NET_BIND_SERVICE"
        }
        _ => "is another process using the port?",
    }
}

impl StartError {
    /// What is wrong, one item per problem: each error of a configuration
    /// that does not load, else the one error.
    pub fn problems(&self) -> Vec<String> {
        match self {
            Self::Config(errors) if !errors.errors.is_empty() => {
                errors.errors.iter().map(ToString::to_string).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

/// Bind an optional listener (`kms.metrics.*`, `kms.health.*`): none for port 0.
async fn bind_optional(
    address: std::net::IpAddr,
    port: u16,
) -> Result<(Option<TcpListener>, Option<SocketAddr>), StartError> {
    if port == 0 {
        return Ok((None, None));
    }
    let addr = SocketAddr::new(address, port);
    let l = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let a = l.local_addr().ok();
    Ok((Some(l), a))
}

/// A node that is listening.
pub struct Node {
    /// The API listener's address (the real port when 0 was asked).
    pub local_addr: SocketAddr,
    /// The metrics listener's address (`kms.metrics.*`), if any.
    pub metrics_addr: Option<SocketAddr>,
    /// The load balancers' readiness check listener (`kms.health.*`).
    pub health_addr: Option<SocketAddr>,
    /// The state every request shares.
    pub app: Arc<App>,
    /// The TLS context, swapped on reloads.
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
    /// The keys read only at start, as this node started with them.
    at_start: Arc<AtStart>,
    /// SIGHUP, SIGUSR1 and SIGUSR2 as `serve` installed them before the
    /// node was built; those not there are installed when it runs.
    handlers: signals::Handlers,
}

impl Node {
    /// Build everything and bind the listeners; nothing is served yet. A
    /// down backend does not stop this: the node starts `unavailable`.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let keystore = load_keystore(config)?;
        let b = crate::backend::build(config, &keystore)?;
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
        let readiness = Arc::new(Readiness::new(gated.kind().label()).with_audit(audit.clone()));
        let mut keys = KeyService::new(gated, cache_limits(config));
        let cluster = match &config.cache.cluster {
            Some(settings) => {
                let (c, l) = clustering::start(settings, config, &keystore).await?;
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
            lines: crate::http::LineBudget::default(),
            proxy_warnings: crate::http::proxy::untrusted::Warnings::default(),
        });
        let addr = SocketAddr::new(config.server.address, config.server.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let (metrics_listener, metrics_addr) =
            bind_optional(config.metrics.address, config.metrics.port).await?;
        let (health_listener, health_addr) =
            bind_optional(config.health.address, config.health.port).await?;
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
            at_start: Arc::new(AtStart::of(config)),
            handlers: signals::Handlers::default(),
        })
    }

    /// Change how often and how patiently the readiness canary runs.
    pub fn set_probe_settings(&mut self, probe: ProbeSettings) {
        self.probe = probe;
    }

    /// Answer with the signal handlers `serve` installed at its start (see
    /// [`signals::install`]): a signal that came during the start is answered.
    #[must_use]
    pub fn with_handlers(mut self, handlers: signals::Handlers) -> Self {
        self.handlers = handlers;
        self
    }

    /// A handle that reloads this node's configuration.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            path: self.config_path.clone(),
            app: Arc::clone(&self.app),
            tls: Arc::clone(&self.tls),
            at_start: Arc::clone(&self.at_start),
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

    /// The cache sweep, the readiness canary (through the backend of the
    /// latest reload), the systemd watchdog and the SIGHUP reloads (with
    /// `hup`, or a handler installed now).
    fn spawn_background(
        &self,
        hup: Option<tokio::signal::unix::Signal>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let app = Arc::clone(&self.app);
        let backend = move || Arc::clone(app.keys.load().backend());
        let cache = Arc::downgrade(self.app.keys.load().cache());
        vec![
            tokio::spawn(crate::cache::sweep(cache)),
            tokio::spawn(Arc::clone(&self.app.readiness).run(backend, self.probe)),
            tokio::spawn(crate::notify::watchdog()),
            tokio::spawn(signals::reload_on_sighup(self.reloader(), hup)),
        ]
    }

    /// As [`Node::run`]; `cut_drain` resolving during the drain delay ends
    /// it at once (a second SIGTERM: the operator does not want to wait).
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()>,
        cut_drain: impl Future<Output = ()>,
    ) {
        let signals::Handlers { hup, usr1, usr2 } = std::mem::take(&mut self.handlers);
        let mut tasks = self.spawn_background(hup);
        if let Some((cluster, l)) = self.cluster {
            tasks.extend(clustering::spawn(&cluster, l, &self.app));
        }
        if let Some(l) = control::bind(&self.control_socket) {
            tasks.push(tokio::spawn(control::serve(l, Arc::clone(&self.app))));
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
        tasks.push(tokio::spawn(signals::drain_on_request(
            Arc::clone(&self.app.readiness),
            retire_tx,
            delay,
            (usr1, usr2),
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

#[cfg(test)]
mod bind_tests {
    use super::StartError;

    #[test]
    fn a_bind_error_hints_at_its_cause() {
        let text = |errno| {
            StartError::Bind {
                addr: ([10, 9, 9, 9], 24800).into(),
                source: std::io::Error::from_raw_os_error(errno),
            }
            .to_string()
        };
        let missing = text(nix::errno::Errno::EADDRNOTAVAIL as i32);
        assert!(
            missing.contains("this host has no such address"),
            "{missing}"
        );
        assert!(!missing.contains("another process"), "{missing}");
        let busy = text(nix::errno::Errno::EADDRINUSE as i32);
        assert!(
            busy.contains("is another process using the port?"),
            "{busy}"
        );
    }
}
