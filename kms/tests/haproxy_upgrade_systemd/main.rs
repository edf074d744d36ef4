//! The rolling upgrade of `haproxy_upgrade.rs`, with each node in a root of
//! its own booted under a real systemd (issue 14, item 4): three
//! `systemd-nspawn -b` containers (installer/tests/support/booted.rs) share
//! the host's network, each node's kms.properties binds 127.0.0.1, .2 or .3
//! on the same port, and HAProxy on the host runs the shipped
//! `packaging/haproxy/cmx-kms.cfg` (addresses changed only) in front of them
//! while four keep-alive clients send requests the whole time, each pausing
//! 1 ms after every answer (at full speed, three nodes, HAProxy and the
//! clients saturated the two CPUs and the scheduler at times left a node's
//! threads without a CPU for seconds, its checks unanswered).
//!
//! Inside each root the guide's `sh CMX-KMS-Installer.sh` runs as root, so
//! `systemctl` is what starts, stops and restarts the node and the stop is
//! the unit's: SIGTERM, the node reports `draining` to HAProxy's check for
//! `kms.server.drain-delay`, then closes its keep-alive connections cleanly,
//! all within `TimeoutStopSec`. One node at a time goes from N-1 to N, the
//! next only once HAProxy has taken the upgraded one back; then a broken N+1
//! on node 2 rolls back to N by itself while the two others serve.
//!
//! Checked: not one request through HAProxy failed over the whole run; after
//! its turn each node has N installed (`rpm -q` inside) and its unit
//! `active`; each upgrade stopped the node through systemd once, and the stop
//! was the drain: systemd never had to kill it at `TimeoutStopSec`, and
//! HAProxy took the node out because its check answered 503 `draining`, not
//! because the port was closed, and the server's own "draining" line is in
//! the journal (at the default level a served request logs nothing, so the
//! load does not reach journald's rate limit, which once dropped it); the broken N+1 was
//! rolled back with the unit active on N; every node served devices'
//! decrypts (its audit trail).
//!
//! A separate test binary in this crate rather than a module of the
//! installer's `systemd` binary: it needs this crate's test support (the
//! guide's PKI, the HTTPS keep-alive clients, HAProxy), and as its own binary
//! it never runs at the same time as the systemd lifecycle test's container.
//! Three booted roots fit the 2-core test machine (the roots are tmpfs
//! copies of one cached tarball, booted in parallel).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

#[path = "../../../installer/tests/support/mod.rs"]
mod install_support;

#[path = "../support/upgrade_node.rs"]
mod upgrade_node;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use install_support::booted::BootedRoot;
use install_support::node::expect_code;
use install_support::{Artifacts, artifacts, text};
use support::client::{Client, chain};
use support::guide_pki::{GuidePki, Identity};
use support::haproxy::{HaProxy, Server};
use support::load::paced;
use support::{pki, wait_for};

const WAIT: Duration = Duration::from_secs(90);
/// Where the extracted tarball and the other packages appear in each root.
const INSTALLER: &str = "/opt/cmx-test/installer";
const RPMS: &str = "/opt/cmx-test/rpms";
const UNIT: &str = "cmx-kms.service";
mod member;
use member::{Cluster, Member};

fn client(pki: &GuidePki, addr: SocketAddr, id: &Identity) -> Client {
    Client::new(addr, &pki.ca.cert, Some((&id.cert, &id.key)))
}

/// The packages as paths inside the roots.
fn in_rpms(p: &Path) -> String {
    format!("{RPMS}/{}", p.file_name().unwrap().to_string_lossy())
}

fn boot(a: &Artifacts) -> BootedRoot {
    BootedRoot::boot(&[
        (a.tarball_dir.as_path(), INSTALLER),
        (a.rpm_prev.parent().unwrap(), RPMS),
    ])
}

/// A line of HAProxy's log (with the tests' `option log-health-checks`)
/// saying a check of `server` failed; any server if `None`.
fn is_failed_check(l: &str, server: Option<&str>) -> bool {
    let Some(rest) = l.split("Health check for server kms_nodes/").nth(1) else {
        return false;
    };
    let Some((name, after)) = rest.split_once(' ') else {
        return false;
    };
    server.is_none_or(|s| s == name) && after.starts_with("failed")
}

