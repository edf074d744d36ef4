//! The key hierarchy: customer keys under the backend's master key, user keys
//! under customer keys, workspace keys under user keys.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::backend::{Backend, BackendError, BackendKind};
use crate::cache::{CacheLimits, KeyCache, Lookup};
use crate::envelope::{
    CryptoError, CustomerEnvelope, Envelope, EnvelopeError, Header, KeyId, KeyType, SecretKey,
    open_local, seal_local,
};

/// Why a key operation failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KeyError {
    /// The client sent a blob that is not a valid envelope of the expected kind.
    #[error("{field}: {source}")]
    Envelope {
        field: &'static str,
        source: EnvelopeError,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl KeyError {
    fn envelope(field: &'static str) -> impl FnOnce(EnvelopeError) -> Self {
        move |source| Self::Envelope { field, source }
    }
}

/// A freshly wrapped key.
#[derive(Clone, Debug)]
pub struct Wrapped {
    pub key_id: KeyId,
    pub blob: Vec<u8>,
}

/// What an operation touched, for logs, metrics and audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpInfo {
    /// The customer key's id (every operation involves one).
    pub customer_key: KeyId,
    /// Whether the customer key came from the cache.
    pub cache: Option<Lookup>,
}

/// The key service: stateless apart from the customer-key cache.
pub struct KeyService {
    backend: Arc<dyn Backend>,
    cache: Arc<KeyCache<KeyError>>,
    /// With `kms.cache.type=distributed`: where cache misses go first.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl KeyService {
    pub fn new(backend: Arc<dyn Backend>, limits: CacheLimits) -> Self {
        Self {
            backend,
            cache: Arc::new(KeyCache::new(limits)),
            cluster: None,
        }
    }

    /// The same service, sharing its cache misses with `cluster`.
    pub fn with_cluster(mut self, cluster: Arc<crate::cluster::Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The cluster this node belongs to, if any.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.as_ref()
    }

