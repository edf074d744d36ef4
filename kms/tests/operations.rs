//! Running in production: reload without restart, systemd notifications,
//! the audit trail, metrics, readiness and rate limits, against a real
//! `cmx-kms serve` (or, for readiness, a node in this process whose soft
//! backend a test can switch off).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{pki, wait_for};

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::client::{Client, chain};
use support::guide_pki::{ClientKind, keytool};
use support::node::TestNode;

#[test]
fn sighup_rotates_device_certificates_without_dropping_requests() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    let backend = node.client(&pki, &pki.cmx_backend);
    let body = chain(&backend);
    let new_dev = pki.make_client("cmxDevice20261128", ClientKind::SignedByClientCa);
    let new_client = Client::new(node.addr, &pki.ca.cert, Some((&new_dev.cert, &new_dev.key)));
    assert!(
        new_client.request("GET", "/v1/health", None).is_err(),
        "not pinned yet"
    );

    // Continuous requests with the old device certificate, new connections
    // and one keep-alive connection, while the keystore changes underneath.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let old = node.client(&pki, &pki.cmx_device);
    let load = {
        let (stop, ok, failed, body) = (stop.clone(), ok.clone(), failed.clone(), body.clone());
        std::thread::spawn(move || {
            let mut ka = old.keep_alive().unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                for r in [
                    old.request(
                        "POST",
                        "/v1/workspace-keys/decrypt",
                        Some(body.to_string().as_bytes()),
                    ),
                    ka.post("/v1/workspace-keys/decrypt", &body),
                ] {
                    match r {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        other => {
                            eprintln!("continuous request failed: {other:?}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            }
        })
    };
    wait_for("some load", Duration::from_secs(10), || {
        ok.load(Ordering::SeqCst) > 5
    });
    let import = |alias: &str, cert: &std::path::Path| {
        keytool(
            &pki.dir,
            &format!(
                "-import -noprompt -alias {alias} -file {} -keystore {} -storepass {}",
                cert.display(),
                pki.keystore.display(),
                pki.store_password
            ),
        )
    };
    import("cmxDevice20261128", &new_dev.cert);
    let reloads = |n: &TestNode| n.log_text().matches("configuration reloaded").count();
    node.signal("HUP");
    wait_for("reload", Duration::from_secs(10), || reloads(&node) == 1);
    let r = new_client
        .request(
            "POST",
            "/v1/workspace-keys/decrypt",
            Some(body.to_string().as_bytes()),
        )
        .unwrap();
    assert_eq!(
        r.status, 200,
        "the newly imported device certificate works after SIGHUP"
    );

    // A corrupted keystore: the reload fails and the node keeps serving.
    let good = std::fs::read(&pki.keystore).unwrap();
    std::fs::write(&pki.keystore, &good[..good.len() / 2]).unwrap();
    node.signal("HUP");
    wait_for("failed reload", Duration::from_secs(10), || {
        node.log_text().contains("reload failed")
    });
    assert_eq!(
        new_client
            .request("GET", "/v1/health", None)
            .unwrap()
            .status,
        200
    );
    std::fs::write(&pki.keystore, &good).unwrap();

    // Removing the old alias refuses it after the next reload.
    keytool(
        &pki.dir,
        &format!(
            "-delete -alias cmxDevice -keystore {} -storepass {}",
            pki.keystore.display(),
            pki.store_password
        ),
    );
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    node.signal("HUP");
    wait_for("second reload", Duration::from_secs(10), || {
        reloads(&node) == 2
    });
    let old = node.client(&pki, &pki.cmx_device);
    assert!(
        old.request("GET", "/v1/health", None).is_err(),
        "a removed alias is refused"
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "continuous requests saw errors"
    );
    assert!(ok.load(Ordering::SeqCst) > 10);
    let m = node.metrics();
    assert!(
        m.contains("cmx_kms_reloads_total{result=\"success\"} 2"),
        "{m}"
    );
    assert!(m.contains("cmx_kms_reloads_total{result=\"failure\"} 1"));
}

#[test]
fn the_node_runs_the_configured_worker_threads() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (extra, workers) in [("", cpus + 1), ("kms.server.worker-threads=3\n", 3)] {
        let node = TestNode::start(&pki, &dir.path().join(format!("node{workers}")), extra);
        let listening = || {
            let log = node.log_text();
            log.lines()
                .find(|l| l.contains("listening"))
                .map(str::to_owned)
        };
        wait_for("the listening line", Duration::from_secs(30), || {
            listening().is_some()
        });
        let line = listening().unwrap();
        let expected = format!("workers={workers}");
        assert!(
            line.split_whitespace().any(|field| field == expected),
            "{extra:?}: {line}"
        );
    }
}

#[test]
fn notify_socket_receives_ready_reload_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let ndir = dir.path().join("node");
    let mut node = TestNode::start_with(
        &ndir,
        |p, m| TestNode::properties(&pki, &ndir, p, m, ""),
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut got = Vec::new();
    let recv_until = |want: &str, got: &mut Vec<String>| {
        let mut buf = [0u8; 4096];
        loop {
            let n = sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {want} (got {got:?}): {e}"));
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            got.push(msg.clone());
            if msg.lines().any(|l| l == want) {
                return msg;
            }
        }
    };
    let ready = recv_until("READY=1", &mut got);
    assert!(ready.contains("STATUS=serving on"), "{ready}");
    node.signal("HUP");
    let reloading = recv_until("RELOADING=1", &mut got);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    recv_until("READY=1", &mut got);
    node.signal("TERM");
    recv_until("STOPPING=1", &mut got);
    let status = node.child.wait().unwrap();
    assert!(status.success(), "exit 0 after SIGTERM: {status}");
}

#[test]
fn audit_records_operations_and_refusals_and_verify_finds_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    let b = node.client(&pki, &pki.cmx_backend);
    let d = node.client(&pki, &pki.cmx_device);
    let body = chain(&b);
    let key = d.post("/v1/workspace-keys/decrypt", &body).json()["workspace_key"]
        .as_str()
        .unwrap()
        .to_owned();
    b.post(
        "/v1/customer-keys/rewrap",
        &json!({"wrapped_customer_key": body["wrapped_customer_key"]}),
    );
    assert_eq!(d.post("/v1/customer-keys", &json!({})).status, 403);
    assert_eq!(
        b.post("/v1/user-keys", &json!({"wrapped_customer_key": "AAAA"}))
            .status,
        422
    );
    let stranger = pki.make_client("stranger", ClientKind::SignedByClientCa);
    let _ = Client::new(
        node.addr,
        &pki.ca.cert,
        Some((&stranger.cert, &stranger.key)),
    )
    .request("GET", "/v1/health", None);
    // The refused handshake is an aggregated notice, written by the audit
    // thread once woken: wait for it instead of a fixed pause.
    wait_for(
        "the refused handshake's record",
        Duration::from_secs(30),
        || std::fs::read_to_string(&node.audit).is_ok_and(|a| a.contains("\"tls-handshake\"")),
    );

    let text = std::fs::read_to_string(&node.audit).unwrap();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |op: &str, outcome: &str| {
        recs.iter()
            .find(|r| r["operation"] == op && r["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {op}/{outcome} record in\n{text}"))
    };
    for op in [
        "create-customer-key",
        "create-user-key",
        "create-workspace-key",
        "decrypt-workspace-key",
        "rewrap-customer-key",
    ] {
        let r = find(op, "ok");
        assert_eq!(r["backend"], "soft");
        assert_eq!(r["key_id"].as_str().unwrap().len(), 32, "{r}");
        for field in [
            "time",
            "request_id",
            "client_subject",
            "client_serial",
            "client_fingerprint",
            "role",
            "latency_us",
            "seq",
            "prev",
        ] {
            assert!(!r[field].is_null(), "{op}: {field} missing");
        }
    }
    assert_eq!(find("decrypt-workspace-key", "ok")["role"], "device");
    assert!(
        ["hit", "miss"].contains(
            &find("decrypt-workspace-key", "ok")["cache"]
                .as_str()
                .unwrap()
        )
    );
    assert_eq!(find("create-customer-key", "forbidden")["role"], "device");
    find("create-user-key", "invalid-wrapped-key");
    let refused = find("tls-handshake", "refused-not-pinned");
    assert!(
        refused["client_subject"]
            .as_str()
            .unwrap()
            .contains("stranger")
    );
    assert!(!text.contains(&key), "no key material in the audit trail");

    let verify = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_cmx-kms"))
            .args(["audit", "verify"])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = verify(&node.audit);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = text.lines().collect();
    let deleted = dir.path().join("deleted.log");
    std::fs::write(
        &deleted,
        lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, l)| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = verify(&deleted);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stdout).contains("line 3: sequence number 3, expected 2"));
    let edited = dir.path().join("edited.log");
    std::fs::write(
        &edited,
        text.replacen("\"role\":\"device\"", "\"role\":\"backend\"", 1),
    )
    .unwrap();
    let out = verify(&edited);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hash chain broken"));
}

