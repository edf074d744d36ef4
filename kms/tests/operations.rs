//! Running in production: reload without restart, the configured worker
//! threads and systemd notifications, against a real `cmx-kms serve`. The
//! audit trail is in `audit_trail.rs`, metrics and limits in
//! `metrics_limits.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{pki, wait_for};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
fn a_reload_warns_about_each_key_that_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    let old_port = node.addr.port();
    let new_port = support::node::free_port();
    let old_audit = node.audit.display().to_string();
    let new_audit = dir.path().join("node/new-name.log");
    let text = std::fs::read_to_string(&node.properties)
        .unwrap()
        .replace(
            &format!("kms.server.port={old_port}\n"),
            &format!("kms.server.port={new_port}\n"),
        )
        .replace(
            &format!("kms.audit.file={old_audit}\n"),
            &format!("kms.audit.file={}\n", new_audit.display()),
        );
    // A reloadable change goes with them, and is applied.
    let text = format!("{text}kms.server.worker-threads=7\nkms.limits.backend.rate=0\n");
    std::fs::write(&node.properties, text).unwrap();
    node.signal("HUP");
    wait_for("the reload", Duration::from_secs(20), || {
        node.log_text().contains("configuration reloaded")
    });

    let log = node.log_text();
    let warned = |want: &str| {
        log.lines()
            .any(|l| l.contains(" WARN ") && l.ends_with(want))
    };
    let port = format!(
        "kms.server.port changed ({old_port} -> {new_port}) but needs a restart: still listening on port {old_port}"
    );
    let audit = format!(
        "kms.audit.file changed ({old_audit} -> {}) but needs a restart: records still go to {old_audit}",
        new_audit.display()
    );
    let workers =
        "kms.server.worker-threads changed (0 -> 7) but needs a restart: still running with 0";
    for want in [&port, &audit, workers] {
        assert!(warned(want), "no WARN line ending {want:?}:\n{log}");
    }
    assert!(log.contains("needs_restart=3"), "{log}");
    assert!(!log.contains("kms.limits.backend.rate changed"), "{log}");
    assert!(
        !log.contains(&pki.store_password),
        "a password in the log:\n{log}"
    );
    // The old port still answers; nothing listens on the new one.
    let r = node
        .client(&pki, &pki.cmx_backend)
        .request("GET", "/v1/health", None)
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(std::net::TcpStream::connect(("127.0.0.1", new_port)).is_err());
    assert!(
        !new_audit.exists(),
        "the audit trail moved before a restart"
    );
}

#[test]
fn a_failed_reload_logs_each_problem_on_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    let good = std::fs::read_to_string(&node.properties).unwrap();
    // Two problems; the second value holds a line break (`\n` in the file).
    let broken = format!("{good}kms.server.max-pending=lots\nkms.cache.ttl=5x\\nINFO forged\n");
    std::fs::write(&node.properties, broken).unwrap();
    node.signal("HUP");
    wait_for("the failed reload", Duration::from_secs(20), || {
        node.log_text().contains("reload problem 2 of 2")
    });
    let log = node.log_text();
    let line = |want: &str| {
        log.lines()
            .find(|l| l.contains(want))
            .unwrap_or_else(|| panic!("no line with {want:?}:\n{log}"))
            .to_owned()
    };
    assert!(line("reload failed; still serving").contains("problems=2"));
    assert!(line("reload problem 1 of 2").contains("kms.server.max-pending"));
    // The value is quoted, its line break escaped.
    assert!(line("reload problem 2 of 2").contains(r"kms.cache.ttl: '5x\nINFO forged'"));
    assert!(
        !line("reload problem 1 of 2").contains("kms.cache.ttl"),
        "two problems on one line:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("INFO forged")),
        "a value forged a log line:\n{log}"
    );
    let r = node
        .client(&pki, &pki.cmx_backend)
        .request("GET", "/v1/health", None)
        .unwrap();
    assert_eq!(
        r.status, 200,
        "still serving with the previous configuration"
    );
}

/// Starts a node and sends it `sig` as soon as it logs its first line (the
/// soft backend's warning, when `serve` has just loaded its configuration):
/// before it has built anything or installed a signal handler of its own.
fn signal_during_start(
    pki: &support::guide_pki::GuidePki,
    dir: &std::path::Path,
    sig: Signal,
) -> TestNode {
    let node = TestNode::launch(pki, dir, "");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node
        .log_text()
        .contains("the soft backend keeps the master key")
    {
        assert!(
            Instant::now() < deadline,
            "no first line:\n{}",
            node.log_text()
        );
        std::thread::yield_now();
    }
    let pid = Pid::from_raw(i32::try_from(node.child.id()).unwrap());
    nix::sys::signal::kill(pid, sig).unwrap();
    node
}

#[test]
fn a_sighup_during_start_is_answered_as_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    for i in 0..20 {
        let mut node = signal_during_start(&pki, &dir.path().join(format!("n{i}")), Signal::SIGHUP);
        node.wait_listening();
        wait_for("the reload", Duration::from_secs(20), || {
            node.log_text().contains("configuration reloaded")
        });
        assert!(
            node.child.try_wait().unwrap().is_none(),
            "run {i}: the node stopped"
        );
        let r = node
            .client(&pki, &pki.cmx_backend)
            .request("GET", "/v1/health", None)
            .unwrap();
        assert_eq!(r.status, 200, "run {i}");
    }
}

#[test]
fn a_sigterm_during_start_stops_the_node_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    for i in 0..5 {
        let mut node =
            signal_during_start(&pki, &dir.path().join(format!("n{i}")), Signal::SIGTERM);
        let status = node.wait_exit("the stop", Duration::from_secs(30));
        let log = node.log_text();
        assert!(status.success(), "run {i}: {status}\n{log}");
        assert!(
            log.contains("SIGTERM: shutting down") && log.contains("stopped"),
            "{log}"
        );
    }
}

/// A child process killed when the test ends, pass or fail.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn drain_finds_a_node_whose_binary_has_another_name() {
    use std::process::{Command, Stdio};
    use support::node::{cmx_with_config, ensure_soft_key, free_port, output_text};

    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let (port, mport) = (free_port(), free_port());
    let props = node_dir.join("kms.properties");
    std::fs::write(
        &props,
        TestNode::properties(&pki, &node_dir, port, mport, ""),
    )
    .unwrap();
    ensure_soft_key(&props, &[]);
    // Started through a link of another name (a wrapper, a versioned path):
    // its executable is this binary's file.
    let link = dir.path().join("kms-node");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cmx-kms"), &link).unwrap();
    let log = node_dir.join("server.log");
    let mut node = Killed(
        Command::new(&link)
            .arg("serve")
            .arg("-c")
            .arg(&props)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the node to listen", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let out = cmx_with_config(&["drain"], &props);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("draining"),
        "{}",
        output_text(&out)
    );
    wait_for("the node to log the drain", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("drain"))
    });
    let _ = node.0.kill();
    let _ = node.0.wait();

    // Another program running `serve` with that configuration is named,
    // not signalled. (`read` is a builtin: killing the shell leaves no child.)
    let other = Killed(
        Command::new("sh")
            .args(["-c", "read x", "kms-wrapper", "serve", "-c"])
            .arg(&props)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = cmx_with_config(&["drain"], &props);
    assert_eq!(out.status.code(), Some(69), "{}", output_text(&out));
    let text = output_text(&out);
    let pid = other.0.id();
    assert!(
        text.contains(&format!("pid {pid} (")) && text.contains("another program name"),
        "{text}"
    );
}
