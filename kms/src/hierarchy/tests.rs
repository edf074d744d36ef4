use super::*;
use crate::backend::soft::SoftBackend;
use secrecy::SecretString;
use std::time::Duration;

fn service(dir: &tempfile::TempDir) -> KeyService {
    let (b, created) =
        SoftBackend::open_or_create(&dir.path().join("soft.key"), &SecretString::from("pw"))
            .unwrap();
    assert!(created);
    KeyService::new(
        Arc::new(b),
        CacheLimits {
            ttl: Duration::from_secs(60),
            max_entries: 10,
            idle: Duration::ZERO,
        },
    )
}

fn is_invalid(e: KeyError) -> bool {
    matches!(
        e,
        KeyError::Envelope { .. } | KeyError::Backend(BackendError::InvalidCiphertext(_))
    )
}

#[tokio::test]
async fn full_chain_and_rewrap() {
    let dir = tempfile::tempdir().unwrap();
    let s = service(&dir);
    let (c, _) = s.create_customer_key().await.unwrap();
    let (u, _) = s.create_user_key(&c.blob).await.unwrap();
    let (w, _) = s.create_workspace_key(&c.blob, &u.blob).await.unwrap();
    let (k1, info) = s
        .decrypt_workspace_key(&c.blob, &u.blob, &w.blob)
        .await
        .unwrap();
    assert_eq!(info.customer_key, c.key_id);
    let (k2, _) = s
        .decrypt_workspace_key(&c.blob, &u.blob, &w.blob)
        .await
        .unwrap();
    assert_eq!(k1.expose(), k2.expose());
    let (c2, _) = s.rewrap_customer_key(&c.blob).await.unwrap();
    assert_eq!(c2.key_id, c.key_id);
    assert_ne!(c2.blob, c.blob);
    let (k3, _) = s
        .decrypt_workspace_key(&c2.blob, &u.blob, &w.blob)
        .await
        .unwrap();
    assert_eq!(k1.expose(), k3.expose());
}

#[tokio::test]
async fn every_flipped_bit_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let s = service(&dir);
    let (c, _) = s.create_customer_key().await.unwrap();
    let (u, _) = s.create_user_key(&c.blob).await.unwrap();
    let (w, _) = s.create_workspace_key(&c.blob, &u.blob).await.unwrap();
    for blob_idx in 0..3 {
        let orig = [&c.blob, &u.blob, &w.blob][blob_idx];
        for bit in 0..orig.len() * 8 {
            let mut t = orig.clone();
            t[bit / 8] ^= 1 << (bit % 8);
            let mut set = [c.blob.clone(), u.blob.clone(), w.blob.clone()];
            set[blob_idx] = t;
            let r = s.decrypt_workspace_key(&set[0], &set[1], &set[2]).await;
            // Every bit, the master key id's included, is client
            // material: always an invalid blob, never an operator error.
            assert!(
                is_invalid(r.unwrap_err()),
                "blob {blob_idx} bit {bit} accepted or misclassified"
            );
        }
        for len in 0..orig.len() {
            let mut set = [c.blob.clone(), u.blob.clone(), w.blob.clone()];
            set[blob_idx] = orig[..len].to_vec();
            let r = s.decrypt_workspace_key(&set[0], &set[1], &set[2]).await;
            assert!(
                is_invalid(r.unwrap_err()),
                "blob {blob_idx} truncated to {len} accepted"
            );
        }
    }
}

#[tokio::test]
async fn types_and_parents_are_bound() {
    let dir = tempfile::tempdir().unwrap();
    let s = service(&dir);
    let (c, _) = s.create_customer_key().await.unwrap();
    let (c_other, _) = s.create_customer_key().await.unwrap();
    let (u, _) = s.create_user_key(&c.blob).await.unwrap();
    let (w, _) = s.create_workspace_key(&c.blob, &u.blob).await.unwrap();
    // A user key passed as the workspace key.
    let e = s
        .decrypt_workspace_key(&c.blob, &u.blob, &u.blob)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("expected a workspace key but got a user key"),
        "{e}"
    );
    // A user key under another customer key.
    let e = s
        .decrypt_workspace_key(&c_other.blob, &u.blob, &w.blob)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not belong"), "{e}");
    // A workspace key relabelled as a user key fails authentication.
    let mut relabel = w.blob.clone();
    relabel[5] = KeyType::User as u8;
    let e = s.create_workspace_key(&c.blob, &relabel).await.unwrap_err();
    assert!(is_invalid(e));
    // Another format version.
    let mut v2 = c.blob.clone();
    v2[4] = 2;
    let e = s.create_user_key(&v2).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("unsupported wrapped-key format version 2"),
        "{e}"
    );
}
