//! `hsm check` against a real PyKMIP server: each misconfiguration gets its
//! own plain message.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/pykmip.rs"]
mod pykmip;

use cmx_kms::backend::kmip::{self, CheckReport, KmipBackend, KmipSettings, TlsProblem};
use cmx_kms::backend::{Backend, BackendError};
use pykmip::{Pki, PyKmip};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

fn backend_with(
    settings: KmipSettings,
    identity: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    trust: Vec<CertificateDer<'static>>,
) -> KmipBackend {
    KmipBackend::new(settings, identity.0, identity.1, trust).expect("backend")
}

fn failed_step<'a>(report: &'a CheckReport, name: &str) -> &'a str {
    let step = report
        .steps
        .iter()
        .find(|s| s.name.starts_with(name))
        .unwrap_or_else(|| panic!("no step {name:?} in:\n{report}"));
    assert!(!step.ok, "step {name:?} passed:\n{report}");
    &step.detail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_each_problem() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&tmp.path().join("pki"));
    let server = PyKmip::start(&pki, &tmp.path().join("pykmip"), "server-ec");
    let good = || {
        backend_with(
            server.settings("checked"),
            pki.client_identity(),
            pki.trust(),
        )
    };

    // Missing master key.
    let report = kmip::check(&good()).await;
    println!("{report}");
    assert!(!report.is_ok());
    let detail = failed_step(&report, "locate master key");
    assert!(
        detail.contains("no key named \"checked\"") && detail.contains("hsm init"),
        "{report}"
    );
    assert!(
        report.steps[0].ok && report.steps[0].detail.contains("KMIP 1.4"),
        "{report}"
    );
    assert!(report.steps[0].detail.contains("PyKMIP"), "{report}");

    // All good after init.
    let b = good();
    let init = kmip::init(&b).await.expect("init");
    let report = kmip::check(&b).await;
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert!(report.to_string().ends_with("HSM check passed"));

    // Wrong kmsClient certificate (signed by a CA PyKMIP does not trust).
    let rogue = backend_with(
        server.settings("checked"),
        (
            pki.chain("rogue-client", "rogue-ca"),
            pki.key("rogue-client"),
        ),
        pki.trust(),
    );
    let report = kmip::check(&rogue).await;
    println!("{report}");
    assert_eq!(
        report.tls_problem,
        Some(TlsProblem::ClientCertRejected),
        "{report}"
    );
    assert!(failed_step(&report, "connect").contains("rejected the kmsClient certificate"));
    let err = rogue.wrap(b"x", b"").await.expect_err("rogue wrap");
    assert!(matches!(err, BackendError::Misconfigured(_)), "{err:?}");

    // Unknown HSM CA (kmipSigningCA is not the CA that signed PyKMIP's certificate).
    let unknown = backend_with(
        server.settings("checked"),
        pki.client_identity(),
        vec![pki.cert("rogue-ca")],
    );
    let report = kmip::check(&unknown).await;
    println!("{report}");
    assert_eq!(
        report.tls_problem,
        Some(TlsProblem::UnknownServerCa),
        "{report}"
    );
    assert!(
        failed_step(&report, "connect").contains("unknown CA"),
        "{report}"
    );

    // Another identity (another CN): PyKMIP hides keys it does not own.
    let other = backend_with(
        server.settings("checked"),
        (pki.chain("other-client", "hsm-ca"), pki.key("other-client")),
        pki.trust(),
    );
    let report = kmip::check(&other).await;
    println!("{report}");
    let detail = failed_step(&report, "locate master key");
    assert!(detail.contains("owner or policy"), "{report}");
    // Its unwrap is refused before the HSM is asked (the key is no version of
    // a master key this identity can see), as an operator problem that says
    // what to check, not as a bad blob.
    let err = other
        .unwrap(&b.wrap(b"x", b"").await.expect("wrap"), b"")
        .await
        .expect_err("other identity");
    assert!(matches!(err, BackendError::KeyNotFound(_)), "{err:?}");
    assert!(err.to_string().contains("owner or policy"), "{err}");

    // A key under the shared operation policy is usable by the other identity.
    let mut shared = server.settings("shared-key");
    shared.operation_policy_name = Some("shared".into());
    let owner = backend_with(shared.clone(), pki.client_identity(), pki.trust());
    if let Err(e) = kmip::init(&owner).await {
        let log = server.log();
        let policy: Vec<&str> = log.lines().filter(|l| l.contains("olicy")).collect();
        panic!("init with the shared policy: {e}\n{}", policy.join("\n"));
    }
    let w = owner.wrap(b"shared secret", b"").await.expect("owner wrap");
    let other = backend_with(
        shared,
        (pki.chain("other-client", "hsm-ca"), pki.key("other-client")),
        pki.trust(),
    );
    assert_eq!(
        other
            .unwrap(&w, b"")
            .await
            .expect("shared unwrap")
            .as_slice(),
        b"shared secret"
    );
    assert!(kmip::check(&other).await.is_ok());

    // Master key not active.
    kmip::admin::revoke_version(&b, &init.uid)
        .await
        .expect("revoke");
    let report = kmip::check(&b).await;
    println!("{report}");
    let detail = failed_step(&report, "master key active");
    assert!(
        detail.contains("none is active") && detail.contains("hsm rotate"),
        "{report}"
    );
    let err = b.wrap(b"x", b"").await.expect_err("inactive");
    assert!(matches!(err, BackendError::KeyNotUsable(_)), "{err:?}");

    // No HSM listening.
    let nobody = backend_with(
        pykmip::test_settings(&[pykmip::free_port()], "checked"),
        pki.client_identity(),
        pki.trust(),
    );
    let report = kmip::check(&nobody).await;
    println!("{report}");
    assert!(
        failed_step(&report, "connect").contains("check that the HSM runs"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_cipher_suite_mismatch_with_rsa_pykmip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&tmp.path().join("pki"));
    let server = PyKmip::start(&pki, &tmp.path().join("pykmip"), "server-rsa");
    let b = backend_with(server.settings("rsa"), pki.client_identity(), pki.trust());
    let report = kmip::check(&b).await;
    println!("{report}");
    assert_eq!(
        report.tls_problem,
        Some(TlsProblem::NoSharedCipher),
        "{report}"
    );
    let detail = failed_step(&report, "connect");
    assert!(detail.contains("share no TLS cipher suite"), "{report}");
    assert!(detail.contains("ECDSA certificate"), "{report}");
    let err = b.probe().await.expect_err("probe");
    assert!(matches!(err, BackendError::Misconfigured(_)), "{err:?}");
    // PyKMIP logs the failed handshake from its own session thread, which may
    // write after this side has already seen the alert: wait for the line.
    let saw = server
        .log_eventually(std::time::Duration::from_secs(30), |log| {
            log.contains("NO_SHARED_CIPHER") || log.contains("no shared cipher")
        })
        .await;
    assert!(
        saw,
        "PyKMIP's log names no shared cipher:
{}",
        server.log()
    );
}
