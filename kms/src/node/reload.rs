//! Reloading a running node (SIGHUP, `systemctl reload`), and the one way
//! the configuration is loaded from its file and the environment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::StartError;
use super::parts::{
    app_settings, cache_limits, cert_expiry, load_keystore, refusal_hook, tls_context,
};
use crate::backend::Backend;
use crate::backend::gate::GatedBackend;
use crate::config::restart::AtStart;
use crate::config::{Config, ConfigErrors};
use crate::http::{App, TlsContext};
use crate::metrics::Metrics;

/// Load `path` with this process's environment (`CMX_KMS_*` overrides),
/// logging the warnings: what `serve`, reloads and every command use.
pub fn load_config(path: &Path) -> Result<Config, ConfigErrors> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let loaded = crate::config::load(path, &env)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(loaded.config)
}

/// Re-reads kms.properties and the keystore, validates everything, then swaps
/// the TLS configuration, pinned clients, limits and backend. New connections
/// use them at once; open connections judge their client against the new pins
/// (a new generation number) before their next request. On any error the
/// node keeps its current configuration. A changed key that is read only at
/// start (listeners, connection bounds, the audit file, ...) is not applied:
/// each gets a warning naming the value still in force.
#[derive(Clone)]
pub struct Reloader {
    pub(super) path: PathBuf,
    pub(super) app: Arc<App>,
    pub(super) tls: Arc<ArcSwap<TlsContext>>,
    pub(super) at_start: Arc<AtStart>,
}

impl Reloader {
    /// The node's metrics (reloads are counted there).
    pub fn metrics(&self) -> &Metrics {
        &self.app.metrics
    }

    /// Reload now; on any error the node keeps its current configuration.
    pub fn reload(&self) -> Result<(), StartError> {
        let config = load_config(&self.path)?;
        let keystore = load_keystore(&config)?;
        let ctx = tls_context(
            &config,
            &keystore,
            Some(refusal_hook(self.app.audit.clone())),
        )?;
        let backend = crate::backend::build(&config, &keystore)?;
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
        let kept = self.warn_restart_only(&config);
        tracing::info!(
            pinned_clients = pins,
            needs_restart = kept,
            "configuration reloaded"
        );
        Ok(())
    }

    /// One warning per changed key that only a restart applies; how many.
    fn warn_restart_only(&self, config: &Config) -> usize {
        let changes = self.at_start.changes(config);
        for change in &changes {
            tracing::warn!("{change}");
        }
        changes.len()
    }
}
