//! OpenBao stopped mid-run: calls fail fast with `backend-unavailable`, the
//! probe fails, `hsm check` says why; after a restart the same backend object
//! works again. A Vault that accepts connections but never answers times out.
//!
//! The dev server keeps everything in memory: after the restart the test
//! creates the Transit mount, the key, the policy and the credentials again
//! (same token id, same AppRole ids). Blobs wrapped before the restart are
//! lost with the old key; that is a property of the dev server, not of us.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/openbao.rs"]
mod openbao;

use std::time::{Duration, Instant};

use cmx_kms::backend::vault::{StepOutcome, VaultAuth, VaultBackend};
use cmx_kms::backend::{Backend, BackendError};
use hyper::Method;
use openbao::{GUIDE_POLICY, OpenBao, test_settings, token_file_auth};
use serde_json::json;

const KEY: &str = "kms-kek";
const TOKEN_ID: &str = "cmx-kms-availability-token";
const ROLE_ID: &str = "0d7f1d2c-6a53-4c1e-9d5b-5a0b8e3f7a11";
const SECRET_ID: &str = "5e8b2c4a-9f31-4d7e-b6a0-2c9d8e1f4b72";

async fn provision(bao: &OpenBao) {
    bao.enable_transit(None).await;
    bao.create_key(None, KEY).await;
    bao.write_policy(None, "kms-app", GUIDE_POLICY).await;
    bao.create_token(
        None,
        json!({"id": TOKEN_ID, "policies": ["kms-app"], "ttl": "1h"}),
    )
    .await;
    let _ = bao
        .try_api(
            Method::POST,
            "sys/auth/approle",
            None,
            Some(json!({"type": "approle"})),
        )
        .await;
    bao.api(
        Method::POST,
        "auth/approle/role/kms",
        None,
        Some(json!({"token_policies": "kms-app", "token_ttl": "1h"})),
    )
    .await;
    bao.api(
        Method::POST,
        "auth/approle/role/kms/role-id",
        None,
        Some(json!({"role_id": ROLE_ID})),
    )
    .await;
    bao.api(
        Method::POST,
        "auth/approle/role/kms/custom-secret-id",
        None,
        Some(json!({"secret_id": SECRET_ID})),
    )
    .await;
}

async fn assert_down_fast(backend: &VaultBackend, port: u16) {
    let t = Instant::now();
    let err = backend.wrap(b"k", b"").await.unwrap_err();
    let took = t.elapsed();
    println!("{err} ({took:?})");
    assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
    assert_eq!(err.label(), "backend-unavailable");
    assert!(err.is_retryable());
    // Refused, not waited out: the request timeout is 3 s. Seen once in a
    // clean-clone run (2026-12-01) and not since; if it comes back, what held
    // the port is the first thing to know.
    assert!(
        !err.to_string().contains("no answer within"),
        "a stopped Vault timed out instead of refusing ({took:?}): {err}\nsockets on port {port}:\n{}",
        sockets_on(port)
    );
    assert!(matches!(
        backend.probe().await,
        Err(BackendError::Unavailable { .. })
    ));
    let report = backend.check().await;
    println!("{report}");
    assert_eq!(report.steps[0].outcome, StepOutcome::Failed);
    assert!(
        report.steps[0].detail.contains("is Vault running"),
        "{report}"
    );
}

/// `ss -tanp` lines that mention `port`, for a failure message.
fn sockets_on(port: u16) -> String {
    match std::process::Command::new("ss").arg("-tanp").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!(":{port} ")))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("(ss: {e})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_vault_is_unavailable_fast_and_recovers_after_restart() {
    let mut bao = OpenBao::start().await;
    provision(&bao).await;

    let (_f, token_auth) = token_file_auth(bao.dir(), "token", TOKEN_ID);
    let (by_token, _) = VaultBackend::new(test_settings(&bao.addr(), KEY, token_auth)).unwrap();
    let secret_file = bao.dir().join("secret-id");
    std::fs::write(&secret_file, SECRET_ID).unwrap();
    let approle = VaultAuth::AppRole {
        path: "auth/approle/login".into(),
        role_id: ROLE_ID.into(),
        secret_id_file: secret_file,
    };
    let (by_login, _) = VaultBackend::new(test_settings(&bao.addr(), KEY, approle)).unwrap();
    for b in [&by_token, &by_login] {
        b.start();
        let w = b.wrap(b"k", b"").await.unwrap();
        assert_eq!(b.unwrap(&w, b"").await.unwrap().as_slice(), b"k");
        assert!(b.probe().await.is_ok());
    }

    bao.stop();
    assert_down_fast(&by_token, bao.port).await;
    assert_down_fast(&by_login, bao.port).await;

    bao.restart().await;
    provision(&bao).await;
    // Same objects, no rebuild. The AppRole backend's old token is unknown to
    // the new server: the first call sees 403, logs in again and retries.
    for b in [&by_token, &by_login] {
        let report = b.probe().await.unwrap();
        assert!(report.endpoints[0].up);
        let w = b.wrap(b"k", b"").await.unwrap();
        assert_eq!(b.unwrap(&w, b"").await.unwrap().as_slice(), b"k");
        assert!(b.check().await.passed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_vault_times_out() {
    // Accepts TCP connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            conns.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (_f, auth) = token_file_auth(dir.path(), "token", "s.whatever");
    let mut settings = test_settings(&format!("http://{addr}"), KEY, auth);
    settings.request_timeout = Duration::from_millis(700);
    let (backend, _) = VaultBackend::new(settings).unwrap();
    let t = Instant::now();
    // The 60 s guard only keeps a broken timeout from hanging the suite; the
    // assertion is on which path answered: the request timeout, with the
    // configured value in the message.
    let err = tokio::time::timeout(Duration::from_secs(60), backend.wrap(b"k", b""))
        .await
        .expect("the 700 ms request timeout never fired")
        .unwrap_err();
    println!("{err} ({:?})", t.elapsed());
    assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("no answer within 700ms"), "{err}");
    // A timeout is not retried (the message would count the attempts). No
    // bound on the elapsed time here: timing targets live in benchmarks.
    assert!(!err.to_string().contains("attempts"), "{err}");
    hold.abort();
}
