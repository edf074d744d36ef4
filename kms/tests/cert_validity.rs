//! The node warns, at start and at every reload, about keystore
//! certificates that are not valid now or expire soon: a pinned client whose
//! certificate expired is refused, and the operator should learn it from the
//! log before the clients' failures do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::node::TestNode;
use support::pki;

#[test]
fn expired_and_expiring_certificates_are_warned_about_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let soon = pki.make_client_valid_until("cmxDeviceSoon", now + 10 * 86_400);
    pki.import_certificate("cmxDeviceSoon", &soon.cert);
    let gone = pki.make_client_valid_until("cmxDeviceGone", now - 30);
    pki.import_certificate("cmxDeviceGone", &gone.cert);
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    // Aliases are case-insensitive; keytool may keep or lower their case.
    let log = node.log_text().to_lowercase();
    let line = |alias: &str| {
        log.lines()
            .find(|l| l.contains("warn") && l.contains(alias))
            .unwrap_or_else(|| panic!("no warning names {alias}:\n{log}"))
            .to_owned()
    };
    assert!(line("cmxdevicesoon").contains("expires soon"), "{log}");
    assert!(line("cmxdevicegone").contains("has expired"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("warn") && l.contains("alias=\"cmxdevice\"")),
        "the guide's own certificates are valid for years: {log}"
    );
}
