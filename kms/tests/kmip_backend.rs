//! The KMIP backend against a real PyKMIP server: init, wrap/unwrap, both
//! cipher paths, rotation, rewrap, concurrency.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/pykmip.rs"]
mod pykmip;

use std::sync::Arc;

use cmx_kms::backend::kmip::{self, KmipBackend, KmipSettings};
use cmx_kms::backend::{Backend, BackendError, BackendKind, WrapAlgorithm};
use pykmip::{Pki, PyKmip};

fn backend(pki: &Pki, settings: KmipSettings) -> KmipBackend {
    let (chain, key) = pki.client_identity();
    KmipBackend::new(settings, chain, key, pki.trust()).expect("backend")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kmip_backend_against_pykmip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&tmp.path().join("pki"));
    let server = PyKmip::start(&pki, &tmp.path().join("pykmip"), "server-ec");

    // Negotiated (1.4 → AES-GCM).
    let gcm = backend(&pki, server.settings("cmx-master"));

    // Before init: no key. wrap says so, as an operator problem.
    let err = gcm.wrap(b"k", b"aad").await.expect_err("no key yet");
    assert!(matches!(err, BackendError::KeyNotFound(_)), "{err:?}");
    assert!(err.to_string().contains("hsm init"), "{err}");

    // init creates and activates; a second init changes nothing.
    let first = kmip::init(&gcm).await.expect("init");
    assert!(first.created, "{first}");
    let again = kmip::init(&gcm).await.expect("init again");
    assert!(!again.created);
    assert_eq!(again.uid, first.uid);
    println!("{first}\n{again}");

    // GCM round trip, AAD bound.
    let secret = [7u8; 32];
    let w = gcm.wrap(&secret, b"customer-1").await.expect("wrap");
    assert_eq!(w.backend, BackendKind::Kmip);
    assert_eq!(w.algorithm, WrapAlgorithm::AesGcm);
    assert_eq!(w.key_id, first.uid);
    assert_eq!((w.iv.len(), w.tag.len(), w.ciphertext.len()), (12, 16, 32));
    let plain = gcm.unwrap(&w, b"customer-1").await.expect("unwrap");
    assert_eq!(plain.as_slice(), &secret);
    let err = gcm.unwrap(&w, b"customer-2").await.expect_err("wrong aad");
    assert!(matches!(err, BackendError::InvalidCiphertext(_)), "{err:?}");
    let mut tampered = w.clone();
    tampered.tag[0] ^= 1;
    let err = gcm
        .unwrap(&tampered, b"customer-1")
        .await
        .expect_err("bad tag");
    assert!(matches!(err, BackendError::InvalidCiphertext(_)), "{err:?}");

    // Pinned 1.2 → AES-CBC-PKCS5 with an HMAC-SHA256 tag (encrypt-then-MAC),
    // and each backend unwraps the other's blobs.
    let mut pinned = server.settings("cmx-master");
    pinned.version = Some((1, 2));
    let cbc = backend(&pki, pinned);
    let c = cbc.wrap(&secret, b"customer-c").await.expect("cbc wrap");
    assert_eq!(c.algorithm, WrapAlgorithm::AesCbcPkcs5HmacSha256);
    assert_eq!((c.iv.len(), c.tag.len(), c.ciphertext.len()), (16, 32, 48));
    assert_eq!(
        cbc.unwrap(&c, b"customer-c")
            .await
            .expect("cbc unwrap")
            .as_slice(),
        &secret
    );
    assert_eq!(
        gcm.unwrap(&c, b"customer-c")
            .await
            .expect("cbc by gcm")
            .as_slice(),
        &secret
    );
    assert_eq!(
        cbc.unwrap(&w, b"customer-1")
            .await
            .expect("gcm by cbc")
            .as_slice(),
        &secret
    );
    // Tampering is caught by the tag, before the HSM decrypts anything:
    // bad padding, a flipped IV or tag, another header (AAD), a stripped tag.
    let decrypts = server.operations_logged("Decrypt");
    let mut bad = c.clone();
    bad.ciphertext[47] ^= 0x55;
    let mut bad_iv = c.clone();
    bad_iv.iv[0] ^= 1;
    let mut bad_tag = c.clone();
    bad_tag.tag[31] ^= 1;
    let mut legacy = c.clone();
    legacy.algorithm = WrapAlgorithm::AesCbcPkcs5;
    legacy.tag.clear();
    for (name, blob, aad) in [
        ("padding", &bad, b"customer-c".as_slice()),
        ("iv", &bad_iv, b"customer-c"),
        ("tag", &bad_tag, b"customer-c"),
        ("aad", &c, b"customer-x"),
        ("legacy, untagged", &legacy, b"customer-c"),
    ] {
        let err = cbc.unwrap(blob, aad).await.expect_err(name);
        assert!(
            matches!(err, BackendError::InvalidCiphertext(_)),
            "{name}: {err:?}"
        );
    }
    assert_eq!(
        server.operations_logged("Decrypt"),
        decrypts,
        "tag checked first"
    );
    // A legacy (untagged) CBC blob opens only through a rewrap, which moves it
    // to an authenticated wrap of the same secret.
    let moved_legacy = cbc
        .rewrap(&legacy, b"customer-c")
        .await
        .expect("rewrap legacy");
    assert_eq!(moved_legacy.algorithm, WrapAlgorithm::AesCbcPkcs5HmacSha256);
    assert_eq!(
        cbc.unwrap(&moved_legacy, b"customer-c")
            .await
            .expect("rewrapped legacy")
            .as_slice(),
        &secret
    );

    // Rotation: new wraps use the new version, old blobs still unwrap, rewrap moves them.
    let rotated = kmip::rotate(&gcm).await.expect("rotate");
    assert_eq!(rotated.previous.as_deref(), Some(first.uid.as_str()));
    assert_ne!(rotated.uid, first.uid);
    println!("{rotated}");
    let w2 = gcm
        .wrap(&secret, b"customer-1")
        .await
        .expect("wrap after rotate");
    assert_eq!(w2.key_id, rotated.uid);
    assert_eq!(
        gcm.unwrap(&w, b"customer-1")
            .await
            .expect("old gcm")
            .as_slice(),
        &secret
    );
    assert_eq!(
        gcm.unwrap(&c, b"customer-c")
            .await
            .expect("old cbc")
            .as_slice(),
        &secret
    );
    let moved = gcm.rewrap(&w, b"customer-1").await.expect("rewrap");
    assert_eq!(moved.key_id, rotated.uid);
    assert_eq!(
        gcm.unwrap(&moved, b"customer-1")
            .await
            .expect("rewrapped")
            .as_slice(),
        &secret
    );
    // The other backend instance caches its current key: it picks up the
    // rotation once told to look again (or after current_key_ttl).
    cbc.forget_current_key();
    assert_eq!(
        cbc.wrap(&secret, b"x").await.expect("cbc wrap").key_id,
        rotated.uid
    );

    // A retired (revoked) version: unwrap says the key is not usable.
    let versions = gcm.key_versions().await.expect("versions");
    assert_eq!(versions.len(), 2);
    assert!(versions.iter().all(|k| k.is_active()));
    kmip::admin::revoke_version(&gcm, &first.uid)
        .await
        .expect("revoke");
    let err = gcm
        .unwrap(&w, b"customer-1")
        .await
        .expect_err("revoked key");
    assert!(matches!(err, BackendError::KeyNotUsable(_)), "{err:?}");
    assert!(err.to_string().contains(&first.uid), "{err}");
    // Destroy it: it is gone from Locate, so its identifier is no longer a
    // version of the master key and blobs naming it are refused as invalid,
    // without asking the HSM.
    kmip::admin::destroy_version(&gcm, &first.uid)
        .await
        .expect("destroy");
    assert_eq!(gcm.key_versions().await.expect("versions").len(), 1);
    let operations = || server.log().matches("Processing operation").count();
    let before_destroyed = operations();
    let err = gcm
        .unwrap(&w, b"customer-1")
        .await
        .expect_err("destroyed key");
    assert!(matches!(err, BackendError::InvalidCiphertext(_)), "{err:?}");
    assert!(err.to_string().contains("not a version"), "{err}");
    assert_eq!(
        operations(),
        before_destroyed,
        "refused without asking the HSM"
    );
    // So is a blob naming any other key the identity can use at the HSM.
    let other = backend(&pki, server.settings("another-key"));
    let other_uid = kmip::init(&other).await.expect("init other").uid;
    let mut foreign = moved.clone();
    foreign.key_id = other_uid;
    gcm.key_versions().await.expect("versions");
    let before_foreign = operations();
    let err = gcm
        .unwrap(&foreign, b"customer-1")
        .await
        .expect_err("another key");
    assert!(matches!(err, BackendError::InvalidCiphertext(_)), "{err:?}");
    assert_eq!(
        operations(),
        before_foreign,
        "the HSM was asked about a key that is not a master key version"
    );

    // probe: canary plus endpoint state.
    let report = gcm.probe().await.expect("probe");
    assert_eq!(report.endpoints.len(), 1);
    assert!(report.endpoints[0].up, "{report:?}");
    assert!(
        report.endpoints[0].detail.contains("KMIP 1.4"),
        "{report:?}"
    );

    // 100 concurrent unwraps of one blob, over the pool (default 8 connections).
    let gcm = Arc::new(gcm);
    let before = server.operations_logged("Decrypt");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let b = gcm.clone();
            let m = moved.clone();
            tokio::spawn(async move { b.unwrap(&m, b"customer-1").await })
        })
        .collect();
    for t in tasks {
        let plain = t.await.expect("join").expect("concurrent unwrap");
        assert_eq!(plain.as_slice(), &secret);
    }
    assert_eq!(server.operations_logged("Decrypt") - before, 100);
}