    /// The same service over another backend (after a reload), keeping the
    /// cache: cached customer keys are the plaintexts of exact blobs and stay
    /// valid whatever the backend's settings.
    pub fn with_backend(&self, backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            cache: Arc::clone(&self.cache),
            cluster: self.cluster.clone(),
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn backend_kind(&self) -> BackendKind {
        self.backend.kind()
    }

    /// The customer-key cache (shared by every service made by `with_backend`).
    pub fn cache(&self) -> &Arc<KeyCache<KeyError>> {
        &self.cache
    }

    /// (hits, misses) of the customer-key cache.
    pub fn cache_counters(&self) -> (u64, u64) {
        self.cache.counters()
    }

    /// Generate a customer key and wrap it under the master key.
    pub async fn create_customer_key(&self) -> Result<(Wrapped, OpInfo), KeyError> {
        let key = SecretKey::random()?;
        let header = Header {
            key_type: KeyType::Customer,
            key_id: KeyId::random()?,
        };
        let master = self.backend.wrap(key.expose(), &header.to_bytes()).await?;
        let blob = CustomerEnvelope { header, master }
            .encode()
            .map_err(KeyError::envelope("backend wrap"))?;
        let info = OpInfo {
            customer_key: header.key_id,
            cache: None,
        };
        Ok((
            Wrapped {
                key_id: header.key_id,
                blob,
            },
            info,
        ))
    }

    /// Unwrap a customer key, through the cache.
    async fn customer_key(&self, blob: &[u8]) -> Result<(KeyId, Arc<SecretKey>, Lookup), KeyError> {
        // Checked in full here, copied into a backend's wrap only on a miss.
        let env = Envelope::decode_customer_ref(blob)
            .map_err(KeyError::envelope("wrapped_customer_key"))?;
        let id: [u8; 32] = Sha256::digest(blob).into();
        let key_id = env.header.key_id;
        let backend = Arc::clone(&self.backend);
        let unwrap = || async move {
            let env = env.to_envelope();
            let plain = backend.unwrap(&env.master, &env.header.to_bytes()).await?;
            SecretKey::from_slice(&plain).ok_or(KeyError::Envelope {
                field: "wrapped_customer_key",
                source: EnvelopeError::Authentication("customer key"),
            })
        };
        let tag = *key_id.as_bytes();
        let (res, lookup) = match &self.cluster {
            None => {
                self.cache
                    .get_or_load_capped(
                        id,
                        tag,
                        || async move { unwrap().await.map(|k| (k, None)) },
                    )
                    .await
            }
            Some(cluster) => {
                self.cache
                    .get_or_load_capped(id, tag, || {
                        cluster.load(&id, blob, self.cache.miss_reason(&id), unwrap)
                    })
                    .await
            }
        };
        Ok((key_id, res?, lookup))
    }

    /// A customer key another member asked this node for (as its owner):
    /// through the cache and its single flight, never forwarded; with how
    /// long it stays cached here.
    pub async fn unwrap_for_peer(
        &self,
        blob: &[u8],
    ) -> Result<(Arc<SecretKey>, std::time::Duration), crate::cluster::wire::FailCode> {
        use crate::cluster::wire::FailCode;
        let env = Envelope::decode_customer(blob).map_err(|_| FailCode::Refused)?;
        let id: [u8; 32] = Sha256::digest(blob).into();
        let backend = Arc::clone(&self.backend);
        let tag = *env.header.key_id.as_bytes();
        let why = self.cache.miss_reason(&id);
        let (res, lookup) = self
            .cache
            .get_or_load_capped(id, tag, || async move {
                let plain = backend.unwrap(&env.master, &env.header.to_bytes()).await?;
                let key = SecretKey::from_slice(&plain).ok_or(KeyError::Envelope {
                    field: "wrapped_customer_key",
                    source: EnvelopeError::Authentication("customer key"),
                })?;
                Ok((key, None))
            })
            .await;
        if let (Lookup::Miss, Some(cluster)) = (lookup, &self.cluster) {
            cluster.count_unwrap(why.label());
        }
        let key = res.map_err(|e| match e {
            KeyError::Backend(b) if b.is_retryable() => FailCode::Unavailable,
            _ => FailCode::Refused,
        })?;
        Ok((key, self.cache.remaining(&id).unwrap_or_default()))
    }

    /// A customer key another member served is checked once with this
    /// node's own backend before new material is wrapped under it
    /// (`cluster::verify`): `Some(this node's key)` when the member's was
    /// wrong (its copy is dropped from the cache), `None` when the cached
    /// key stands.
    async fn check_from_peer(
        &self,
        blob: &[u8],
        cached: &Arc<SecretKey>,
    ) -> Result<Option<Arc<SecretKey>>, KeyError> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        let id: [u8; 32] = Sha256::digest(blob).into();
        let Some(peer) = cluster.unverified_from(&id) else {
            return Ok(None);
        };
        let env =
            Envelope::decode_customer(blob).map_err(KeyError::envelope("wrapped_customer_key"))?;
        let plain = self
            .backend
            .unwrap(&env.master, &env.header.to_bytes())
            .await?;
        let own = SecretKey::from_slice(&plain).ok_or(KeyError::Envelope {
            field: "wrapped_customer_key",
            source: EnvelopeError::Authentication("customer key"),
        })?;
        match cluster.settle(&id, &peer, cached, own) {
            crate::cluster::verify::Checked::Replaced(own) => {
                self.cache.invalidate(Some(&id));
                Ok(Some(Arc::new(own)))
            }
            _ => Ok(None),
        }
    }

    fn open_child(
        parent: &SecretKey,
        parent_id: KeyId,
        blob: &[u8],
        key_type: KeyType,
        field: &'static str,
    ) -> Result<(KeyId, SecretKey), KeyError> {
        let env = Envelope::decode_local(blob, key_type).map_err(KeyError::envelope(field))?;
        let key = open_local(parent, parent_id, &env).map_err(KeyError::envelope(field))?;
        Ok((env.header.key_id, key))
    }

