//! The Vault Transit backend against a real OpenBao dev server: `hsm init`,
//! wrap/unwrap, key rotation and rewrap, `min_decryption_version`, plain
//! errors, namespaces, TLS with a client certificate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/captured.rs"]
mod captured;
use captured::Captured;

#[path = "support/openbao.rs"]
mod openbao;

use cmx_kms::backend::vault::{ClientIdentity, InitOutcome, StepOutcome, VaultBackend};
use cmx_kms::backend::{Backend, BackendError, BackendKind, WrapAlgorithm};
use openbao::{
    GUIDE_POLICY, GUIDE_POLICY_WITH_REWRAP, OpenBao, TestPki, test_settings, token_file_auth,
};
use serde_json::json;

const KEY: &str = "kms-kek";
const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

async fn policy_token(bao: &OpenBao, ns: Option<&str>, policy: &str) -> String {
    bao.write_policy(ns, "kms-app", policy).await;
    bao.create_token(ns, json!({"policies": ["kms-app"], "ttl": "1h"}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_wrap_rotate_rewrap_and_min_decryption_version() {
    let bao = OpenBao::start().await;
    bao.enable_transit(None).await;
    let token = policy_token(&bao, None, GUIDE_POLICY).await;
    let (_f, auth) = token_file_auth(bao.dir(), "token", &token);
    let (backend, warning) = VaultBackend::new(test_settings(&bao.addr(), KEY, auth)).unwrap();
    assert!(
        warning.unwrap().contains("plain http"),
        "loopback http must warn"
    );

    // hsm check before init: the key is missing, in plain words.
    let report = backend.check().await;
    println!("{report}");
    assert!(!report.passed());
    let key_step = report
        .steps
        .iter()
        .find(|s| s.name == "read master key")
        .unwrap();
    assert_eq!(key_step.outcome, StepOutcome::Failed);
    assert!(key_step.detail.contains("not found") && key_step.detail.contains("cmx-kms hsm init"));
    // A wrap before init says the same, not "permission denied".
    let err = backend.wrap(SECRET, b"").await.unwrap_err();
    assert!(matches!(err, BackendError::KeyNotFound(_)), "{err}");

    // hsm init creates the key, a second time leaves it alone.
    let first = backend.init().await.unwrap();
    assert!(
        matches!(&first, InitOutcome::Created(k) if k.key_type == "aes256-gcm96" && k.latest_version == 1),
        "{first}"
    );
    let again = backend.init().await.unwrap();
    assert!(matches!(again, InitOutcome::AlreadyExists(_)), "{again}");
    let report = backend.check().await;
    println!("{report}");
    assert!(report.passed(), "{report}");
    assert_eq!(report.steps.len(), 4);

    // Wrap and unwrap.
    let v1 = backend.wrap(SECRET, b"ignored aad").await.unwrap();
    assert_eq!(v1.backend, BackendKind::Vault);
    assert_eq!(v1.algorithm, WrapAlgorithm::VaultTransit);
    assert_eq!(v1.key_id, KEY);
    assert_eq!(v1.key_version, 1);
    assert!(v1.ciphertext.starts_with(b"vault:v1:"));
    assert_eq!(backend.unwrap(&v1, b"").await.unwrap().as_slice(), SECRET);

    // Rotate in OpenBao: new wraps use v2, old blobs still unwrap, rewrap moves v1 -> v2.
    bao.rotate_key(None, KEY).await;
    let v2 = backend.wrap(SECRET, b"").await.unwrap();
    assert_eq!(v2.key_version, 2);
    assert_eq!(backend.unwrap(&v1, b"").await.unwrap().as_slice(), SECRET);
    let moved = backend.rewrap(&v1, b"").await.unwrap();
    assert_eq!(moved.key_version, 2);
    assert!(moved.ciphertext.starts_with(b"vault:v2:"));
    assert_eq!(
        backend.unwrap(&moved, b"").await.unwrap().as_slice(),
        SECRET
    );

    // Raise min_decryption_version: v1 blobs give a clear KeyNotUsable.
    bao.set_min_decryption_version(None, KEY, 2).await;
    let err = backend.unwrap(&v1, b"").await.unwrap_err();
    println!("{err}");
    assert!(matches!(err, BackendError::KeyNotUsable(_)), "{err}");
    assert!(err.to_string().contains("min_decryption_version"), "{err}");
    assert_eq!(err.label(), "master-key-not-usable");
    assert_eq!(
        backend.unwrap(&moved, b"").await.unwrap().as_slice(),
        SECRET
    );

    // Tampered blobs are InvalidCiphertext, checked locally or by Vault.
    let mut bad = v2.clone();
    bad.ciphertext = b"vault:v2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec();
    let err = backend.unwrap(&bad, b"").await.unwrap_err();
    assert!(matches!(err, BackendError::InvalidCiphertext(_)), "{err}");
    let mut bad = v2.clone();
    bad.key_version = 1;
    assert!(matches!(
        backend.unwrap(&bad, b"").await,
        Err(BackendError::InvalidCiphertext(_))
    ));
    let mut bad = v2.clone();
    bad.key_id = "../sys/seal".into();
    assert!(matches!(
        backend.unwrap(&bad, b"").await,
        Err(BackendError::InvalidCiphertext(_))
    ));

    // The token TTL is known (1h).
    let ttl = backend.token_ttl_remaining().unwrap();
    assert!(ttl.as_secs() > 3000 && ttl.as_secs() <= 3600, "{ttl:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_rewrap_and_permission_errors() {
    let bao = OpenBao::start().await;
    bao.enable_transit(None).await;
    bao.create_key(None, KEY).await;
    let token = policy_token(&bao, None, GUIDE_POLICY_WITH_REWRAP).await;
    let (_f, auth) = token_file_auth(bao.dir(), "token", &token);
    let (backend, _) = VaultBackend::new(test_settings(&bao.addr(), KEY, auth)).unwrap();
    let v1 = backend.wrap(SECRET, b"").await.unwrap();
    bao.rotate_key(None, KEY).await;
    bao.rotate_key(None, KEY).await;
    let moved = backend.rewrap(&v1, b"").await.unwrap();
    assert_eq!(moved.key_version, 3);
    assert_eq!(
        backend.unwrap(&moved, b"").await.unwrap().as_slice(),
        SECRET
    );

    // A token without the Transit policy: permission denied, in plain words.
    let weak = bao
        .create_token(None, json!({"policies": ["default"], "ttl": "1h"}))
        .await;
    let (_f2, auth) = token_file_auth(bao.dir(), "weak", &weak);
    let (weak_backend, _) = VaultBackend::new(test_settings(&bao.addr(), KEY, auth)).unwrap();
    let err = weak_backend.unwrap(&v1, b"").await.unwrap_err();
    println!("{err}");
    assert!(matches!(err, BackendError::PermissionDenied(_)), "{err}");
    assert!(err.to_string().contains("policy"), "{err}");

    // A wrong token: the check says so at the authentication step.
    let (_f3, auth) = token_file_auth(bao.dir(), "wrong", "s.doesnotexist");
    let (wrong, _) = VaultBackend::new(test_settings(&bao.addr(), KEY, auth)).unwrap();
    let report = wrong.check().await;
    println!("{report}");
    let step = report
        .steps
        .iter()
        .find(|s| s.name == "authenticate")
        .unwrap();
    assert_eq!(step.outcome, StepOutcome::Failed);
    assert!(
        step.detail.contains("does not accept the token"),
        "{}",
        step.detail
    );
    assert!(
        !report.to_string().contains("s.doesnotexist"),
        "the token must never be shown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_setting_reaches_a_real_namespace() {
    let bao = OpenBao::start().await;
    let ns = "engineering";
    bao.create_namespace(ns).await;
    bao.enable_transit(Some(ns)).await;
    let token = policy_token(&bao, Some(ns), GUIDE_POLICY).await;
    let (_f, auth) = token_file_auth(bao.dir(), "token", &token);
    let mut settings = test_settings(&bao.addr(), KEY, auth.clone());
    settings.namespace = Some(ns.to_owned());
    let (backend, _) = VaultBackend::new(settings).unwrap();
    assert!(matches!(
        backend.init().await.unwrap(),
        InitOutcome::Created(_)
    ));
    let report = backend.check().await;
    println!("{report}");
    assert!(report.passed(), "{report}");
    assert!(report.steps[0].detail.contains("namespace 'engineering'"));
    let w = backend.wrap(SECRET, b"").await.unwrap();
    assert_eq!(backend.unwrap(&w, b"").await.unwrap().as_slice(), SECRET);

    // The key lives in the namespace only.
    let (status, _) = bao
        .try_api(
            hyper::Method::GET,
            &format!("transit/keys/{KEY}"),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 404);
    bao.api(
        hyper::Method::GET,
        &format!("transit/keys/{KEY}"),
        Some(ns),
        None,
    )
    .await;

    // Without the namespace setting the same token reaches nothing.
    let (no_ns, _) = VaultBackend::new(test_settings(&bao.addr(), KEY, auth)).unwrap();
    let err = no_ns.wrap(SECRET, b"").await.unwrap_err();
    println!("{err}");
    assert!(!matches!(err, BackendError::Unavailable { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_vault_ca_and_client_certificate() {
    let pki = TestPki::generate();
    let bao = OpenBao::start_with_mtls(pki.listener()).await;
    bao.enable_transit(None).await;
    bao.create_key(None, KEY).await;
    let token = policy_token(&bao, None, GUIDE_POLICY).await;
    let (_f, auth) = token_file_auth(bao.dir(), "token", &token);

    let mut settings = test_settings(&bao.tls_addr(), KEY, auth);
    settings.ca_file = Some(pki.ca.clone());
    settings.client_identity =
        Some(ClientIdentity::from_pem_files(&pki.client_cert, &pki.client_key).unwrap());
    let (backend, warning) = VaultBackend::new(settings.clone()).unwrap();
    assert!(warning.is_none());
    let w = backend.wrap(SECRET, b"").await.unwrap();
    assert_eq!(backend.unwrap(&w, b"").await.unwrap().as_slice(), SECRET);
    assert!(backend.check().await.passed());

    // Without the client certificate the listener refuses us: a
    // configuration problem (502, not retryable), as with KMIP, every time.
    let mut no_client = settings.clone();
    no_client.client_identity = None;
    let (b2, _) = VaultBackend::new(no_client).unwrap();
    for _ in 0..2 {
        let err = b2.wrap(SECRET, b"").await.unwrap_err();
        println!("{err}");
        assert!(matches!(err, BackendError::Misconfigured(_)), "{err}");
    }

    // A CA that did not sign Vault's certificate: the check names TLS.
    let other = TestPki::generate();
    let mut wrong_ca = settings.clone();
    wrong_ca.ca_file = Some(other.ca.clone());
    let (b3, _) = VaultBackend::new(wrong_ca).unwrap();
    let report = b3.check().await;
    println!("{report}");
    assert_eq!(report.steps[0].outcome, StepOutcome::Failed);
    assert!(
        report.steps[0].detail.contains("kms.hsm.vault.ca.file"),
        "{report}"
    );
    assert!(
        report.config_problem,
        "a wrong CA is configuration (exit 78)"
    );
    let err = b3.wrap(SECRET, b"").await.unwrap_err();
    assert!(matches!(err, BackendError::Misconfigured(_)), "{err}");
    assert!(err.to_string().contains("kms.hsm.vault.ca.file"), "{err}");

    // https without any CA is a configuration error at construction.
    let mut no_ca = settings;
    no_ca.ca_file = None;
    assert!(matches!(
        VaultBackend::new(no_ca),
        Err(BackendError::Misconfigured(_))
    ));
}

#[test]
fn plain_http_only_for_loopback() {
    use cmx_kms::backend::vault::{TokenSource, VaultAuth, VaultSettings};
    let auth = VaultAuth::Token(TokenSource::Env(secrecy::SecretString::from("s.x")));
    let remote = VaultSettings::new("http://vault.example:8200", KEY, auth.clone());
    let err = VaultBackend::new(remote).unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");
    let local = VaultSettings::new("http://[::1]:8200", KEY, auth.clone());
    assert!(VaultBackend::new(local).unwrap().1.is_some());
    let bad_key = VaultSettings::new("http://127.0.0.1:8200", "a/b", auth);
    assert!(matches!(
        VaultBackend::new(bad_key),
        Err(BackendError::Misconfigured(_))
    ));
}

/// A blob under another Transit key the token may use is refused on every
/// client path (the server is no decryption service for other keys), while a
/// rewrap from the backend role may still move it to the configured key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_under_another_transit_key_open_only_by_rewrap() {
    let bao = OpenBao::start().await;
    bao.enable_transit(None).await;
    bao.create_key(None, KEY).await;
    bao.create_key(None, "other-key").await;
    let token = policy_token(
        &bao,
        None,
        r#"path "transit/encrypt/*" { capabilities = ["update"] }
path "transit/decrypt/*" { capabilities = ["update"] }"#,
    )
    .await;
    let (_f, auth) = token_file_auth(bao.dir(), "token", &token);
    let (backend, _) = VaultBackend::new(test_settings(&bao.addr(), KEY, auth)).unwrap();
    let (_g, auth) = token_file_auth(bao.dir(), "token-other", &token);
    let (other, _) = VaultBackend::new(test_settings(&bao.addr(), "other-key", auth)).unwrap();
    let w = other.wrap(SECRET, b"").await.unwrap();
    assert_eq!(w.key_id, "other-key");
    assert_eq!(
        other.unwrap(&w, b"").await.unwrap().as_slice(),
        SECRET,
        "the token can decrypt under the other key"
    );
    let err = backend.unwrap(&w, b"").await.unwrap_err();
    assert!(matches!(err, BackendError::InvalidCiphertext(_)), "{err}");
    assert!(err.to_string().contains("not the configured key"), "{err}");
    let moved = backend.rewrap(&w, b"").await.unwrap();
    assert_eq!(moved.key_id, KEY);
    assert_eq!(
        backend.unwrap(&moved, b"").await.unwrap().as_slice(),
        SECRET
    );
}

/// A derived (or convergent) Transit key needs a `context` on every call,
/// which cmx-kms never sends: `hsm init` and `hsm check` refuse it plainly
/// instead of "already exists" and a cryptic wrap failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_and_convergent_keys_are_refused_by_init_and_check() {
    let bao = OpenBao::start().await;
    bao.enable_transit(None).await;
    for (name, body) in [
        (
            "k-derived",
            json!({"type": "aes256-gcm96", "derived": true}),
        ),
        (
            "k-convergent",
            json!({"type": "aes256-gcm96", "derived": true, "convergent_encryption": true}),
        ),
    ] {
        bao.api(
            hyper::Method::POST,
            &format!("transit/keys/{name}"),
            None,
            Some(body),
        )
        .await;
        let token = policy_token(&bao, None, GUIDE_POLICY).await;
        let (_f, auth) = token_file_auth(bao.dir(), "token", &token);
        let (backend, _) = VaultBackend::new(test_settings(&bao.addr(), name, auth)).unwrap();
        let err = backend.init().await.unwrap_err();
        println!("{err}");
        assert!(matches!(err, BackendError::KeyNotUsable(_)), "{err}");
        assert!(
            err.to_string().contains("derived key") && err.to_string().contains("context"),
            "{err}"
        );
        let report = backend.check().await;
        println!("{report}");
        let key_step = report
            .steps
            .iter()
            .find(|s| s.name == "read master key")
            .unwrap();
        assert_eq!(key_step.outcome, StepOutcome::Failed, "{report}");
        assert!(key_step.detail.contains("derived key"), "{report}");
        assert!(report.config_problem, "exit 78, not 69");
    }
}

/// The Transit key deleted and created again: old blobs get the uniform
/// client answer (invalid ciphertext), and the log says at WARN, once a
/// minute, what the operator probably did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_transit_key_is_warned_about_once() {
    let bao = OpenBao::start().await;
    bao.enable_transit(None).await;
    bao.create_key(None, KEY).await;
    let token = policy_token(&bao, None, GUIDE_POLICY).await;
    let (_f, auth) = token_file_auth(bao.dir(), "token", &token);
    let (backend, _) = VaultBackend::new(test_settings(&bao.addr(), KEY, auth)).unwrap();
    let old = backend.wrap(SECRET, b"").await.unwrap();
    bao.rotate_key(None, KEY).await;
    let old_v2 = backend.wrap(SECRET, b"").await.unwrap();
    bao.api(
        hyper::Method::POST,
        &format!("transit/keys/{KEY}/config"),
        None,
        Some(json!({"deletion_allowed": true})),
    )
    .await;
    bao.api(
        hyper::Method::DELETE,
        &format!("transit/keys/{KEY}"),
        None,
        None,
    )
    .await;
    bao.create_key(None, KEY).await;

    let (log, guard) = Captured::install();
    for blob in [&old, &old_v2, &old] {
        let err = backend.unwrap(blob, b"").await.unwrap_err();
        assert!(matches!(err, BackendError::InvalidCiphertext(_)), "{err}");
    }
    drop(guard);
    let text = log.text();
    println!("{text}");
    let warns = log.warn_lines();
    assert_eq!(warns.len(), 1, "{text}");
    assert!(
        warns[0].contains("deleted and created again") && warns[0].contains("422"),
        "{text}"
    );
}
