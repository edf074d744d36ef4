//! The cluster (`kms.cache.type=distributed`): this node's address and port
//! (`kms.cluster.address`, `kms.cluster.port`) and the other members, read
//! from the operator's `jgroups.xml` (`kms.distributed.cache.config.file`).
//!
//! Problems in `jgroups.xml` are configuration errors like any other: they
//! name the file and line (of `jgroups.xml`) and what to fix, and stop the
//! node with exit 78. Host names are resolved once, here: membership is
//! static, and a peer is later accepted only from one of these addresses.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use super::defaults as d;
use super::error::{Origin, Problem, Warning};
use super::file::{ConfigFile, Raw};
use super::jgroups;
use super::values::port;

/// JGroups' `bind_addr` keywords: they pick an interface, not an address.
const BIND_KEYWORDS: &[&str] = &[
    "SITE_LOCAL",
    "LINK_LOCAL",
    "NON_LOOPBACK",
    "GLOBAL",
    "LOOPBACK",
];

/// Another node of the cluster, as `initial_hosts` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The entry as written (`host[port]`), for messages and `cluster status`.
    pub name: String,
    /// The addresses to try, in order: each address the host resolves to,
    /// at the listed port and the `port_range` ports after it.
    pub addrs: Vec<SocketAddr>,
}

/// Cluster settings as configured; present only with
/// `kms.cache.type=distributed` and a cache. Names resolve at start
/// ([`ClusterSettings::resolve`]), not while checking the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The `jgroups.xml` the members come from.
    pub file: PathBuf,
    /// `kms.cluster.address` (legacy `-Djgroups.tcp.address`, else a literal
    /// `TCP bind_addr`): this node's cluster address or name.
    pub address: String,
    /// `kms.cluster.port` (legacy `-Djgroups.tcp.port`, else `TCP bind_port`).
    pub port: u16,
    /// `TCPPING initial_hosts`.
    pub hosts: Vec<jgroups::HostEntry>,
    /// `TCPPING port_range`.
    pub port_range: u16,
}

/// The cluster as this node runs it: addresses resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMembers {
    /// The `jgroups.xml` the members come from.
    pub file: PathBuf,
    /// This node's cluster address: the peer listener binds it and outgoing
    /// peer connections leave from it.
    pub address: IpAddr,
    pub port: u16,
    /// The other members (this node removed if the file lists it).
    pub members: Vec<Member>,
}