#[test]
fn metrics_parse_and_count_requests() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    let scrape = || {
        let text = node.metrics();
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        prometheus_parse::Scrape::parse(lines).unwrap()
    };
    let value = |s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]| -> f64 {
        s.samples
            .iter()
            .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    let before = scrape();
    let b = node.client(&pki, &pki.cmx_backend);
    let body = chain(&b);
    for _ in 0..3 {
        assert_eq!(
            node.client(&pki, &pki.cmx_device)
                .post("/v1/workspace-keys/decrypt", &body)
                .status,
            200
        );
    }
    let _ = node.anonymous(&pki).request("GET", "/v1/health", None);
    let after = scrape();
    let ok_decrypts = [
        ("operation", "decrypt-workspace-key"),
        ("role", "device"),
        ("outcome", "ok"),
    ];
    assert_eq!(
        value(&after, "cmx_kms_requests_total", &ok_decrypts)
            - value(&before, "cmx_kms_requests_total", &ok_decrypts),
        3.0
    );
    assert!(
        value(&after, "cmx_kms_cache_hits_total", &[]) >= 3.0,
        "decrypts after create hit the cache"
    );
    assert!(value(&after, "cmx_kms_cache_misses_total", &[]) >= 1.0);
    // The client reads the server's alert a moment before the server's task
    // counts the failure: poll.
    wait_for("handshake failure metric", Duration::from_secs(5), || {
        value(
            &scrape(),
            "cmx_kms_tls_handshake_failures_total",
            &[("reason", "no-certificate")],
        ) == 1.0
    });
    assert!(
        value(
            &after,
            "cmx_kms_certificate_expiry_days",
            &[("alias", "cmxbackend")]
        ) + value(
            &after,
            "cmx_kms_certificate_expiry_days",
            &[("alias", "cmxBackend")]
        ) > 300.0
    );
    let hist = after
        .samples
        .iter()
        .find(|s| s.metric == "cmx_kms_request_duration_seconds")
        .expect("latency histogram");
    assert!(
        matches!(hist.value, prometheus_parse::Value::Histogram(_)),
        "{:?}",
        hist.value
    );
    assert_eq!(value(&after, "cmx_kms_ready", &[]), 2.0);
}

