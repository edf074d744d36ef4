//! `hsm check` against a real PyKMIP server: each misconfiguration gets its
//! own plain message.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/captured.rs"]
mod captured;
use captured::Captured;

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
    assert!(
        report.config_problem,
        "a rejected certificate is configuration (exit 78)"
    );
    // The same class on every call, also once the breaker (2 failures) is open.
    for _ in 0..4 {
        let err = rogue.wrap(b"x", b"").await.expect_err("rogue wrap");
        assert!(matches!(err, BackendError::Misconfigured(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("rejected the kmsClient certificate"),
            "{err}"
        );
    }

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
    assert!(detail.contains("owner or operation policy"), "{report}");
    // The multi-node explanation comes first; `hsm init` is not the first advice.
    let identity = detail
        .find("same kmsClient identity")
        .expect("identity advice");
    let init_at = detail.find("hsm init").expect("init mentioned");
    assert!(identity < init_at, "{detail}");
    assert!(
        detail.contains("do NOT run `cmx-kms hsm init` here"),
        "{detail}"
    );
    assert!(report.config_problem, "exit 78, not 69");
    // Its unwrap is refused before the HSM is asked (the key is no version of
    // a master key this identity can see), as an operator problem that says
    // what to check, not as a bad blob.
    let err = other
        .unwrap(&b.wrap(b"x", b"").await.expect("wrap"), b"")
        .await
        .expect_err("other identity");
    assert!(matches!(err, BackendError::KeyNotFound(_)), "{err:?}");
    assert!(err.to_string().contains("same kmsClient identity"), "{err}");

    // If the operator runs `hsm init` there anyway, the output says what it did.
    let second = kmip::init(&other)
        .await
        .expect("init as the other identity");
    assert!(second.created, "{second}");
    assert!(
        second.to_string().contains("NEW master key") && second.to_string().contains("cannot open"),
        "{second}"
    );
    // Its blobs are client-facing refusals on the first node (422), with a
    // WARN in the log naming the likely cause (see key_lookup.rs).
    let theirs = other.wrap(b"x", b"").await.expect("other wrap");
    let (log, guard) = Captured::install();
    let err = b.unwrap(&theirs, b"").await.expect_err("second master key");
    assert!(matches!(err, BackendError::InvalidCiphertext(_)), "{err:?}");
    // Again at once: the WARN is rate limited (one a minute), the answer is not.
    let again = b.unwrap(&theirs, b"").await.expect_err("second master key");
    assert!(
        matches!(again, BackendError::InvalidCiphertext(_)),
        "{again:?}"
    );
    drop(guard);
    let text = log.text();
    println!("{text}");
    let warns = log.warn_lines();
    assert_eq!(warns.len(), 1, "{text}");
    assert!(
        warns[0].contains("second master key") && warns[0].contains("same identity"),
        "{text}"
    );

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
        detail.contains("none is active")
            && detail.contains("cannot be activated again")
            && detail.contains("hsm rotate"),
        "{report}"
    );
    assert!(report.config_problem, "exit 78, not 69");
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
    assert!(!report.config_problem, "unreachable is exit 69");
}

/// Creates and activates a key at PyKMIP with PyKMIP's own client, as the
/// `kmsClient` identity: what an operator (or an earlier tool) may have made.
fn pykmip_create(pki: &Pki, server: &PyKmip, name: &str, algorithm: &str, bits: u32) -> String {
    let python = pykmip::testbed_dir().join("venv-pykmip/bin/python");
    let script = format!(
        "from kmip.pie.client import ProxyKmipClient\n\
         from kmip.core import enums\n\
         c = ProxyKmipClient(hostname='127.0.0.1', port={port}, cert='{cert}', key='{key}', \
         ca='{ca}', config_file='/dev/null')\n\
         with c:\n    uid = c.create(enums.CryptographicAlgorithm.{algorithm}, {bits}, \
         name='{name}')\n    c.activate(uid)\n    print(uid)\n",
        port = server.port,
        cert = pki.path("client.crt").display(),
        key = pki.path("client.key").display(),
        ca = pki.path("hsm-ca.crt").display(),
    );
    let out = std::process::Command::new(python)
        .args(["-c", &script])
        .output()
        .expect("run PyKMIP's client");
    assert!(
        out.status.success(),
        "PyKMIP client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A master key that is not AES-256 is refused by init, check and wraps,
/// with its algorithm and length and what to do; a rotation adds an AES-256
/// version, after which the old one is only warned about. A deactivated
/// version: check warns, and an unwrap says what can and cannot help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_kind_and_deactivated_master_key_versions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&tmp.path().join("pki"));
    let server = PyKmip::start(&pki, &tmp.path().join("pykmip"), "server-ec");
    let b128 = pykmip_create(&pki, &server, "k-aes128", "AES", 128);
    pykmip_create(&pki, &server, "k-3des", "TRIPLE_DES", 192);
    for (name, kind) in [("k-aes128", "AES-128"), ("k-3des", "TRIPLE_DES-192")] {
        let b = backend_with(server.settings(name), pki.client_identity(), pki.trust());
        let err = kmip::init(&b).await.expect_err("init must refuse");
        println!("{err}");
        assert!(matches!(err, BackendError::KeyNotUsable(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("{name:?} is {kind}"))
                && text.contains("only under AES-256")
                && text.contains("hsm rotate"),
            "{text}"
        );
        let report = kmip::check(&b).await;
        println!("{report}");
        assert!(failed_step(&report, "master key active").contains(kind));
        assert!(report.config_problem, "exit 78");
        let err = b.wrap(b"x", b"").await.expect_err("wrap must refuse");
        assert!(matches!(err, BackendError::KeyNotUsable(_)), "{err:?}");
        assert!(b.probe().await.is_err());
    }

    // Rotation adds an AES-256 version: it is used, the old one warned about.
    let b = backend_with(
        server.settings("k-aes128"),
        pki.client_identity(),
        pki.trust(),
    );
    let rotated = kmip::rotate(&b).await.expect("rotate");
    let w = b.wrap(b"x", b"").await.expect("wrap after rotate");
    assert_eq!(w.key_id, rotated.uid);
    let report = kmip::check(&b).await;
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    let text = report.to_string();
    assert!(
        text.contains(&format!("WARN   version {b128}: version {b128} is AES-128")),
        "{text}"
    );

    // A deactivated version: its blobs do not open, and the advice says why.
    let newer = kmip::rotate(&b).await.expect("rotate again");
    kmip::admin::revoke_version(&b, &rotated.uid)
        .await
        .expect("revoke");
    let err = b.unwrap(&w, b"").await.expect_err("deactivated version");
    println!("{err}");
    assert!(matches!(err, BackendError::KeyNotUsable(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("deactivated")
            && text.contains("open only if the HSM allows Decrypt")
            && !text.contains("activate it"),
        "{text}"
    );
    let report = kmip::check(&b).await;
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert!(
        report.to_string().contains(&format!(
            "WARN   version {}: version {} is deactivated",
            rotated.uid, rotated.uid
        )),
        "{report}"
    );
    assert_eq!(
        b.wrap(b"x", b"").await.expect("wrap").key_id,
        newer.uid,
        "new wraps use the newest active AES-256 version"
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