impl ClusterMembers {
    /// This node as members see it.
    pub fn local(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// Whether `ip` is a listed member's address.
    pub fn is_member_ip(&self, ip: IpAddr) -> bool {
        self.members
            .iter()
            .any(|m| m.addrs.iter().any(|a| a.ip() == ip))
    }
}

/// Resolves a host name or IP literal.
fn resolve_host(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let mut out: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{}' ({e})", host.escape_debug()))?
        .collect();
    out.dedup();
    if out.is_empty() {
        return Err(format!("'{}' resolves to no address", host.escape_debug()));
    }
    Ok(out)
}

/// Takes `kms.cluster.*` and reads `jgroups.xml`. `active` is whether the
/// cluster is on (`distributed` with a cache); otherwise the keys are taken
/// (so not unknown) and a set one draws a warning.
pub(super) fn take(
    file: &mut ConfigFile,
    jgroups_file: &Path,
    active: bool,
) -> Option<ClusterSettings> {
    let address_raw = file.get("kms.cluster.address");
    let port_raw = file.get("kms.cluster.port");
    if !active {
        warn_inactive(file, [address_raw, port_raw]);
        return None;
    }
    let port_set = port_raw.and_then(|raw| file.check("kms.cluster.port", raw, port));
    let address_text = address_raw
        .as_ref()
        .map(|r| (r.value.trim().to_owned(), r.origin.clone()));
    let addr_for_props = address_text.as_ref().map(|(t, _)| t.clone());
    let parsed = read_jgroups(file, jgroups_file, addr_for_props, port_set)?;
    let origin = |line| jgroups_origin(jgroups_file, line);
    let cluster_port = cluster_port(file, port_set, parsed.bind_port, origin);
    let address = cluster_address(file, address_text, parsed.bind_addr.clone(), origin)?;
    port_clash(file, &address, cluster_port);
    if parsed.hosts.is_empty() {
        let warning = Warning::Other(format!(
            "kms.cache.type=distributed, but {} lists no other node (TCPPING initial_hosts): this node caches alone",
            jgroups_file.display()
        ));
        file.warn(origin(Some(parsed.hosts_line)), None, warning);
    }
    Some(ClusterSettings {
        file: jgroups_file.to_path_buf(),
        address,
        port: cluster_port,
        hosts: parsed.hosts,
        port_range: parsed.port_range,
    })
}

/// A line of `jgroups.xml` (or the file) as the origin of a problem.
fn jgroups_origin(path: &Path, line: Option<usize>) -> Origin {
    Origin::File {
        path: path.to_path_buf(),
        line,
    }
}

/// The cluster is off: `kms.cluster.address` and `kms.cluster.port` set
/// anyway are ignored, with a warning.
fn warn_inactive(file: &mut ConfigFile, raws: [Option<Raw>; 2]) {
    for (key, raw) in ["kms.cluster.address", "kms.cluster.port"]
        .into_iter()
        .zip(raws)
    {
        if let Some(raw) = raw {
            let reason = "kms.cache.type is not distributed (or kms.cache.ttl is 0)".to_string();
            file.warn(raw.origin, Some(key), Warning::Ignored { reason });
        }
    }
}

/// Reads and parses `jgroups.xml`, where `${jgroups.tcp.address}` and
/// `${jgroups.tcp.port}` stand for `kms.cluster.address` and `kms.cluster.port`;
/// `None` after reporting why it cannot be used.
fn read_jgroups(
    file: &mut ConfigFile,
    jgroups_file: &Path,
    address: Option<String>,
    port_set: Option<u16>,
) -> Option<jgroups::Jgroups> {
    let text = match read(jgroups_file) {
        Ok(t) => t,
        Err(reason) => {
            let key = "kms.distributed.cache.config.file";
            let problem = Problem::NamedFile {
                detail: format!(
                    "kms.cache.type=distributed needs the cluster's member list, but {} cannot be read \
                     ({reason}): create it (see docs/cluster.md) or set {key} to its path",
                    jgroups_file.display()
                ),
            };
            file.error(file.origin_of(key), Some(key), problem);
            return None;
        }
    };
    let port_text = port_set.map(|p| p.to_string());
    let props = move |name: &str| match name {
        "jgroups.tcp.address" | "jgroups.bind_addr" => address.clone(),
        "jgroups.tcp.port" => port_text.clone(),
        _ => None,
    };
    match jgroups::parse(&text, &props) {
        Ok(p) => Some(p),
        Err(errors) => {
            for e in errors {
                let detail = e.message;
                file.error(
                    jgroups_origin(jgroups_file, e.line),
                    None,
                    Problem::Conflict { detail },
                );
            }
            None
        }
    }
}

/// The port: kms.cluster.port, else TCP bind_port, else 7800; the two set
/// differently is an error.
fn cluster_port(
    file: &mut ConfigFile,
    port_set: Option<u16>,
    bind_port: Option<(u16, usize)>,
    origin: impl Fn(Option<usize>) -> Origin,
) -> u16 {
    match (port_set, bind_port) {
        (Some(p), Some((b, line))) if p != b => {
            let detail = format!(
                "TCP bind_port is {b} but kms.cluster.port is {p}: make them agree, or write \
                 bind_port=\"${{jgroups.tcp.port:7800}}\""
            );
            file.error(origin(Some(line)), None, Problem::Conflict { detail });
            p
        }
        (Some(p), _) => p,
        (None, Some((b, _))) => b,
        (None, None) => d::CLUSTER_PORT,
    }
}

/// The node's other listeners, as (port key, address key, default address,
/// default port); the check listener's address defaults to the API's.
const OTHER_LISTENERS: [(&str, &str, u16); 3] = [
    ("kms.server.port", "kms.server.address", d::SERVER_PORT),
    ("kms.health.port", "kms.health.address", 0),
    ("kms.metrics.port", "kms.metrics.address", d::METRICS_PORT),
];

/// The cluster port equal to another listener's port on an overlapping
/// address is an error at `kms.cluster.port` (the node would fail to bind
/// its own port). Their values are only read here (taking a key twice is
/// harmless); their own sections report them malformed.
fn port_clash(file: &mut ConfigFile, cluster_address: &str, cluster_port: u16) {
    let value = |file: &mut ConfigFile, key: &'static str| {
        file.get(key).map(|raw| raw.value.trim().to_owned())
    };
    let server_address = value(file, "kms.server.address")
        .and_then(|v| v.parse::<IpAddr>().ok())
        .unwrap_or(d::SERVER_ADDRESS);
    let cluster_ip = cluster_address.parse::<IpAddr>().ok();
    for (port_key, address_key, default_port) in OTHER_LISTENERS {
        let other_port = value(file, port_key)
            .and_then(|v| v.parse::<u16>().ok())
            .unwrap_or(default_port);
        if other_port == 0 || other_port != cluster_port {
            continue;
        }
        let default_address = if address_key == "kms.metrics.address" {
            d::METRICS_ADDRESS
        } else {
            server_address
        };
        let other_ip = value(file, address_key)
            .and_then(|v| v.parse::<IpAddr>().ok())
            .unwrap_or(default_address);
        // A host name is resolved later: only a wildcard is sure to overlap.
        let overlap = other_ip.is_unspecified()
            || cluster_ip.is_some_and(|c| c == other_ip || c.is_unspecified());
        if overlap {
            let detail = format!(
                "{cluster_port} is also {port_key} on {other_ip}: the node \
                 would fail to listen on its own port; give the cluster port another \
                 (7800 is the usual one), the same on every node"
            );
            file.error(
                file.origin_of("kms.cluster.port"),
                Some("kms.cluster.port"),
                Problem::Conflict { detail },
            );
        }
    }
}

