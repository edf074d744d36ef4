//! What the systemd lifecycle test runs and checks, step by step: the node
//! in the booted root, its clients on the host, the unit's state.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crate::support::booted::BootedRoot;
use crate::support::text;

/// Where the extracted tarball and the extra packages appear inside the root.
pub const INSTALLER: &str = "/opt/cmx-test/installer";
pub const RPMS: &str = "/opt/cmx-test/rpms";
pub const UNIT: &str = "cmx-kms.service";

/// The booted node and how to reach it.
pub struct Node {
    pub b: BootedRoot,
    pub port: u16,
    /// The `cmx-kms dev` folder whose keystore the node uses (client certs).
    pub dev: Option<cmx_kms::dev::DevFolder>,
}

impl Node {
    /// `sh CMX-KMS-Installer.sh --yes --rpm-nodeps <args>` inside the root,
    /// as the guide says (the root's rpm database holds no Red Hat packages).
    pub fn installer(&self, args: &str) -> Output {
        self.b.sh(&format!(
            "cd {INSTALLER} && sh CMX-KMS-Installer.sh --yes --rpm-nodeps {args}"
        ))
    }

    /// `rpm -q cmx-kms-server` inside: `Some("0.1.0-2")` or `None`.
    pub fn installed(&self) -> Option<String> {
        let out = self
            .b
            .sh("rpm -q --qf '%{VERSION}-%{RELEASE}' cmx-kms-server");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The unit's main pid (0 when not running).
    pub fn main_pid(&self) -> u32 {
        self.b.show("MainPID").parse().unwrap()
    }

    pub fn active(&self) -> String {
        format!("{}/{}", self.b.show("ActiveState"), self.b.show("SubState"))
    }

    /// `systemctl status` and the unit's journal, for failure messages and
    /// for the "what to fix" checks.
    pub fn status_and_journal(&self) -> String {
        text(&self.b.sh(&format!(
            "systemctl status --no-pager -l -n 30 {UNIT}; journalctl --no-pager -u {UNIT} -o cat"
        )))
    }

    /// The unit's journal with systemd's own lines about it, in order.
    pub fn journal(&self) -> String {
        self.b
            .must(&format!("journalctl --no-pager -u {UNIT} -o cat"))
    }

    fn client(&self, name: &str) -> (PathBuf, PathBuf, PathBuf) {
        let d = self.dev.as_ref().expect("configured");
        (
            d.path("ca.crt"),
            d.path(&format!("{name}.crt")),
            d.path(&format!("{name}.key")),
        )
    }

    /// `GET /v1/health` from the host with the client certificate `name`
    /// (files `<name>.crt`/`.key` in the dev folder): the HTTP status, or 0
    /// when no answer came (refused, handshake rejected).
    pub fn health(&self, name: &str) -> u16 {
        let (ca, crt, key) = self.client(name);
        health(self.port, &ca, &crt, &key)
    }

    /// Is it serving (backend certificate, 200)?
    pub fn serving(&self) -> bool {
        self.health("cmxBackend") == 200
    }

    /// The key chain a backend and a device run (customer key, user key,
    /// workspace key, then the device decrypts it), with curl from the host:
    /// the backend's keys really work inside the sandbox.
    pub fn key_chain(&self) {
        let d = self.dev.as_ref().expect("configured");
        let out = Command::new("sh")
            .arg("-c")
            .arg(d.curl_commands())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let t = text(&out);
        assert!(
            out.status.success() && t.contains("\"workspace_key\":\""),
            "the key chain failed:\n{t}"
        );
    }

    /// Requests from the host, one after the other, until the returned
    /// handle is stopped: (answered 200, anything else).
    pub fn load(&self) -> Load {
        let (ca, crt, key) = self.client("cmxBackend");
        let port = self.port;
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match health(port, &ca, &crt, &key) {
                        200 => ok.fetch_add(1, Ordering::SeqCst),
                        other => {
                            eprintln!("a request under load got {other}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        };
        Load {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }
}

fn health(port: u16, ca: &Path, crt: &Path, key: &Path) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(crt)
        .arg("--key")
        .arg(key)
        .arg(format!("https://127.0.0.1:{port}/v1/health"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Requests running in a thread (see [`Node::load`]).
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Stop and return (answered 200, anything else).
    pub fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `systemctl show` reports the sandbox the shipped unit asks for: a few
/// settings that a drop-in or an older systemd could silently lose.
pub fn assert_sandbox(n: &Node) {
    let expect = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("User", "kms"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("PrivateUsers", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictNamespaces", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("SystemCallArchitectures", "native"),
        ("RestartPreventExitStatus", "78"),
        ("UMask", "0077"),
        ("Environment", "MIMALLOC_ALLOW_THP=0"),
    ];
    let mut wrong = Vec::new();
    for (k, v) in expect {
        let got = n.b.show(k);
        if got != v {
            wrong.push(format!("{k}={got:?}, expected {v:?}"));
        }
    }
    assert!(wrong.is_empty(), "systemctl show:\n{}", wrong.join("\n"));
    // The process really runs as kms with no capabilities.
    let pid = n.main_pid();
    let inside = n.b.must(&format!(
        "grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp|THP_enabled):' /proc/{pid}/status"
    ));
    let kms_uid = n.b.must("id -u kms").trim().to_owned();
    for want in [
        format!("Uid:\t{kms_uid}\t{kms_uid}\t{kms_uid}\t{kms_uid}"),
        "CapEff:\t0000000000000000".to_owned(),
        "NoNewPrivs:\t1".to_owned(),
        "Seccomp:\t2".to_owned(),
        // No transparent huge pages (the unit's environment, and cli::main).
        "THP_enabled:\t0".to_owned(),
    ] {
        assert!(
            inside.contains(&want),
            "{want} not in /proc/{pid}/status:\n{inside}"
        );
    }
}

/// `systemd-analyze security` on the running service: the overall exposure
/// level, which must stay at or under 2.0.
pub fn assert_exposure(n: &Node) -> f64 {
    let out =
        n.b.sh(&format!("systemd-analyze security --no-pager {UNIT}"));
    let t = text(&out);
    let level: f64 = t
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for cmx-kms.service:"))
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{t}"));
    assert!(
        level <= 2.0,
        "exposure {level} > 2.0 on the running service:\n{t}"
    );
    level
}

/// Type=notify: systemd says "Started" only after the server said READY=1,
/// which it does after logging "listening". (With Type=simple, "Started"
/// comes at the fork, before the server can log anything.) `since` counts
/// the "Started" lines already in the journal.
pub fn assert_started_after_ready(n: &Node, since: usize) {
    let j = n.journal();
    let lines: Vec<&str> = j.lines().collect();
    let started: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("Started cmx-kms.service"))
        .map(|(i, _)| i)
        .collect();
    let at = *started
        .get(since)
        .unwrap_or_else(|| panic!("no start #{since} in the journal:\n{j}"));
    let previous = since.checked_sub(1).map_or(0, |p| started[p] + 1);
    assert!(
        lines[previous..at].iter().any(|l| l.contains("listening")),
        "systemd reported the unit started before the server was listening (not Type=notify?):\n{j}"
    );
}

/// How many times systemd reported the unit started.
pub fn starts(n: &Node) -> usize {
    n.journal()
        .lines()
        .filter(|l| l.starts_with("Started cmx-kms.service"))
        .count()
}

/// The service's own journal lines that show its sandbox denying it
/// something (a read-only or hidden path, a filtered system call).
pub fn denials(n: &Node) -> Vec<String> {
    let j = n.b.must(&format!(
        "journalctl --no-pager -u {UNIT} -o cat _COMM=cmx-kms"
    ));
    j.lines()
        .filter(|l| {
            [
                "Permission denied",
                "Operation not permitted",
                "Read-only file system",
                "os error 13",
                "os error 1)",
                "os error 30",
                "Bad system call",
            ]
            .iter()
            .any(|d| l.contains(d))
        })
        .map(str::to_owned)
        .collect()
}
