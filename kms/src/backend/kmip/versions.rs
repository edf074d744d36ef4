//! The configured master key's own versions: the only key identifiers a blob
//! may name, and the CBC tag key of each (see [`super::wrapauth`]).
//!
//! A blob that names any other identifier is refused before the HSM is asked
//! anything about it, so the server is no decryption oracle for other keys the
//! `kmsClient` identity may use at the HSM. The list comes from Locate by name
//! (`kms.hsm.key.name`); it is refreshed whenever the node looks up its current
//! version, and, for a blob that names an identifier not on it (a version
//! another node created since), at most once per [`UNKNOWN_REFRESH`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::master_key::KeyInfo;
use super::wrapauth::AuthKey;

/// Least time between two refreshes of the list caused by unknown identifiers.
/// Bounds the HSM calls a client can cause by sending made-up identifiers.
pub(super) const UNKNOWN_REFRESH: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    uids: HashSet<String>,
    refreshed: Option<Instant>,
    auth: HashMap<String, Arc<AuthKey>>,
}

/// The known versions and their tag keys.
#[derive(Default)]
pub(super) struct Versions {
    state: Mutex<State>,
    /// One refresh at a time.
    pub(super) refresh: tokio::sync::Mutex<()>,
    /// One tag-key derivation at a time.
    pub(super) derive: tokio::sync::Mutex<()>,
    /// Spaces the WARN lines about blobs that name no version.
    pub(super) foreign: crate::backend::log_gate::LogGate,
}

impl Versions {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the list with what Locate found. Tag keys of versions that
    /// are gone are dropped (and wiped).
    pub(super) fn record(&self, found: &[KeyInfo]) {
        let mut s = self.state();
        s.uids = found.iter().map(|k| k.uid.clone()).collect();
        s.refreshed = Some(Instant::now());
        let State { uids, auth, .. } = &mut *s;
        auth.retain(|uid, _| uids.contains(uid));
    }

    /// Whether `uid` is one of the master key's versions.
    pub(super) fn contains(&self, uid: &str) -> bool {
        self.state().uids.contains(uid)
    }

    /// Whether the last look found no version at all.
    pub(super) fn is_empty(&self) -> bool {
        self.state().uids.is_empty()
    }

    /// Whether an unknown identifier may cause a refresh now.
    pub(super) fn may_refresh(&self) -> bool {
        self.state()
            .refreshed
            .is_none_or(|at| at.elapsed() >= UNKNOWN_REFRESH)
    }

    /// The tag key of `uid`, if derived already.
    pub(super) fn auth_key(&self, uid: &str) -> Option<Arc<AuthKey>> {
        self.state().auth.get(uid).cloned()
    }

    pub(super) fn insert_auth_key(&self, uid: &str, key: AuthKey) -> Arc<AuthKey> {
        let key = Arc::new(key);
        self.state().auth.insert(uid.to_owned(), Arc::clone(&key));
        key
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::backend::kmip::response::KeyAttributes;

    fn info(uid: &str) -> KeyInfo {
        KeyInfo {
            uid: uid.into(),
            attributes: KeyAttributes::default(),
        }
    }

    #[test]
    fn only_listed_versions_are_known_and_refreshes_are_spaced() {
        let v = Versions::default();
        assert!(!v.contains("1"));
        assert!(v.may_refresh(), "never refreshed");
        v.record(&[info("1"), info("2")]);
        assert!(v.contains("1") && v.contains("2") && !v.contains("3"));
        assert!(!v.may_refresh(), "just refreshed");
        let k = AuthKey::from_derivation(&[1u8; super::super::wrapauth::DERIVATION_OUTPUT_LEN])
            .unwrap();
        v.insert_auth_key("1", k);
        assert!(v.auth_key("1").is_some());
        // Version 1 destroyed: its tag key goes with it.
        v.record(&[info("2"), info("3")]);
        assert!(!v.contains("1") && v.auth_key("1").is_none());
    }
}
