//! Rotating the audit trail as logrotate does, against a real `cmx-kms
//! serve`: the file moved away, a reload (SIGHUP), and the records go on in a
//! new file at the path, chained to the old one; `cmx-kms audit verify OLD
//! NEW` checks both chains and the link between them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::client::{Client, chain};
use support::node::TestNode;
use support::{pki, wait_for};

fn verify(paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cmx-kms"))
        .args(["audit", "verify"])
        .args(paths)
        .output()
        .unwrap()
}

/// A node, a device client and a decrypt request of a key chain the backend
/// made (three records in the trail).
fn node_with_a_chain() -> (tempfile::TempDir, TestNode, Client, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    let body = chain(&node.client(&pki, &pki.cmx_backend));
    let device = node.client(&pki, &pki.cmx_device);
    (dir, node, device, body)
}

#[test]
fn a_moved_audit_file_goes_on_in_a_new_one_after_a_reload() {
    let (dir, node, d, body) = node_with_a_chain();
    let old = dir.path().join("audit.log.1");
    std::fs::rename(&node.audit, &old).unwrap();
    // Until the reload, records go on in the file moved away.
    assert_eq!(d.post("/v1/workspace-keys/decrypt", &body).status, 200);
    assert!(!node.audit.exists());
    // An empty file at the path is taken (logrotate's `create`), here one
    // every user may write: taken, with a warning.
    std::fs::write(&node.audit, "").unwrap();
    std::fs::set_permissions(
        &node.audit,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();

    node.signal("HUP");
    wait_for(
        "the new audit file's first record",
        Duration::from_secs(30),
        || std::fs::read_to_string(&node.audit).is_ok_and(|t| t.ends_with('\n')),
    );
    assert_eq!(d.post("/v1/workspace-keys/decrypt", &body).status, 200);
    let new = std::fs::read_to_string(&node.audit).unwrap();
    let ops: Vec<String> = new
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["operation"].to_string())
        .collect();
    assert_eq!(ops, ["\"audit-continue\"", "\"decrypt-workspace-key\""]);
    let old_text = std::fs::read_to_string(&old).unwrap();
    assert_eq!(old_text.lines().count(), 4, "three creations and a decrypt");
    assert!(node.log_text().contains("the audit file was moved away"));
    assert!(
        node.log_text()
            .contains("can be read or written by every user"),
        "{}",
        node.log_text()
    );

    let out = verify(&[&old, &node.audit]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("continues the chain of an earlier file"),
        "{text}"
    );
    assert!(text.contains("2 record(s), chain intact"), "{text}");
    // The new file alone verifies too; in the wrong order, or with a file
    // missing between them, the link is found broken.
    assert!(verify(&[&node.audit]).status.success());
    let out = verify(&[&node.audit, &old]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(65), "{text}");
    assert!(text.contains("starts a new chain"), "{text}");
    assert!(text.contains("oldest first"), "{text}");
    // The old file cut short after the node left it: the new file's first
    // record says how long it was.
    let cut = dir.path().join("audit.log.1-cut");
    let lines: Vec<&str> = old_text.lines().collect();
    std::fs::write(&cut, format!("{}\n", lines[..3].join("\n"))).unwrap();
    let out = verify(&[&cut, &node.audit]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(65), "{text}");
    assert!(
        text.contains(&format!(
            "the node left that file at {} bytes",
            old_text.len()
        )),
        "{text}"
    );
    // A compressed file is named as one, not taken for a torn trail.
    let gz = Command::new("gzip").arg("-k").arg(&old).status().unwrap();
    assert!(gz.success());
    let out = verify(&[&dir.path().join("audit.log.1.gz"), &node.audit]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(65), "{text}");
    assert!(
        text.contains("compressed with gzip: decompress it first"),
        "{text}"
    );
}