    fn new_child(
        parent: &SecretKey,
        parent_id: KeyId,
        key_type: KeyType,
    ) -> Result<Wrapped, KeyError> {
        let (child, child_id) = (SecretKey::random()?, KeyId::random()?);
        let env = seal_local(parent, parent_id, key_type, child_id, &child)?;
        let blob = env.encode().map_err(KeyError::envelope("new key"))?;
        Ok(Wrapped {
            key_id: child_id,
            blob,
        })
    }

    /// Generate a user key under a customer key.
    pub async fn create_user_key(&self, customer: &[u8]) -> Result<(Wrapped, OpInfo), KeyError> {
        let (cid, ck, lookup) = self.customer_key(customer).await?;
        let ck = self.check_from_peer(customer, &ck).await?.unwrap_or(ck);
        let w = Self::new_child(&ck, cid, KeyType::User)?;
        Ok((
            w,
            OpInfo {
                customer_key: cid,
                cache: Some(lookup),
            },
        ))
    }

    /// Generate a workspace key under a user key.
    pub async fn create_workspace_key(
        &self,
        customer: &[u8],
        user: &[u8],
    ) -> Result<(Wrapped, OpInfo), KeyError> {
        let (cid, ck, lookup) = self.customer_key(customer).await?;
        let ck = self.check_from_peer(customer, &ck).await?.unwrap_or(ck);
        let (uid, uk) = Self::open_child(&ck, cid, user, KeyType::User, "wrapped_user_key")?;
        let w = Self::new_child(&uk, uid, KeyType::Workspace)?;
        Ok((
            w,
            OpInfo {
                customer_key: cid,
                cache: Some(lookup),
            },
        ))
    }

    /// Unwrap a workspace key through its user and customer keys.
    pub async fn decrypt_workspace_key(
        &self,
        customer: &[u8],
        user: &[u8],
        workspace: &[u8],
    ) -> Result<(SecretKey, OpInfo), KeyError> {
        let (cid, ck, lookup) = self.customer_key(customer).await?;
        let (uid, uk) = match Self::open_child(&ck, cid, user, KeyType::User, "wrapped_user_key") {
            Ok(v) => v,
            // A wrong customer key a peer served fails here: check it once.
            Err(e) => match self.check_from_peer(customer, &ck).await {
                Ok(Some(own)) => {
                    Self::open_child(&own, cid, user, KeyType::User, "wrapped_user_key")?
                }
                _ => return Err(e),
            },
        };
        let (_, wk) = Self::open_child(
            &uk,
            uid,
            workspace,
            KeyType::Workspace,
            "wrapped_workspace_key",
        )?;
        Ok((
            wk,
            OpInfo {
                customer_key: cid,
                cache: Some(lookup),
            },
        ))
    }

    /// Re-encrypt a customer key under the backend's current master key
    /// version. The customer key and its id stay the same, so every user and
    /// workspace key under it stays valid.
    pub async fn rewrap_customer_key(
        &self,
        customer: &[u8],
    ) -> Result<(Wrapped, OpInfo), KeyError> {
        let env = Envelope::decode_customer(customer)
            .map_err(KeyError::envelope("wrapped_customer_key"))?;
        let aad = env.header.to_bytes();
        let master = self.backend.rewrap(&env.master, &aad).await?;
        let blob = CustomerEnvelope {
            header: env.header,
            master,
        }
        .encode()
        .map_err(KeyError::envelope("backend wrap"))?;
        let info = OpInfo {
            customer_key: env.header.key_id,
            cache: None,
        };
        Ok((
            Wrapped {
                key_id: env.header.key_id,
                blob,
            },
            info,
        ))
    }
}

#[cfg(test)]
mod tests;
