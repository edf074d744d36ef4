//! Building and running a node from a validated `Config`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::backend::Backend;
use crate::backend::soft::SoftBackend;
use crate::cache::CacheLimits;
use crate::config::{Config, Protocol};
use crate::http::{self, App, ServeSettings, TlsContext};
use crate::keys::KeyService;
use crate::keystore::{KeyStore, KeystoreError};
use crate::readiness::{ProbeSettings, Readiness};
use crate::tls::{self, PinnedClient, PinnedClients, Role};

/// Why a node could not start. Each is fatal and names what to fix.
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
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Load the keystore the config names.
pub fn load_keystore(config: &Config) -> Result<KeyStore, StartError> {
    let ks = &config.keystore;
    KeyStore::load(&ks.file, &ks.password, ks.key_password.as_ref())
        .map_err(|source| StartError::Keystore { path: ks.file.display().to_string(), source })
}

/// The server's TLS context from the keystore: identity `kms.server.key.alias`,
/// clients pinned from the certificate entries matching the alias patterns.
pub fn tls_context(config: &Config, keystore: &KeyStore) -> Result<TlsContext, StartError> {
    let path = config.keystore.file.display().to_string();
    let server = keystore
        .private_key(&config.server.key_alias)
        .map_err(|source| StartError::Keystore { path: path.clone(), source })?;
    let mut pins = Vec::new();
    for entry in keystore.certificates() {
        let role = if config.clients.backend_aliases.iter().any(|p| p.matches(entry.alias())) {
            Role::Backend
        } else if config.clients.device_aliases.iter().any(|p| p.matches(entry.alias())) {
            Role::Device
        } else {
            continue;
        };
        let pin = PinnedClient::new(entry.alias(), role, entry.cert())
            .map_err(|message| StartError::KeystoreContent { path: path.clone(), message })?;
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
    let pins = Arc::new(PinnedClients::new(pins));
    let cfg = tls::server_config(server.chain().to_vec(), server.key_der(), Arc::clone(&pins), None)?;
    Ok(TlsContext { config: cfg, pins })
}

/// The master-key backend the config selects.
pub fn backend(config: &Config) -> Result<Arc<dyn Backend>, StartError> {
    match config.hsm.protocol {
        Protocol::Soft => {
            tracing::warn!(
                "the soft backend is for development and demos only: the master key is a software key in {}, not in an HSM",
                config.hsm.soft.key_file.display()
            );
            let (b, created) = SoftBackend::open_or_create(&config.hsm.soft.key_file, &config.keystore.password)
                .map_err(|e| StartError::Backend(e.to_string()))?;
            if created {
                tracing::warn!(key_id = b.key_id(), "created a new soft master key");
            }
            Ok(Arc::new(b))
        }
        other => Err(StartError::Backend(format!(
            "kms.hsm.protocol={other} is not available in this build yet"
        ))),
    }
}

/// A node that is listening.
pub struct Node {
    pub local_addr: SocketAddr,
    pub app: Arc<App>,
    pub tls: Arc<ArcSwap<TlsContext>>,
    listener: TcpListener,
    settings: ServeSettings,
    probe: ProbeSettings,
}

impl Node {
    /// Build everything and bind the listener; nothing is served yet.
    pub async fn bind(config: &Config, backend: Arc<dyn Backend>) -> Result<Self, StartError> {
        let keystore = load_keystore(config)?;
        let ctx = tls_context(config, &keystore)?;
        let readiness = Arc::new(Readiness::new(backend.kind().label()));
        let cache = CacheLimits { ttl: config.cache.ttl, max_entries: config.cache.max_entries };
        let app = Arc::new(App {
            keys: KeyService::new(backend, cache),
            readiness,
            max_body: config.server.max_request_bytes,
        });
        let addr = SocketAddr::new(config.server.address, config.server.port);
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        let s = &config.server;
        Ok(Self {
            local_addr,
            app,
            tls: Arc::new(ArcSwap::from_pointee(ctx)),
            listener,
            settings: ServeSettings {
                handshake_timeout: s.handshake_timeout,
                header_timeout: s.header_timeout,
                shutdown_grace: s.shutdown_grace,
                max_connections: s.max_connections,
            },
            probe: ProbeSettings::default(),
        })
    }

    /// Serve until `shutdown` resolves; the readiness canary runs meanwhile.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let backend = Arc::clone(self.app.keys.backend());
        let canary = tokio::spawn(Arc::clone(&self.app.readiness).run(backend, self.probe));
        http::serve(self.listener, self.tls, self.app, self.settings, shutdown).await;
        canary.abort();
    }
}