/// A file deleted before the reload (`rm`, or `mv` to another file system,
/// which copies it and deletes the original) held records nobody could
/// reach: the node saves its whole content beside the path at the reload.
#[test]
fn a_deleted_audit_file_is_saved_at_the_reload() {
    let (dir, node, d, body) = node_with_a_chain();
    let copy = dir.path().join("copied.log");
    std::fs::copy(&node.audit, &copy).unwrap();
    std::fs::remove_file(&node.audit).unwrap();
    // Answered while the file has no name: its record is only in it.
    assert_eq!(d.post("/v1/workspace-keys/decrypt", &body).status, 200);

    node.signal("HUP");
    wait_for("the deleted file saved", Duration::from_secs(30), || {
        node.log_text().contains("the audit file was deleted")
    });
    let saved: Vec<_> = std::fs::read_dir(node.audit.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("audit.log.deleted-"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    let saved_text = std::fs::read_to_string(&saved[0]).unwrap();
    assert_eq!(
        saved_text.lines().count(),
        4,
        "three creations and the decrypt"
    );
    assert_eq!(d.post("/v1/workspace-keys/decrypt", &body).status, 200);
    let out = verify(&[&saved[0], &node.audit]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The copy lacks the record answered after it was made.
    assert_eq!(std::fs::read_to_string(&copy).unwrap().lines().count(), 3);
}

/// Two processes appending to one trail would break its chain for good: a
/// second node on the same audit file is refused at start.
#[test]
fn a_second_node_on_the_same_audit_file_is_refused() {
    let (dir, node, _d, _body) = node_with_a_chain();
    let ports = (support::node::free_port(), support::node::free_port());
    let text = std::fs::read_to_string(&node.properties).unwrap();
    let props: String = text
        .lines()
        .map(|l| match l.split_once('=') {
            Some(("kms.server.port", _)) => format!("kms.server.port={}", ports.0),
            Some(("kms.metrics.port", _)) => format!("kms.metrics.port={}", ports.1),
            _ => l.to_owned(),
        })
        .map(|l| l + "\n")
        .collect();
    let second = dir.path().join("second.properties");
    std::fs::write(&second, props).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cmx-kms"))
        .args(["serve", "-c"])
        .arg(&second)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_for_exit(&mut child, Duration::from_secs(60));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(exited, "the second node kept running: {err}");
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("another process is writing this audit file"),
        "{err}"
    );
}

/// Whether `child` exits within `timeout`; killed if not.
fn wait_for_exit(child: &mut std::process::Child, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    false
}

/// The logrotate configuration `docs/operations.md` gives, run by the real
/// logrotate: only the path, the owner in `create` (there is no `kms` user
/// here) and the reload command (no systemd) are this test's.
#[test]
fn logrotate_with_the_documented_configuration_keeps_one_chain() {
    let logrotate = ["/usr/sbin/logrotate", "/usr/bin/logrotate"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("logrotate is missing: run scripts/setup-test-deps");
    let (dir, node, d, body) = node_with_a_chain();
    assert_eq!(d.post("/v1/workspace-keys/decrypt", &body).status, 200);

    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operations.md"
    ))
    .unwrap();
    let start = doc
        .find("/var/log/kms/audit.log {")
        .expect("the documented configuration");
    let conf = &doc[start..];
    let conf = &conf[..conf.find("\n}\n").expect("its end") + 3];
    let conf = conf
        .replace("/var/log/kms/audit.log", &node.audit.display().to_string())
        .replace("create 0640 kms kms", "create 0640")
        .replace(
            "systemctl reload cmx-kms",
            &format!("kill -HUP {}", node.child.id()),
        );
    assert!(
        conf.contains("kill -HUP") && conf.contains("create 0640\n"),
        "{conf}"
    );
    let conf_path = dir.path().join("logrotate.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let out = Command::new(logrotate)
        .arg("--force")
        .arg("--state")
        .arg(dir.path().join("logrotate.state"))
        .arg(&conf_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    wait_for(
        "the new audit file's first record",
        Duration::from_secs(30),
        || std::fs::read_to_string(&node.audit).is_ok_and(|t| t.contains("\"audit-continue\"")),
    );
    assert_eq!(d.post("/v1/workspace-keys/decrypt", &body).status, 200);
    let rotated: Vec<_> = std::fs::read_dir(dir.path().join("node"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("audit.log-")
        })
        .collect();
    assert_eq!(
        rotated.len(),
        1,
        "one rotated file, not compressed yet: {rotated:?}"
    );
    let out = verify(&[&rotated[0], &node.audit]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("4 record(s), chain intact"), "{text}");
    assert!(text.contains("2 record(s), chain intact"), "{text}");
}
