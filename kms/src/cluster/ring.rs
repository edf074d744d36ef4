//! Who owns a customer key: rendezvous (highest random weight) hashing over
//! the live members. Every node ranks the members by
//! SHA-256(member || 0 || cache key), highest first; the first is the owner,
//! the next ones are where to go when it does not answer. Removing a member
//! does not change the order of the others, so the nodes that saw a member
//! go down and those that have not yet agree on who comes after it.

use sha2::{Digest, Sha256};

use crate::cache::CacheKey;

/// The weight of `node` (its `ip:port`) for `key`.
pub fn weight(node: &str, key: &CacheKey) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0u8]);
    h.update(key);
    let d = h.finalize();
    let mut w = [0u8; 8];
    w.copy_from_slice(&d[..8]);
    u64::from_be_bytes(w)
}

/// `nodes` ranked for `key`, owner first (ties broken by name).
pub fn rank<T>(key: &CacheKey, nodes: Vec<(String, T)>) -> Vec<(String, T)> {
    let mut scored: Vec<(u64, String, T)> = nodes
        .into_iter()
        .map(|(n, t)| (weight(&n, key), n, t))
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, n, t)| (n, t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(key: &CacheKey, nodes: &[&str]) -> Vec<String> {
        rank(key, nodes.iter().map(|n| ((*n).to_owned(), ())).collect())
            .into_iter()
            .map(|(n, ())| n)
            .collect()
    }

    #[test]
    fn every_node_computes_the_same_order_whatever_its_input_order() {
        let key = [7u8; 32];
        let a = names(&key, &["10.0.0.1:7800", "10.0.0.2:7800", "10.0.0.3:7800"]);
        let b = names(&key, &["10.0.0.3:7800", "10.0.0.1:7800", "10.0.0.2:7800"]);
        assert_eq!(a, b);
    }

    #[test]
    fn removing_a_member_keeps_the_order_of_the_others() {
        let all = [
            "10.0.0.1:7800",
            "10.0.0.2:7800",
            "10.0.0.3:7800",
            "10.0.0.4:7800",
        ];
        for k in 0..50u8 {
            let key = [k; 32];
            let full = names(&key, &all);
            let without: Vec<&str> = all.iter().copied().filter(|n| *n != full[0]).collect();
            assert_eq!(names(&key, &without), full[1..].to_vec());
        }
    }

    #[test]
    fn keys_spread_over_the_members() {
        let all = ["10.0.0.1:7800", "10.0.0.2:7800", "10.0.0.3:7800"];
        let mut owned = std::collections::HashMap::new();
        for k in 0..=255u8 {
            let mut key = [0u8; 32];
            key[0] = k;
            *owned.entry(names(&key, &all)[0].clone()).or_insert(0) += 1;
        }
        assert_eq!(owned.len(), 3);
        assert!(owned.values().all(|n| *n > 40), "{owned:?}");
    }
}
