//! `kms.cluster.*` with `jgroups.xml` fixture files.

use std::path::Path;

use crate::config::{ConfigErrors, Loaded, parse_str};

const MINIMAL: &str = "kms.keystore.file=kmsKeystore.jks\nkms.keystore.password=changeit\nkms.hsm.server.url=hsm.example.com\n";

fn with_jgroups(xml: &str, extra: &str) -> (tempfile::TempDir, Result<Loaded, ConfigErrors>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jgroups.xml"), xml).unwrap();
    let text = format!("{MINIMAL}kms.distributed.cache.config.file=jgroups.xml\n{extra}");
    let r = parse_str(&text, &dir.path().join("kms.properties"), &[]);
    (dir, r)
}

fn error_lines(r: Result<Loaded, ConfigErrors>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

const THREE: &str = "<config><TCP bind_port=\"${jgroups.tcp.port:7800}\"/>\n<TCPPING initial_hosts=\"127.0.0.2[7800],127.0.0.3[7800]\" port_range=\"0\"/></config>";

#[test]
fn distributed_reads_the_members_and_this_nodes_address() {
    let (_d, r) = with_jgroups(
        THREE,
        "kms.cache.type=distributed\nkms.cluster.address=127.0.0.1\n",
    );
    let loaded = r.unwrap();
    let (c, warnings) = loaded.config.cache.cluster.unwrap().resolve().unwrap();
    assert!(warnings.is_empty());
    assert_eq!(c.local().to_string(), "127.0.0.1:7800");
    let names: Vec<_> = c.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["127.0.0.2[7800]", "127.0.0.3[7800]"]);
    assert!(c.is_member_ip("127.0.0.3".parse().unwrap()));
    assert!(!c.is_member_ip("127.0.0.1".parse().unwrap()));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn the_port_comes_from_kms_cluster_port_through_the_placeholder() {
    let (_d, r) = with_jgroups(
        THREE,
        "kms.cache.type=distributed\nkms.cluster.address=127.0.0.1\nkms.cluster.port=7900\n",
    );
    assert_eq!(r.unwrap().config.cache.cluster.unwrap().port, 7900);
}

#[test]
fn a_node_listing_itself_is_not_its_own_peer() {
    let xml = "<config><TCPPING initial_hosts=\"127.0.0.1[7800],127.0.0.2[7800]\" port_range=\"1\"/></config>";
    let (_d, r) = with_jgroups(
        xml,
        "kms.cache.type=distributed\nkms.cluster.address=127.0.0.1\n",
    );
    let (c, _) = r.unwrap().config.cache.cluster.unwrap().resolve().unwrap();
    let addrs: Vec<String> = c
        .members
        .iter()
        .flat_map(|m| m.addrs.iter().map(ToString::to_string))
        .collect();
    assert_eq!(
        addrs,
        ["127.0.0.1:7801", "127.0.0.2:7800", "127.0.0.2:7801"]
    );
}

#[test]
fn distributed_without_an_address_says_which_key_to_add() {
    let (_d, r) = with_jgroups(THREE, "kms.cache.type=distributed\n");
    let e = error_lines(r);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains(
            ":5: kms.cluster.address: missing, but required because kms.cache.type is distributed"
        ),
        "{e:?}"
    );
    assert!(e[0].contains("-Djgroups.tcp.address"), "{e:?}");
}

#[test]
fn mping_is_an_error_naming_the_jgroups_file_and_line() {
    let xml =
        "<config>\n<TCP bind_port=\"7800\"/>\n<MPING/>\n<TCPPING initial_hosts=\"h[1]\"/></config>";
    let (d, r) = with_jgroups(
        xml,
        "kms.cache.type=distributed\nkms.cluster.address=127.0.0.1\n",
    );
    let e = error_lines(r);
    let want = format!(
        "{}:3: <MPING> (multicast discovery) is not supported",
        d.path().join("jgroups.xml").display()
    );
    assert!(e.iter().any(|l| l.starts_with(&want)), "{e:?}");
}

#[test]
fn a_bind_port_that_disagrees_with_kms_cluster_port_is_an_error() {
    let xml = "<config>\n<TCP bind_port=\"7801\"/>\n<TCPPING initial_hosts=\"127.0.0.2[7800]\"/></config>";
    let (d, r) = with_jgroups(
        xml,
        "kms.cache.type=distributed\nkms.cluster.address=127.0.0.1\nkms.cluster.port=7800\n",
    );
    let e = error_lines(r);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "{}:2: TCP bind_port is 7801 but kms.cluster.port is 7800",
            d.path().join("jgroups.xml").display()
        )),
        "{e:?}"
    );
}