/// HAProxy's log from line `from` on (where `name`'s upgrade began) says it
/// took `name` out because its check answered 503 (`draining`), not because
/// the node's port was closed or reset or its check went unanswered. With
/// the tests' `option log-health-checks` the "is DOWN" line names no reason:
/// the failed check just before it does. (From line 0 the first DOWN could
/// be HAProxy's start instead: until a server has passed its first checks,
/// one failed check takes it out.)
fn taken_out_by_the_check(log: &str, from: usize, name: &str) -> Result<(), String> {
    let down = format!("Server kms_nodes/{name} is DOWN");
    let mut last_failed: Option<&str> = None;
    for l in log.lines().skip(from) {
        if is_failed_check(l, Some(name)) {
            last_failed = Some(l);
        } else if l.contains(&down) {
            return match last_failed {
                Some(last) if last.contains("code: 503") => Ok(()),
                Some(last) => Err(format!("{name} taken out otherwise than by a 503: {last}")),
                None => Err(format!("{name} DOWN without a failed check before it: {l}")),
            };
        }
    }
    Err(format!("HAProxy never took {name} out during its upgrade"))
}

/// The predicate against lines of the format HAProxy 2.6 writes.
#[test]
fn failed_checks_are_told_from_other_lines() {
    let ok = "2026-12-03T12:31:53.391143+00:00 Health check for server kms_nodes/kms1 succeeded, reason: Layer7 check passed, code: 200, check duration: 1ms, status: 3/3 UP.";
    let drain = "2026-12-03T12:31:59.593681+00:00 Health check for server kms_nodes/kms1 failed, reason: Layer7 wrong status, code: 503, info: \"Service Unavailable\", check duration: 1ms, status: 2/3 UP.";
    let timeout = "2026-12-03T12:26:34.000000+00:00 Health check for server kms_nodes/kms12 failed, reason: Layer7 timeout, check duration: 2001ms, status: 0/2 DOWN.";
    assert!(!is_failed_check(ok, None));
    assert!(is_failed_check(drain, None) && is_failed_check(drain, Some("kms1")));
    assert!(!is_failed_check(drain, Some("kms2")));
    assert!(is_failed_check(timeout, Some("kms12")) && !is_failed_check(timeout, Some("kms1")));
    let down = "2026-12-03T12:32:03.593900+00:00 Server kms_nodes/kms1 is DOWN. 2 active and 0 backup servers left.";
    let log = [ok, drain, down].join("\n");
    assert_eq!(taken_out_by_the_check(&log, 0, "kms1"), Ok(()));
    assert!(taken_out_by_the_check(&log, 2, "kms1").is_err());
    let log = [ok, timeout.replace("kms12", "kms1").as_str(), down].join("\n");
    let e = taken_out_by_the_check(&log, 0, "kms1").unwrap_err();
    assert!(e.contains("otherwise than by a 503"), "{e}");
}