#[test]
fn device_rate_limit_answers_429_while_the_backend_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(
        &pki,
        &dir.path().join("node"),
        "kms.limits.device.rate=1\nkms.limits.device.burst=2\n",
    );
    let b = node.client(&pki, &pki.cmx_backend);
    let body = chain(&b);
    let d = node.client(&pki, &pki.cmx_device);
    let statuses: Vec<_> = (0..4)
        .map(|_| d.post("/v1/workspace-keys/decrypt", &body))
        .collect();
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .expect("a 429 after the burst");
    assert_eq!(limited.label(), "too-many-requests");
    let ra: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&ra), "Retry-After {ra}");
    assert_eq!(statuses.iter().filter(|r| r.status == 200).count(), 2);
    for _ in 0..5 {
        assert_eq!(
            b.post("/v1/workspace-keys/decrypt", &body).status,
            200,
            "backend still served"
        );
    }
}

#[test]
fn idle_and_slow_connections_are_closed_by_their_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(
        &pki,
        &dir.path().join("node"),
        "kms.server.header-timeout=1s\nkms.server.idle-timeout=5s\n",
    );
    let b = node.client(&pki, &pki.cmx_backend);
    // Idle longer than the header timeout but well within the idle timeout:
    // kept (the header timer runs only once a request has begun).
    let mut ka = b.keep_alive().unwrap();
    assert_eq!(
        ka.post("/v1/customer-keys", &json!({})).unwrap().status,
        201
    );
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        ka.post("/v1/customer-keys", &json!({})).unwrap().status,
        201,
        "idle 2 s, header timeout 1 s: kept"
    );
    let closed = |reason: &str| {
        node.metrics().contains(&format!(
            "cmx_kms_connections_closed_total{{reason=\"{reason}\"}} 1"
        ))
    };
    assert!(!closed("idle"), "closed while in use");
    // Idle past the idle timeout: the server closes it, counts it, and the
    // next request on it fails.
    wait_for("the idle close", Duration::from_secs(60), || closed("idle"));
    assert!(
        ka.post("/v1/customer-keys", &json!({})).is_err(),
        "idle past 5 s: closed"
    );
    // A client that starts a request and stalls in its headers is cut off:
    // closed without an answer by the node's header timer (hyper's own is
    // off), which counts the close before it closes. Not the client's own
    // 30 s read timeout.
    let mut slow = b.keep_alive().unwrap();
    slow.send_raw(b"POST /v1/customer-keys HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let r = slow.read();
    let err = r.expect_err("no answer expected");
    assert!(
        !err.contains("timed out") && !err.contains("temporarily unavailable"),
        "the client gave up before the server closed: {err}"
    );
    assert!(closed("header-timeout"), "{}", node.metrics());
}

#[test]
fn key_operations_are_refused_when_the_audit_trail_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let ndir = dir.path().join("node");
    // /dev/full fails every write with ENOSPC: a full disk.
    let node = TestNode::start_with(
        &ndir,
        |p, m| {
            TestNode::properties(&pki, &ndir, p, m, "").replace(
                &format!("kms.audit.file={}", ndir.join("audit.log").display()),
                "kms.audit.file=/dev/full",
            )
        },
        &[],
    );
    let b = node.client(&pki, &pki.cmx_backend);
    let r = b.post("/v1/customer-keys", &json!({}));
    assert_eq!((r.status, r.label().as_str()), (503, "audit-unavailable"));
    assert!(
        r.json().get("wrapped_customer_key").is_none(),
        "no key leaves unaudited"
    );
    assert_eq!(b.request("GET", "/v1/health", None).unwrap().status, 200);
    let m = node.metrics();
    assert!(m.contains("cmx_kms_audit_failures_total 1"), "{m}");
    assert!(node.log_text().contains("audit record not written"));
}