/// The address: kms.cluster.address, else a literal TCP bind_addr; it must
/// be a host name or an IP address other than the unspecified one.
fn cluster_address(
    file: &mut ConfigFile,
    address_text: Option<(String, Origin)>,
    bind_addr: Option<(String, usize)>,
    origin: impl Fn(Option<usize>) -> Origin,
) -> Option<String> {
    let bind_addr = bind_addr.filter(|(a, _)| {
        !BIND_KEYWORDS.contains(&a.to_ascii_uppercase().as_str()) && !a.starts_with("match-")
    });
    let (addr_text, addr_origin) = match (address_text, bind_addr) {
        (Some((t, o)), _) => (t, o),
        (None, Some((t, line))) => (t, origin(Some(line))),
        (None, None) => {
            let problem = Problem::RequiredBy {
                because: "kms.cache.type is distributed".into(),
                hint: "kms.cluster.address=<this node's address, as the other nodes list it> \
                       (the legacy -Djgroups.tcp.address of setenv.sh)"
                    .into(),
            };
            file.error(
                file.origin_of("kms.cache.type"),
                Some("kms.cluster.address"),
                problem,
            );
            return None;
        }
    };
    let host_ok = !addr_text.is_empty()
        && addr_text.len() <= 253
        && addr_text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    let unspecified = addr_text
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    if !host_ok || unspecified {
        let problem = Problem::Invalid {
            value: super::error::quote(&addr_text),
            expected:
                "is not this node's address: give the IP address or host name the other nodes \
                       list for this node in their jgroups.xml"
                    .into(),
        };
        file.error(addr_origin, Some("kms.cluster.address"), problem);
        return None;
    }
    Some(addr_text)
}

impl ClusterSettings {
    /// Resolve the names (at start: membership is static). This node's
    /// address must resolve (the error is about `kms.cluster.address`, and
    /// does not name it); a member that does not is left out with a
    /// warning in the result, so a DNS problem costs cache sharing, not service.
    pub fn resolve(&self) -> Result<(ClusterMembers, Vec<String>), String> {
        let own = resolve_host(&self.address, self.port).map_err(|reason| {
            format!("{reason}: give this node's IP address, or a name that resolves on this host")
        })?;
        let address = own
            .iter()
            .map(SocketAddr::ip)
            .find(IpAddr::is_ipv4)
            .or_else(|| own.first().map(SocketAddr::ip))
            .ok_or("it resolves to no address")?;
        let local = SocketAddr::new(address, self.port);
        let (mut members, mut warnings) = (Vec::new(), Vec::new());
        for h in &self.hosts {
            match resolve_host(&h.host, h.port) {
                Ok(resolved) => {
                    let mut addrs = Vec::new();
                    for a in resolved {
                        for p in 0..=self.port_range {
                            if let Some(port) = a.port().checked_add(p) {
                                let s = SocketAddr::new(a.ip(), port);
                                if s != local && !addrs.contains(&s) {
                                    addrs.push(s);
                                }
                            }
                        }
                    }
                    if !addrs.is_empty() {
                        members.push(Member {
                            name: format!("{}[{}]", h.host, h.port),
                            addrs,
                        });
                    }
                }
                Err(reason) => warnings.push(format!(
                    "{}: initial_hosts: {reason}: this node leaves {}[{}] out of the cluster until \
                     restarted; fix the name or write the node's IP address",
                    self.file.display(),
                    h.host,
                    h.port
                )),
            }
        }
        let m = ClusterMembers {
            file: self.file.clone(),
            address,
            port: self.port,
            members,
        };
        Ok((m, warnings))
    }
}

/// Reads `jgroups.xml`, at most 1 MiB.
fn read(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    const MAX: u64 = 1024 * 1024;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX {
        return Err(format!("larger than {MAX} bytes"));
    }
    Ok(text)
}
#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
