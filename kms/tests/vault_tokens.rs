//! Token lifecycle against a real OpenBao: renewal before expiry while calls
//! flow, a fresh login when the max TTL is reached (AppRole and TLS
//! certificate login), recovery from a revoked token, and a static token
//! that cannot be re-obtained.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/openbao.rs"]
mod openbao;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmx_kms::backend::vault::{ClientIdentity, VaultAuth, VaultBackend};
use cmx_kms::backend::{Backend, BackendError};
use hyper::Method;
use openbao::{GUIDE_POLICY, OpenBao, TestPki, test_settings, token_file_auth};
use serde_json::json;

const KEY: &str = "kms-kek";
const SECRET: &[u8] = b"a 32-byte customer key, honestly";

async fn prepare(bao: &OpenBao) {
    bao.enable_transit(None).await;
    bao.create_key(None, KEY).await;
    bao.write_policy(None, "kms-app", GUIDE_POLICY).await;
}

/// Wrap and unwrap in a loop until `run` is over. Returns (ok, errors).
/// Seeing the held token expired counts as an error: tokens must be renewed
/// or replaced *before* they expire, not after a 403.
async fn traffic(backend: Arc<VaultBackend>, run: Duration) -> (u32, Vec<String>) {
    let end = Instant::now() + run;
    let (mut ok, mut errors) = (0, Vec::new());
    while Instant::now() < end {
        if backend.token_ttl_remaining() == Some(Duration::ZERO) {
            errors.push("the held token had expired".to_owned());
        }
        match backend.wrap(SECRET, b"").await {
            Ok(w) => match backend.unwrap(&w, b"").await {
                Ok(p) if p.as_slice() == SECRET => ok += 1,
                Ok(_) => errors.push("unwrap gave another value".to_owned()),
                Err(e) => errors.push(e.to_string()),
            },
            Err(e) => errors.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (ok, errors)
}

/// Accessors of all tokens except the root token's.
async fn accessors(bao: &OpenBao, root_accessor: &str) -> BTreeSet<String> {
    bao.token_accessors()
        .await
        .into_iter()
        .filter(|a| a != root_accessor)
        .collect()
}

async fn root_accessor(bao: &OpenBao) -> String {
    let v = bao
        .api(Method::GET, "auth/token/lookup-self", None, None)
        .await;
    v["data"]["accessor"].as_str().unwrap().to_owned()
}

/// Watch the token accessors while `fut` runs; returns every one seen.
async fn watch_accessors<F: std::future::Future>(
    bao: &OpenBao,
    fut: F,
) -> (F::Output, BTreeSet<String>) {
    let root = root_accessor(bao).await;
    let mut seen = BTreeSet::new();
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => {
                seen.extend(accessors(bao, &root).await);
                return (out, seen);
            }
            () = tokio::time::sleep(Duration::from_millis(300)) => {
                seen.extend(accessors(bao, &root).await);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_ttl_token_is_renewed_while_calls_flow() {
    let bao = OpenBao::start().await;
    prepare(&bao).await;
    let token = bao
        .create_token(None, json!({"policies": ["kms-app"], "ttl": "4s", "explicit_max_ttl": "5m", "renewable": true}))
        .await;
    let (_f, auth) = token_file_auth(bao.dir(), "token", &token);
    let mut settings = test_settings(&bao.addr(), KEY, auth);
    settings.renew_before_expiry = Duration::from_secs(2);
    let (backend, _) = VaultBackend::new(settings).unwrap();
    let backend = Arc::new(backend);
    backend.start();

    let (ok, errors) = traffic(backend.clone(), Duration::from_secs(10)).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(ok > 20, "only {ok} round trips");
    // 10 s after creation a 4 s token is still alive: it was renewed.
    let v = bao
        .api(
            Method::POST,
            "auth/token/lookup",
            None,
            Some(json!({"token": token})),
        )
        .await;
    let ttl = v["data"]["ttl"].as_u64().unwrap();
    assert!(ttl > 0, "{v}");
    let remaining = backend.token_ttl_remaining().unwrap();
    assert!(
        remaining > Duration::ZERO && remaining <= Duration::from_secs(4),
        "{remaining:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_token_at_max_ttl_is_replaced_by_a_fresh_login() {
    let bao = OpenBao::start().await;
    prepare(&bao).await;
    let (role_id, secret_id) = bao.approle(None, "kms", "kms-app", "4s", "7s").await;
    let secret_file = bao.dir().join("secret-id");
    std::fs::write(&secret_file, &secret_id).unwrap();
    let auth = VaultAuth::AppRole {
        path: "/v1/auth/approle/login".into(),
        role_id,
        secret_id_file: secret_file,
    };
    let mut settings = test_settings(&bao.addr(), KEY, auth);
    settings.renew_before_expiry = Duration::from_secs(2);
    let (backend, _) = VaultBackend::new(settings).unwrap();
    let backend = Arc::new(backend);
    backend.start();

    let ((ok, errors), seen) =
        watch_accessors(&bao, traffic(backend.clone(), Duration::from_secs(16))).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(ok > 30, "only {ok} round trips");
    // Each token lives at most 7 s: 16 s of traffic needs at least 3 logins.
    assert!(seen.len() >= 3, "tokens seen: {}", seen.len());
    assert!(backend.token_ttl_remaining().unwrap() > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_login_token_at_max_ttl_is_replaced() {
    let pki = TestPki::generate();
    let bao = OpenBao::start_with_mtls(pki.listener()).await;
    prepare(&bao).await;
    let ca_pem = std::fs::read_to_string(&pki.ca).unwrap();
    bao.cert_auth("kms-nodes", &ca_pem, "kms-app", "4s", "6s")
        .await;
    let auth = VaultAuth::Cert {
        path: "/v1/auth/cert/login".into(),
        role: Some("kms-nodes".into()),
    };
    let mut settings = test_settings(&bao.tls_addr(), KEY, auth);
    settings.ca_file = Some(pki.ca.clone());
    settings.client_identity =
        Some(ClientIdentity::from_pem_files(&pki.client_cert, &pki.client_key).unwrap());
    settings.renew_before_expiry = Duration::from_secs(2);
    let (backend, _) = VaultBackend::new(settings).unwrap();
    let backend = Arc::new(backend);
    backend.start();

    let ((ok, errors), seen) =
        watch_accessors(&bao, traffic(backend.clone(), Duration::from_secs(10))).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(ok > 20, "only {ok} round trips");
    assert!(seen.len() >= 2, "tokens seen: {}", seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_recovers_by_login_without_losing_calls() {
    let bao = OpenBao::start().await;
    prepare(&bao).await;
    let (role_id, secret_id) = bao.approle(None, "kms", "kms-app", "1h", "2h").await;
    let secret_file = bao.dir().join("secret-id");
    std::fs::write(&secret_file, &secret_id).unwrap();
    let auth = VaultAuth::AppRole {
        path: "auth/approle/login".into(),
        role_id,
        secret_id_file: secret_file,
    };
    let (backend, _) = VaultBackend::new(test_settings(&bao.addr(), KEY, auth)).unwrap();
    let backend = Arc::new(backend);
    backend.wrap(SECRET, b"").await.unwrap();
    let root = root_accessor(&bao).await;
    let before = accessors(&bao, &root).await;
    assert_eq!(before.len(), 1);

    let workers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(traffic(backend.clone(), Duration::from_secs(3))))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for a in &before {
        bao.api(
            Method::POST,
            "auth/token/revoke-accessor",
            None,
            Some(json!({"accessor": a})),
        )
        .await;
    }
    let mut total = 0;
    for w in workers {
        let (ok, errors) = w.await.unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        total += ok;
    }
    assert!(total > 20, "only {total} round trips");
    let after = accessors(&bao, &root).await;
    assert_eq!(
        after.len(),
        1,
        "exactly one new login for all concurrent callers"
    );
    assert!(after.is_disjoint(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_token_cannot_be_reobtained_and_says_so() {
    let bao = OpenBao::start().await;
    prepare(&bao).await;
    // A token that can be renewed for 5 s in all.
    let token = bao
        .create_token(None, json!({"policies": ["kms-app"], "ttl": "3s", "explicit_max_ttl": "5s", "renewable": true}))
        .await;
    let (file, auth) = token_file_auth(bao.dir(), "token", &token);
    let mut settings = test_settings(&bao.addr(), KEY, auth);
    settings.renew_before_expiry = Duration::from_secs(1);
    let (backend, _) = VaultBackend::new(settings).unwrap();
    backend.start();
    let w = backend.wrap(SECRET, b"").await.unwrap();

    tokio::time::sleep(Duration::from_millis(5500)).await;
    let err = backend.unwrap(&w, b"").await.unwrap_err();
    println!("{err}");
    assert!(matches!(err, BackendError::PermissionDenied(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("cannot be obtained again"), "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(!text.contains(&token), "the token must never be shown");

    // The operator writes a new token into the file: picked up, no restart.
    let fresh = bao
        .create_token(None, json!({"policies": ["kms-app"], "ttl": "1h"}))
        .await;
    std::fs::write(&file, &fresh).unwrap();
    assert_eq!(backend.unwrap(&w, b"").await.unwrap().as_slice(), SECRET);

    // A revoked static token says the same.
    bao.revoke_token(&fresh).await;
    let err = backend.wrap(SECRET, b"").await.unwrap_err();
    assert!(
        err.to_string().contains("cannot be obtained again"),
        "{err}"
    );
}