#[test]
fn rolling_upgrade_under_systemd_behind_haproxy_fails_no_request() {
    let t0 = std::time::Instant::now();
    // Each step with its UTC time, to read beside HAProxy's and the journals'.
    let step = |what: &str| {
        eprintln!(
            "[{:>5.1}s {}] {what}",
            t0.elapsed().as_secs_f64(),
            cmx_kms::audit::rfc3339_now()
        );
    };
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    // The cluster's one soft master key, as one HSM would be shared.
    let soft_key = dir.path().join("soft-master.key");
    cmx_kms::backend::soft::SoftBackend::open_or_create(
        &soft_key,
        &secrecy::SecretString::from(pki.store_password.clone()),
    )
    .unwrap();
    let cluster = Cluster {
        pki: &pki,
        soft_key: &soft_key,
        prev: in_rpms(&a.rpm_prev),
    };
    step("packages built");

    // Three roots booted, N-1 installed, configured and started in each, in
    // parallel (the roots are independent).
    let (ips, port, hport) = upgrade_node::three_loopback_nodes();
    let members: Vec<Member> = std::thread::scope(|s| {
        let handles: Vec<_> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                let c = &cluster;
                let api = SocketAddr::new(*ip, port);
                s.spawn(move || Member::set_up(boot(a), format!("kms{}", i + 1), api, hport, c))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    step("three nodes on N-1 under systemd");

    let servers: Vec<Server> = members
        .iter()
        .map(|m| Server {
            api: m.api,
            health: SocketAddr::new(m.api.ip(), hport),
        })
        .collect();
    let lb = HaProxy::start(&dir.path().join("lb"), &servers);
    for m in &members {
        lb.wait_server(&m.name, true, WAIT);
    }
    let body = chain(&client(&pki, lb.addr, &pki.cmx_backend));
    // Paced: three nodes, HAProxy and the clients share two CPUs; at full
    // speed the scheduler left one node's runnable threads without a CPU
    // for seconds at times, and its checks went unanswered.
    let (l, threads) = paced(
        client(&pki, lb.addr, &pki.cmx_device),
        body.clone(),
        4,
        Duration::from_millis(1),
    );
    let progress = |what: &str| {
        let before = l.ok.load(Ordering::SeqCst);
        wait_for(what, WAIT, || l.ok.load(Ordering::SeqCst) > before + 20);
    };
    progress("requests before the upgrade");
    step("HAProxy and the load running");

    // N-1 → N, one node at a time (docs/haproxy.md's procedure): the
    // installer stops the node through systemd (the drain), installs N,
    // starts it (active after READY=1); the next node only once HAProxy has
    // taken this one back. Drain findings are checked after the load's count.
    let mut drain_findings = Vec::new();
    // Where each node's upgrade begins in HAProxy's log.
    let mut windows = Vec::new();
    for m in &members {
        step(&format!("upgrading {}", m.name));
        windows.push(lb.log_lines().lines().count());
        let before = m.stops();
        let out = m.installer("");
        expect_code(&out, 0, &format!("upgrade {} to N", m.name));
        assert!(
            text(&out).contains("Upgrade cmx-kms-server 0.1.0-1 to cmx-kms-server 0.1.0-2"),
            "{}",
            text(&out)
        );
        assert_eq!(m.version().as_deref(), Some("0.1.0-2"), "{}", m.name);
        assert_eq!(m.is_active(), "active", "{}", m.status());
        let after = m.stops();
        if after.0 != before.0 + 1 || after.1 != before.1 {
            drain_findings.push(format!(
                "{}: not one clean stop by systemd (stops {} → {}, forced {} → {}):\n{}",
                m.name, before.0, after.0, before.1, after.1, after.2
            ));
        }
        // The server's own line made it to the journal: at the default
        // level a served request writes none, so journald's rate limit is
        // not reached under this load.
        let said = m.drain_lines();
        if said != after.0 {
            drain_findings.push(format!(
                "{}: {said} 'draining' lines of the server in the journal for {} stops",
                m.name, after.0
            ));
        }
        lb.wait_server(&m.name, true, WAIT);
        progress(&format!("requests after upgrading {}", m.name));
        step(&format!("{} upgraded", m.name));
    }

    // A broken N+1 on node 2 rolls back to N by itself; nodes 1 and 3 serve.
    let m2 = &members[1];
    let rollback_from = lb.log_lines().lines().count();
    let out = m2.installer(&format!("--package {}", in_rpms(&a.rpm_broken)));
    expect_code(&out, 2, "broken upgrade");
    let t = text(&out);
    assert!(
        t.contains("ROLLED BACK") && t.contains("cmx-kms-server 0.1.0-2"),
        "{t}"
    );
    assert_eq!(m2.version().as_deref(), Some("0.1.0-2"));
    assert_eq!(m2.is_active(), "active", "{}", m2.status());
    lb.wait_server(&m2.name, true, WAIT);
    progress("requests after the rollback");
    // The rolled-back node serves again: a new connection reaches it.
    let fresh = client(&pki, m2.api, &pki.cmx_device);
    assert_eq!(fresh.post("/v1/workspace-keys/decrypt", &body).status, 200);
    step("broken N+1 rolled back on kms2");

    let t = l.finish(threads);
    eprintln!(
        "{} requests served during the rolling upgrade under systemd, {} answered with Connection: close, {} failed",
        t.ok, t.closes, t.failed
    );
    assert_eq!(t.failed, 0, "{:?}\n{}", t.errors, lb.log_text());
    assert!(drain_findings.is_empty(), "{}", drain_findings.join("\n"));
    let log = lb.log_lines();
    // Not failures (the requests all passed), but worth reading: any check
    // of any node that failed otherwise than by a drain's 503 (unanswered,
    // refused, reset), with the step it fell in. (Once HAProxy has taken a
    // node out, its port is closed while systemd restarts it and while the
    // broken N+1 fails to start on kms2: refused checks there, "0/2 DOWN",
    // are expected.)
    for (i, l) in log.lines().enumerate() {
        if is_failed_check(l, None) && !l.contains("code: 503") {
            let during = if i >= rollback_from {
                "the broken N+1 on kms2".to_owned()
            } else {
                match windows.iter().rposition(|&from| i >= from) {
                    Some(n) => format!("the upgrade of {}", members[n].name),
                    None => "HAProxy's start, before the upgrades".to_owned(),
                }
            };
            eprintln!("finding: a check failed otherwise than by a 503 during {during}: {l}");
        }
    }
    for (m, &from) in members.iter().zip(&windows) {
        if let Err(e) = taken_out_by_the_check(&log, from, &m.name) {
            panic!(
                "{e}\n== HAProxy's log\n{}\n== {}'s journal\n{}",
                lb.log_text(),
                m.name,
                m.journal()
            );
        }
        assert!(m.served(), "{} served no device request", m.name);
        assert_eq!(m.version().as_deref(), Some("0.1.0-2"), "{}", m.name);
        assert_eq!(m.is_active(), "active", "{}", m.name);
    }
    drop(lb);
    // Power the three containers off at once: each stop drains (8 s).
    std::thread::scope(|s| {
        for m in members {
            s.spawn(move || drop(m));
        }
    });
    step("containers halted and removed");
}
