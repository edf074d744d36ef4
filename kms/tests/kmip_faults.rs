//! The KMIP backend when the HSM misbehaves, against a real PyKMIP server:
//! stopped, hung, restarted, first endpoint down, idle connections.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/pykmip.rs"]
mod pykmip;

use std::time::{Duration, Instant};

use cmx_kms::backend::kmip::{self, KmipBackend, KmipSettings};
use cmx_kms::backend::{Backend, BackendError};
use pykmip::{Pki, PyKmip};

fn backend(pki: &Pki, settings: KmipSettings) -> KmipBackend {
    let (chain, key) = pki.client_identity();
    KmipBackend::new(settings, chain, key, pki.trust()).expect("backend")
}

fn assert_unavailable(err: &BackendError) {
    match err {
        BackendError::Unavailable { retry_after, .. } => {
            assert!(
                !retry_after.is_zero() && *retry_after <= Duration::from_secs(5),
                "{err:?}"
            )
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// The call failed on its one endpoint with exactly one problem, one of
/// `causes`: the error names each attempt, so a retry or a wait of another
/// kind shows.
fn assert_ended_by(err: &BackendError, causes: &[&str]) {
    let text = err.to_string();
    println!("{text}");
    assert_eq!(text.split("; ").count(), 1, "one attempt expected: {text}");
    assert!(
        causes.iter().any(|c| text.contains(c)),
        "expected one of {causes:?}: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_hung_and_restarted_hsm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&tmp.path().join("pki"));
    let mut server = PyKmip::start(&pki, &tmp.path().join("pykmip"), "server-ec");
    let mut settings = server.settings("faults");
    settings.request_timeout = Duration::from_secs(2);
    settings.connect_timeout = Duration::from_secs(2);
    let b = backend(&pki, settings);
    kmip::init(&b).await.expect("init");
    let w = b
        .wrap(b"0123456789abcdef0123456789abcdef", b"a")
        .await
        .expect("wrap");
    b.probe().await.expect("probe while up");

    // Hung HSM (SIGSTOP): the pooled connection times out after the request
    // timeout, without a second wait on a retry. The error says which wait
    // ended the call: a retry would open a new connection to the hung HSM
    // and end with "TLS handshake not completed within" instead.
    server.pause();
    let err = b.unwrap(&w, b"a").await.expect_err("hung HSM");
    assert_unavailable(&err);
    assert_ended_by(&err, &["no response within 2s"]);
    // A new connection to a hung HSM: the kernel accepts it, the handshake
    // times out (connect timeout), and the error says which.
    let err = b
        .unwrap(&w, b"a")
        .await
        .expect_err("hung HSM, new connection");
    assert_unavailable(&err);
    assert_ended_by(&err, &["TLS handshake not completed within 2s"]);
    server.resume();

    // Stopped HSM: never a timeout. The breaker may still be open from the
    // hung calls (1 s cooldown): until it lets a call through, calls end at
    // the breaker. The first call it lets through is refused at once. Then
    // the probe fails and readiness shows the endpoint down.
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let err = b.unwrap(&w, b"a").await.expect_err("stopped HSM");
        assert_unavailable(&err);
        assert_ended_by(&err, &["circuit breaker open", "cannot connect: "]);
        if err.to_string().contains("cannot connect: ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker never let a call through"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The breaker opened again after that failure; on a slow machine its 1 s
    // may have passed, and the next call tries (and is refused) again.
    for _ in 0..2 {
        let err = b.unwrap(&w, b"a").await.expect_err("stopped HSM");
        assert_unavailable(&err);
        assert_ended_by(&err, &["circuit breaker open", "cannot connect: "]);
    }
    let err = b.probe().await.expect_err("probe while down");
    assert_unavailable(&err);
    assert!(err.to_string().contains("circuit breaker open"), "{err}");

    // Restarted on the same port and database: the same backend recovers.
    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    let plain = loop {
        match b.unwrap(&w, b"a").await {
            Ok(p) => break p,
            Err(e) => {
                assert_unavailable(&e);
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(plain.as_slice(), b"0123456789abcdef0123456789abcdef");
    let report = b.probe().await.expect("probe after restart");
    assert!(report.endpoints[0].up, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_endpoint_down_second_serves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&tmp.path().join("pki"));
    let server = PyKmip::start(&pki, &tmp.path().join("pykmip"), "server-ec");
    let dead = pykmip::free_port();
    let b = backend(
        &pki,
        pykmip::test_settings(&[dead, server.port], "failover"),
    );
    kmip::init(&b).await.expect("init via second endpoint");
    for _ in 0..4 {
        let w = b.wrap(b"secret", b"x").await.expect("wrap");
        assert_eq!(
            b.unwrap(&w, b"x").await.expect("unwrap").as_slice(),
            b"secret"
        );
    }
    let report = b.probe().await.expect("probe");
    let states: Vec<_> = report
        .endpoints
        .iter()
        .map(|e| (e.up, e.detail.clone()))
        .collect();
    assert!(!report.endpoints[0].up, "{states:?}");
    assert!(
        report.endpoints[0].endpoint.ends_with(&format!(":{dead}")),
        "{states:?}"
    );
    assert!(report.endpoints[1].up, "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_survive_or_are_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&tmp.path().join("pki"));
    let server = PyKmip::start(&pki, &tmp.path().join("pykmip"), "server-ec");

    // Pool idle timeout longer than PyKMIP's 10 s socket timeout: the pooled
    // connection has sat through the server's read timeout and is reused.
    let mut long = server.settings("idle");
    long.pool.idle_timeout = Duration::from_secs(60);
    let b = backend(&pki, long);
    // Pool idle timeout of 1 s: the connection is dropped by us and replaced.
    let mut short = server.settings("idle");
    short.pool.idle_timeout = Duration::from_secs(1);
    let s = backend(&pki, short);

    kmip::init(&b).await.expect("init");
    let w = b.wrap(b"secret", b"x").await.expect("wrap");
    s.unwrap(&w, b"x").await.expect("unwrap");
    // PyKMIP times an idle connection out after 10 s; wait for it to say so
    // (a busy machine may take longer) rather than sleep a fixed 12 s.
    let timed_out = server
        .log_eventually(Duration::from_secs(60), |log| {
            log.contains("The read operation timed out")
        })
        .await;
    assert!(timed_out, "PyKMIP did not time out the idle connection");
    assert_eq!(
        b.unwrap(&w, b"x")
            .await
            .expect("after idle, long")
            .as_slice(),
        b"secret"
    );
    assert_eq!(
        s.unwrap(&w, b"x")
            .await
            .expect("after idle, short")
            .as_slice(),
        b"secret"
    );
}

/// A stand-in for a broken HSM endpoint on 127.0.0.1: `Hung` completes the
/// TLS handshake with the HSM's certificate and then never answers; `Garbage`
/// answers every connection with an HTTP error and random bytes (an HSM port
/// behind a wrong NAT or load-balancer rule). Stops when dropped.
enum Fake {
    Hung,
    Garbage,
}

struct FakeEndpoint {
    port: u16,
    /// Connections accepted so far.
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeEndpoint {
    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FakeEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_endpoint(pki: &Pki, kind: Fake) -> FakeEndpoint {
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(pki.chain("server-ec", "hsm-ca"), pki.key("server-ec"))
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match kind {
                Fake::Hung => {
                    if let Ok(tls) = acceptor.accept(sock).await {
                        held.push(tls);
                    }
                }
                Fake::Garbage => {
                    let mut junk = b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec();
                    junk.extend((0..512u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
                    let _ = sock.write_all(&junk).await;
                    let _ = sock.shutdown().await;
                }
            }
        }
    });
    FakeEndpoint {
        port,
        accepted,
        task,
    }
}

/// The suspect endpoint's cooldown in `hung_first_endpoint_costs_one_timeout_per_request`.
const COOLDOWN: Duration = Duration::from_secs(10);

/// A hung first endpoint costs a request about one request timeout, not one
/// per KMIP operation (Locate, Get Attributes, Encrypt): after it failed it is
/// tried after the healthy one. The probe then reports it down and the other
/// up, which readiness shows as `degraded`, not `unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_first_endpoint_costs_one_timeout_per_request() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&tmp.path().join("pki"));
    let server = PyKmip::start(&pki, &tmp.path().join("pykmip"), "server-ec");
    let hung = fake_endpoint(&pki, Fake::Hung).await;
    let mut settings = pykmip::test_settings(&[hung.port, server.port], "hung-first");
    settings.request_timeout = Duration::from_secs(2);
    settings.connect_timeout = Duration::from_secs(2);
    // Keep the breaker out of it: the order of endpoints must do the work.
    // The cooldown paces the background trials of the suspect endpoint; it
    // is long enough that none starts before the test asks for one.
    settings.breaker.failures = 100;
    settings.breaker.cooldown = COOLDOWN;
    kmip::init(&backend(
        &pki,
        pykmip::test_settings(&[server.port], "hung-first"),
    ))
    .await
    .expect("init");

    // A cold node: the wrap is Locate + Get Attributes + Encrypt, and the
    // hung endpoint is asked once (each operation asked it first before).
    let b = backend(&pki, settings);
    let w = b.wrap(b"secret", b"x").await.expect("cold wrap");
    assert_eq!(
        hung.accepted(),
        1,
        "one try of the hung endpoint per request"
    );
    for _ in 0..3 {
        let w = b.wrap(b"secret", b"x").await.expect("wrap");
        assert_eq!(
            b.unwrap(&w, b"x").await.expect("unwrap").as_slice(),
            b"secret"
        );
    }
    assert_eq!(
        b.unwrap(&w, b"x").await.expect("unwrap").as_slice(),
        b"secret"
    );
    assert_eq!(hung.accepted(), 1, "the hung endpoint was tried again");
    // Past the cooldown a trial of the hung endpoint runs in the background,
    // and requests keep being served by the other one.
    tokio::time::sleep(COOLDOWN + Duration::from_millis(500)).await;
    for _ in 0..3 {
        let w = b.wrap(b"secret", b"x").await.expect("wrap");
        assert_eq!(
            b.unwrap(&w, b"x").await.expect("unwrap").as_slice(),
            b"secret"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while hung.accepted() < 2 {
        assert!(Instant::now() < deadline, "no trial of the hung endpoint");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = b.probe().await.expect("probe: the second endpoint answers");
    println!("{report:?}");
    assert!(!report.endpoints[0].up, "{report:?}");
    assert!(
        report.endpoints[0].detail.contains("no response within 2s"),
        "{report:?}"
    );
    // One endpoint down, one up: readiness says `degraded` (readiness.rs).
    assert!(report.endpoints[1].up, "{report:?}");
}

/// Garbage at the HSM port is a configuration fault (502, not retryable)
/// on every call, also once the breaker is open, and the cause stays named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_configuration_fault_keeps_its_class_and_cause() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&tmp.path().join("pki"));
    let junk = fake_endpoint(&pki, Fake::Garbage).await;
    let mut settings = pykmip::test_settings(&[junk.port], "garbage");
    settings.breaker.failures = 2;
    settings.breaker.cooldown = Duration::from_secs(60);
    let b = backend(&pki, settings);
    let mut saw_breaker = false;
    for i in 0..5 {
        let err = b.wrap(b"secret", b"x").await.expect_err("garbage");
        println!("{i}: {err}");
        assert!(matches!(err, BackendError::Misconfigured(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&format!(":{}", junk.port)), "{text}");
        if text.contains("circuit breaker open") {
            saw_breaker = true;
            assert!(text.contains("after: "), "{text}");
        }
    }
    assert!(saw_breaker, "the breaker never opened");
    let err = b.probe().await.expect_err("probe");
    assert!(matches!(err, BackendError::Misconfigured(_)), "{err:?}");
    // What readiness shows when the canary fails: the endpoint and its cause.
    let states = b.endpoint_states();
    println!("{states:?}");
    assert_eq!(states.len(), 1, "{states:?}");
    assert!(
        !states[0].up && states[0].detail.starts_with("down: "),
        "{states:?}"
    );
    assert!(
        states[0].detail.contains("circuit breaker open"),
        "{states:?}"
    );
}

/// A TCP relay to the real PyKMIP that can be broken (every connection,
/// open or new, is closed) and mended; counts the connections it relayed.
struct Relay {
    port: u16,
    broken: tokio::sync::watch::Sender<bool>,
    relayed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay_to(target: u16) -> Relay {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (broken, watch) = tokio::sync::watch::channel(false);
    let relayed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = relayed.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if *watch.borrow() {
                drop(inbound);
                continue;
            }
            count.fetch_add(1, Ordering::SeqCst);
            let mut watch = watch.clone();
            tokio::spawn(async move {
                let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                    _ = watch.wait_for(|broken| *broken) => {}
                }
            });
        }
    });
    Relay {
        port,
        broken,
        relayed,
        task,
    }
}

/// A first endpoint that failed is used again once it answers: the
/// background trial puts it back in its place, without a request paying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_first_endpoint_is_used_again() {
    use std::sync::atomic::Ordering;
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(&tmp.path().join("pki"));
    let server = PyKmip::start(&pki, &tmp.path().join("pykmip"), "server-ec");
    let relay = relay_to(server.port).await;
    let mut settings = pykmip::test_settings(&[relay.port, server.port], "recovers");
    settings.breaker.failures = 100;
    settings.breaker.cooldown = Duration::from_millis(500);
    let b = backend(&pki, settings);
    kmip::init(&b).await.expect("init");
    b.wrap(b"secret", b"x")
        .await
        .expect("wrap via the first endpoint");
    assert!(relay.relayed.load(Ordering::SeqCst) > 0);

    // Broken: its pooled connection is dropped too, so the next call fails
    // on it once and goes on to the second endpoint.
    relay.broken.send_replace(true);
    for _ in 0..3 {
        b.wrap(b"secret", b"x")
            .await
            .expect("wrap via the second endpoint");
    }
    let states = b.endpoint_states();
    assert!(!states[0].up && states[1].up, "{states:?}");

    // Mended: within a few cooldowns a trial finds it, and calls use it again.
    relay.broken.send_replace(false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !b.endpoint_states()[0].up {
        assert!(
            Instant::now() < deadline,
            "the mended endpoint is not used again"
        );
        b.wrap(b"secret", b"x").await.expect("wrap");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = relay.relayed.load(Ordering::SeqCst);
    b.forget_current_key();
    b.wrap(b"secret", b"x").await.expect("wrap");
    let states = b.endpoint_states();
    assert!(states[0].up && states[1].up, "{states:?}");
    assert!(
        relay.relayed.load(Ordering::SeqCst) > before,
        "calls go to the first endpoint again"
    );
}
