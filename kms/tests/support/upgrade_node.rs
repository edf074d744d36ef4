// Included (`#[path]`) by haproxy_upgrade.rs and haproxy_upgrade_systemd/main.rs,
// after `mod support` and `mod install_support`: the one way both rolling
// upgrades configure an installed node.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::install_support::node::set_property;
use crate::support::guide_pki::GuidePki;
use crate::support::haproxy::SOURCE;
use crate::support::node::free_port_on;

/// The installed configuration directory, as the guide names it.
pub const CONF: &str = "/usr/share/kms/conf";

/// The three nodes' addresses (127.0.0.1 to .3), and two different ports
/// free on all three: the API's and the check listener's.
pub fn three_loopback_nodes() -> (Vec<IpAddr>, u16, u16) {
    let ips: Vec<IpAddr> = (1..=3).map(|i| IpAddr::from([127, 0, 0, i])).collect();
    let port = free_port_on(&ips);
    let hport = loop {
        let h = free_port_on(&ips);
        if h != port {
            break h;
        }
    };
    (ips, port, hport)
}

/// Configure an installed node whose `CONF` is `conf` on the host: the
/// guide's keystore, the soft backend with the cluster's shared master key
/// file, the API on `addr`, the check listener on `hport`, HAProxy's address
/// trusted for the PROXY protocol.
pub fn configure(conf: &Path, pki: &GuidePki, soft_key: &Path, addr: SocketAddr, hport: u16) {
    std::fs::copy(&pki.keystore, conf.join("kmsKeystore.jks")).unwrap();
    std::fs::copy(soft_key, conf.join("soft-master.key")).unwrap();
    let props = conf.join("kms.properties");
    let mut t = std::fs::read_to_string(&props).unwrap();
    for (k, v) in [
        ("kms.keystore.password", pki.store_password.as_str()),
        ("kms.keystore.alias", "kmsClient"),
        ("kms.hsm.protocol", "soft"),
        ("kms.hsm.soft.key.file", &format!("{CONF}/soft-master.key")),
        ("kms.server.address", &addr.ip().to_string()),
        ("kms.server.port", &addr.port().to_string()),
        ("kms.metrics.port", "0"),
        ("kms.health.port", &hport.to_string()),
        ("kms.server.proxy-protocol.trusted", &SOURCE.to_string()),
        // Every test client arrives from 127.0.0.1: no per-source limit.
        ("kms.limits.device.rate", "0"),
    ] {
        t = set_property(&t, k, v);
    }
    std::fs::write(&props, t).unwrap();
}