#[test]
fn a_missing_jgroups_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{MINIMAL}kms.cache.type=distributed\nkms.cluster.address=127.0.0.1\nkms.distributed.cache.config.file=nope.xml\n"
    );
    let e = error_lines(parse_str(&text, &dir.path().join("kms.properties"), &[]));
    // Reported at the line that names the file, like every other setting.
    let at = format!(
        "{}:6: kms.distributed.cache.config.file: ",
        dir.path().join("kms.properties").display()
    );
    assert!(e[0].starts_with(&at), "{e:?}");
    let named = format!("{} cannot be read", dir.path().join("nope.xml").display());
    assert!(e[0].contains(&named), "{e:?}");
}

#[test]
fn none_reads_no_jgroups_file_and_warns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{MINIMAL}kms.cache.type=none\nkms.distributed.cache.config.file=/nonexistent/jgroups.xml\n"
    );
    let loaded = parse_str(&text, &dir.path().join("kms.properties"), &[]).unwrap();
    assert!(loaded.config.cache.cluster.is_none());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let text = format!("{text}kms.cluster.address=10.0.0.1\n");
    let loaded = parse_str(&text, &dir.path().join("kms.properties"), &[]).unwrap();
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("kms.cluster.address: ignored because kms.cache.type is not distributed"),
        "{w:?}"
    );
}

#[test]
fn the_shipped_file_with_no_hosts_caches_alone_with_a_warning() {
    let xml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/conf/jgroups.xml"),
    )
    .unwrap();
    let (_d, r) = with_jgroups(
        &xml,
        "kms.cache.type=distributed\nkms.cluster.address=127.0.0.1\n",
    );
    let loaded = r.unwrap();
    assert!(loaded.config.cache.cluster.unwrap().hosts.is_empty());
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.to_string().contains("caches alone"))
    );
}

#[test]
fn names_resolve_at_start_not_while_loading() {
    // Loading the configuration resolves nothing (a reload never waits on
    // DNS); a start needs the node's own name to resolve, and check-config
    // resolves it as the start does (`node::files::check`).
    let xml = "<config><TCPPING initial_hosts=\"kms2.invalid[7800],127.0.0.3[7800]\"/></config>";
    let (_d, r) = with_jgroups(
        xml,
        "kms.cache.type=distributed\nkms.cluster.address=kms1.invalid\n",
    );
    let settings = r.unwrap().config.cache.cluster.unwrap();
    assert_eq!(settings.address, "kms1.invalid");
    let e = settings.resolve().unwrap_err();
    assert!(e.starts_with("cannot resolve 'kms1.invalid'"), "{e}");
    let (_d, r) = with_jgroups(
        xml,
        "kms.cache.type=distributed\nkms.cluster.address=127.0.0.1\n",
    );
    let (m, warnings) = r.unwrap().config.cache.cluster.unwrap().resolve().unwrap();
    assert_eq!(m.members.len(), 1, "the member that resolves stays");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("leaves kms2.invalid[7800] out of the cluster"),
        "{}",
        warnings[0]
    );
}

#[test]
fn an_address_that_is_not_one_is_refused() {
    for bad in ["0.0.0.0", "a b", "kms1;rm"] {
        let (_d, r) = with_jgroups(
            THREE,
            &format!("kms.cache.type=distributed\nkms.cluster.address={bad}\n"),
        );
        let e = error_lines(r);
        assert!(e[0].contains("kms.cluster.address:"), "{e:?}");
    }
}

#[test]
fn a_cluster_port_that_is_another_listeners_port_is_an_error_at_its_line() {
    for (other, clash) in [
        (
            "kms.server.address=127.0.0.4\nkms.server.port=24443\n",
            "kms.server.port on 127.0.0.4",
        ),
        ("kms.health.port=24443\n", "kms.health.port on 0.0.0.0"),
        (
            "kms.metrics.address=127.0.0.4\nkms.metrics.port=24443\n",
            "kms.metrics.port on 127.0.0.4",
        ),
    ] {
        let (_d, r) = with_jgroups(
            THREE,
            &format!(
                "kms.cache.type=distributed\nkms.cluster.address=127.0.0.4\nkms.cluster.port=24443\n{other}"
            ),
        );
        let errors = error_lines(r);
        assert!(
            errors.iter().any(
                |e| e.contains("kms.properties:7: kms.cluster.port: 24443 is also")
                    && e.contains(clash)
            ),
            "{errors:?}"
        );
    }
    // Another address, or another port: fine.
    let (_d, r) = with_jgroups(
        THREE,
        "kms.cache.type=distributed\nkms.cluster.address=127.0.0.4\nkms.cluster.port=24443\n\
         kms.server.address=127.0.0.5\nkms.server.port=24443\nkms.metrics.port=24443\n",
    );
    assert!(r.is_ok(), "{:?}", r.err().map(|e| e.to_string()));
}
