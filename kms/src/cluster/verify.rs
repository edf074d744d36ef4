//! Keys a peer served, not yet checked by this node's own backend.
//!
//! A member that holds the `kmsserver` key can answer `Get` with any 32
//! bytes (docs/design/cluster.md, decision log 2026-12-05). Decrypts are safe
//! anyway: opening a GCM-wrapped user or workspace key under a wrong customer
//! key fails. Creating one is not: a user key wrapped under a wrong customer
//! key is lost for good. So a key fetched from a peer is marked here, and
//! before this node wraps new material under it (or when a child fails to
//! open under it) it unwraps the customer blob once with its own backend and
//! compares: one backend call per customer key per node, on the rare create
//! path only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cache::CacheKey;
use crate::envelope::SecretKey;
use crate::sync::lock;

use super::Cluster;

/// A mark outlives the cached copy it stands for by this much.
const MARGIN: Duration = Duration::from_secs(5);
/// Above this many marks, expired ones are swept on insert.
const SWEEP_ABOVE: usize = 1024;

/// Marks: customer key (cache id) → (the member that served it, until when
/// the cached copy can live).
#[derive(Default)]
pub(crate) struct Unverified(std::sync::Mutex<HashMap<CacheKey, (String, Instant)>>);

impl Unverified {
    /// `peer` served `id`, cached here for at most `ttl`.
    pub(crate) fn mark(&self, id: CacheKey, peer: &str, ttl: Duration) {
        let now = Instant::now();
        let mut m = lock(&self.0);
        if m.len() > SWEEP_ABOVE {
            m.retain(|_, (_, until)| *until > now);
        }
        m.insert(id, (peer.to_owned(), now + ttl + MARGIN));
    }

    fn get(&self, id: &CacheKey) -> Option<String> {
        let now = Instant::now();
        let mut m = lock(&self.0);
        match m.get(id) {
            Some((peer, until)) if *until > now => Some(peer.clone()),
            Some(_) => {
                m.remove(id);
                None
            }
            None => None,
        }
    }

    fn clear(&self, id: &CacheKey) {
        lock(&self.0).remove(id);
    }
}

/// Equal in constant time (both are keys).
fn same(a: &SecretKey, b: &SecretKey) -> bool {
    a.expose()
        .iter()
        .zip(b.expose())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// What a check found.
pub enum Checked {
    /// The key was not from a peer, or was already checked: use it.
    Trusted,
    /// The peer's key matched this node's own unwrap.
    Confirmed,
    /// The peer's key was wrong: use this one (already logged and counted;
    /// the caller drops the wrong copy from its cache).
    Replaced(SecretKey),
}

impl Cluster {
    /// The member that served `id`, if its key is unchecked.
    pub fn unverified_from(&self, id: &CacheKey) -> Option<String> {
        self.unverified.get(id)
    }

    /// Check `cached` (served by a peer for `id`) against `own`, this node's
    /// own unwrap of the same blob.
    pub fn settle(&self, id: &CacheKey, peer: &str, cached: &SecretKey, own: SecretKey) -> Checked {
        self.unverified.clear(id);
        self.count_unwrap("verify");
        if same(cached, &own) {
            return Checked::Confirmed;
        }
        *lock(&self.refusals).entry("wrong-key").or_default() += 1;
        tracing::error!(
            peer = %crate::text::untrusted(peer),
            "cluster: a member served a customer key that is not the plaintext of the blob asked for \
             (this node's backend unwrapped another key); its copy was dropped and this node's own used. \
             A member that does this holds the kmsserver private key but not the master key: \
             check that host (docs/design/cluster.md)"
        );
        Checked::Replaced(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_expire_and_clear() {
        let u = Unverified::default();
        u.mark([1; 32], "a[1]", Duration::from_secs(60));
        assert_eq!(u.get(&[1; 32]).as_deref(), Some("a[1]"));
        assert_eq!(u.get(&[2; 32]), None);
        u.clear(&[1; 32]);
        assert_eq!(u.get(&[1; 32]), None);
    }

    #[test]
    fn same_compares_every_byte() {
        let a = SecretKey::from_slice(&[7; 32]).unwrap();
        let mut b = [7; 32];
        assert!(same(&a, &SecretKey::from_slice(&b).unwrap()));
        b[31] = 8;
        assert!(!same(&a, &SecretKey::from_slice(&b).unwrap()));
    }
}
