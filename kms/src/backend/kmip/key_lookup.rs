//! Which master key version: the current one, that new wraps use (looked
//! up by name at the HSM, cached for `current_key_ttl`), and the versions
//! a blob may name (every version under the configured name; a blob naming
//! any other key is refused before the HSM is asked).

use std::time::Instant;

use super::backend::{KmipBackend, refused};
use super::master_key::{self, KeyInfo};
use crate::backend::BackendError;

impl KmipBackend {
    /// Forgets the cached current master key, so the next wrap looks it up.
    pub fn forget_current_key(&self) {
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// The unique identifier of the master key version new wraps use.
    pub async fn current_key(&self) -> Result<String, BackendError> {
        if let Some(uid) = self.cached_key() {
            return Ok(uid);
        }
        // One lookup at a time: concurrent callers wait for its result.
        let _guard = self.lookup.lock().await;
        if let Some(uid) = self.cached_key() {
            return Ok(uid);
        }
        let found = self.key_versions().await?;
        let uid = master_key::choose_current(&self.settings().key_name, &found)?
            .uid
            .clone();
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((uid.clone(), Instant::now()));
        Ok(uid)
    }

    fn cached_key(&self) -> Option<String> {
        let guard = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (uid, at) = guard.as_ref()?;
        (at.elapsed() < self.settings().current_key_ttl).then(|| uid.clone())
    }

    /// Every key version under the configured name, with its state. Also
    /// refreshes the list of identifiers blobs may name.
    pub async fn key_versions(&self) -> Result<Vec<KeyInfo>, BackendError> {
        let found = master_key::find(&self.client, &self.settings().key_name).await?;
        self.versions.record(&found);
        Ok(found)
    }

    /// Accepts `uid` only if it is a version of the configured master key.
    pub(super) async fn admit_uid(&self, uid: &str) -> Result<(), BackendError> {
        if self.versions.contains(uid) {
            return Ok(());
        }
        if self.versions.may_refresh() {
            let _one = self.versions.refresh.lock().await;
            if !self.versions.contains(uid) && self.versions.may_refresh() {
                self.key_versions().await?;
            }
            if self.versions.contains(uid) {
                return Ok(());
            }
        }
        if self.versions.is_empty() {
            // Not the blob's fault: this node sees no master key at all
            // (missing, or owned by another identity). Say so, as a wrap does.
            return Err(master_key::no_master_key(&self.settings().key_name));
        }
        let name = &self.settings().key_name;
        if let Some(held_back) = self.versions.foreign.open() {
            // The identifier comes from the client: quoted, escaped, capped.
            let shown = crate::text::untrusted(uid);
            tracing::warn!(
                key_id = %shown,
                master_key = %name,
                similar_refusals_not_logged = held_back,
                "a wrapped key names HSM key {shown}, which is not a version of master key \
                 {name:?} as this node's kmsClient identity sees it; the client got 422 \
                 invalid-wrapped-key. If this repeats, the likely cause is an operator's: a \
                 second master key of that name created by `cmx-kms hsm init` on a node with \
                 another kmsClient identity (every node must use the same identity), the key \
                 deleted and created again, or the version destroyed; compare \
                 `cmx-kms hsm check` on every node (at most one such line a minute)"
            );
        }
        Err(refused(format!(
            "the blob names HSM key {uid:?}, which is not a version of the master key {name:?}"
        )))
    }
}
