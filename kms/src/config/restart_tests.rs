use std::path::Path;

use super::*;
use crate::config::parse_str;

const BASE: &str =
    "kms.keystore.file=ks.jks\nkms.keystore.password=changeit\nkms.hsm.protocol=soft\n";

fn config(extra: &str) -> Config {
    let text = format!("{BASE}{extra}");
    match parse_str(&text, Path::new("/etc/kms/kms.properties"), &[]) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_restart_only_key_is_compared_and_no_other() {
    let c = config("");
    for spec in KEYS {
        assert_eq!(
            value(spec.name, &c).is_some(),
            spec.restart,
            "{}: the flag in keys.rs and the comparison in restart.rs disagree",
            spec.name
        );
    }
}

#[test]
fn a_changed_port_names_both_values_and_the_one_in_force() {
    let running = AtStart::of(&config("kms.server.port=18503\n"));
    let changes = running.changes(&config("kms.server.port=18505\n"));
    let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "kms.server.port changed (18503 -> 18505) but needs a restart: still listening on port 18503"
        ]
    );
}

#[test]
fn reloadable_keys_and_unchanged_values_give_no_change() {
    let running = AtStart::of(&config("kms.readiness.interval=5s\n"));
    let same = config("kms.readiness.interval=5\nkms.limits.backend.rate=0\nkms.cache.ttl=0\n");
    assert_eq!(running.changes(&same), vec![]);
}

#[test]
fn several_changes_come_in_key_order() {
    let running = AtStart::of(&config(""));
    let changed = config(
        "kms.readiness.interval=1500ms\nkms.server.worker-threads=7\nkms.audit.file=/srv/a.log\nkms.metrics.port=0\n",
    );
    let lines: Vec<String> = running
        .changes(&changed)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "kms.server.worker-threads changed (0 -> 7) but needs a restart: still running with 0",
            "kms.audit.file changed (/var/log/kms/audit.log -> /srv/a.log) but needs a restart: records still go to /var/log/kms/audit.log",
            "kms.metrics.port changed (9443 -> 0) but needs a restart: metrics still on port 9443",
            "kms.readiness.interval changed (5s -> 1500ms) but needs a restart: still using 5s",
        ]
    );
}

#[test]
fn a_secret_is_named_without_its_values() {
    let spec = crate::config::keys::find("kms.keystore.password").expect("a key");
    let change = RestartChange {
        key: spec.name,
        running: "old-secret".into(),
        wanted: "new-secret".into(),
        keeps: STILL,
        secret: spec.secret,
    };
    let line = change.to_string();
    assert!(
        line.starts_with("kms.keystore.password changed but needs a restart"),
        "{line}"
    );
    assert!(!line.contains("secret"), "{line}");
}

#[test]
fn a_path_cannot_break_the_line() {
    let running = AtStart::of(&config(""));
    let changed = config("kms.audit.file=/srv/a\\nINFO forged.log\n");
    let line = running
        .changes(&changed)
        .iter()
        .map(ToString::to_string)
        .collect::<String>();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains("/srv/a\\nINFO forged.log"), "{line}");
}

#[test]
fn a_changed_jgroups_member_list_needs_a_restart_though_its_path_stays() {
    let dir = tempfile::tempdir().unwrap();
    let jgroups = dir.path().join("jgroups.xml");
    let write = |hosts: &str| {
        let xml = format!(
            "<config><TCP bind_port=\"7800\"/><TCPPING initial_hosts=\"{hosts}\" port_range=\"0\"/></config>"
        );
        std::fs::write(&jgroups, xml).unwrap();
        let text = format!(
            "{BASE}kms.cache.type=distributed\nkms.cluster.address=127.0.0.1\n\
             kms.distributed.cache.config.file={}\n",
            jgroups.display()
        );
        match parse_str(&text, &dir.path().join("kms.properties"), &[]) {
            Ok(loaded) => loaded.config,
            Err(e) => panic!("{e}"),
        }
    };
    let running = AtStart::of(&write("127.0.0.2[7800],127.0.0.3[7800]"));
    assert_eq!(
        running.changes(&write("127.0.0.2[7800],127.0.0.3[7800]")),
        vec![]
    );
    let lines: Vec<String> = running
        .changes(&write("127.0.0.2[7800],127.0.0.3[7800],127.0.0.4[7800]"))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "jgroups.xml's TCPPING initial_hosts changed (127.0.0.2[7800],127.0.0.3[7800] port_range=0 -> \
             127.0.0.2[7800],127.0.0.3[7800],127.0.0.4[7800] port_range=0) but needs a restart: \
             the cluster still has the members 127.0.0.2[7800],127.0.0.3[7800] port_range=0"
        ]
    );
}
