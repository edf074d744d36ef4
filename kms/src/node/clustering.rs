//! How a node starts its part of the cluster: its peer identity from the
//! keystore's `kmsserver` entry, the cluster port, and the key service as
//! the owner that serves other members.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpListener;

use super::StartError;
use crate::cluster::tls::PeerIdentity;
use crate::cluster::wire::FailCode;
use crate::cluster::{Cluster, Owner};
use crate::config::{ClusterSettings, Config};
use crate::envelope::SecretKey;
use crate::http::App;
use crate::keystore::{KeyStore, KeystoreFileError};

/// Build the cluster and bind its port (nothing is served yet).
pub async fn start(
    settings: &ClusterSettings,
    config: &Config,
    keystore: &KeyStore,
) -> Result<(Arc<Cluster>, TcpListener), StartError> {
    let path = config.keystore.file.display().to_string();
    let server = keystore
        .private_key(&config.server.key_alias)
        .map_err(KeystoreFileError::at(&config.keystore.file))?;
    let identity = PeerIdentity::new(server.chain().to_vec(), server.key_der()).ok_or_else(
        || StartError::KeystoreContent {
            path,
            message: format!(
                "entry '{}' has no certificate chain: the cluster needs it to identify this node",
                config.server.key_alias
            ),
        },
    )?;
    let (members, warnings) = settings.resolve().map_err(StartError::ClusterAddress)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let cluster = Cluster::new(members, identity);
    let addr = cluster.settings.local();
    let listener = cluster
        .bind()
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((cluster, listener))
}

/// The key service of a running node, as the owner other members ask.
struct AppOwner(Arc<App>);

#[async_trait]
impl Owner for AppOwner {
    async fn unwrap_for_peer(&self, blob: &[u8]) -> Result<(Arc<SecretKey>, Duration), FailCode> {
        let keys = self.0.keys.load_full();
        // This node's own HSM or Vault is known down: a key not cached here
        // would wait on it (up to its connect timeout) while the asking node
        // waits FALLBACK_AFTER. Say so at once; it unwraps elsewhere.
        if self.0.readiness.current().state == crate::readiness::State::Unavailable {
            let id: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
                <sha2::Sha256 as sha2::Digest>::new(),
                blob,
            ))
            .into();
            if keys.cache().remaining(&id).is_none() {
                return Err(FailCode::Unavailable);
            }
        }
        keys.unwrap_for_peer(blob).await
    }

    fn flush(&self, key: Option<[u8; 16]>) -> u64 {
        let n = self.0.keys.load().cache().flush(key.as_ref());
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

/// Start serving and dialing.
pub fn spawn(
    cluster: &Arc<Cluster>,
    listener: TcpListener,
    app: &Arc<App>,
) -> Vec<tokio::task::JoinHandle<()>> {
    cluster.spawn(listener, Arc::new(AppOwner(Arc::clone(app))))
}
