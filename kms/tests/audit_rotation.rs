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
    assert!(text.contains("does not go on with the chain of"), "{text}");
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
