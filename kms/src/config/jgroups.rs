//! The operator's `jgroups.xml`, read for what cmx-kms needs of it: the
//! members listed in `TCPPING initial_hosts` (`host[port],host[port]...`),
//! `TCPPING port_range`, and the `TCP` element's `bind_port` / `bind_addr`.
//! `${prop}`, `${prop:default}` and `${a,b:default}` placeholders resolve
//! against the few properties the legacy `setenv.sh` passed
//! (`jgroups.tcp.address`, `jgroups.tcp.port`), which map to
//! `kms.cluster.address` / `kms.cluster.port`.
//!
//! Everything else in the file (the JGroups stack's tuning) has no meaning
//! for cmx-kms and is ignored. Discovery protocols we do not implement
//! (MPING, multicast UDP, gossip routers, shared-store pings) are errors
//! that name the protocol: a node would otherwise silently cache alone.
//!
//! Every error carries the line it is about and what to fix.

use std::fmt;

/// Most members a cluster may list (a typo such as `port_range=60000` must
/// not make a node dial thousands of addresses).
pub const MAX_MEMBER_ADDRESSES: usize = 64;

/// Discovery protocols that JGroups offers and cmx-kms does not, with what
/// they are, for the error message.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("MPING", "multicast discovery"),
    ("UDP", "the multicast UDP transport"),
    ("PING", "multicast discovery"),
    ("TCPGOSSIP", "discovery through a gossip router"),
    ("TUNNEL", "the gossip-router transport"),
    ("FILE_PING", "discovery through a shared directory"),
    ("JDBC_PING", "discovery through a database"),
    ("DNS_PING", "discovery through DNS"),
    ("KUBE_PING", "discovery through Kubernetes"),
    ("S3_PING", "discovery through S3"),
    ("BPING", "broadcast discovery"),
];

/// One `host[port]` entry of `initial_hosts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    /// Host name or IP address, as written (placeholders resolved).
    pub host: String,
    /// The first port; `port_range` more are tried after it.
    pub port: u16,
}

/// What cmx-kms takes from `jgroups.xml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jgroups {
    /// `TCPPING initial_hosts`, in file order.
    pub hosts: Vec<HostEntry>,
    /// The line of the `TCPPING` element.
    pub hosts_line: usize,
    /// `TCPPING port_range` (JGroups' default is 1: port and port + 1).
    pub port_range: u16,
    /// `TCP bind_port`, if the element and attribute are present.
    pub bind_port: Option<(u16, usize)>,
    /// `TCP bind_addr`, if present and not empty after resolution.
    pub bind_addr: Option<(String, usize)>,
}

/// A problem in the file: its line (when known) and what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JgroupsError {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for JgroupsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Looks a `${...}` property up; `None` when it has no value.
pub type Props<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses `text`, resolving placeholders with `props`. Returns every problem found.
pub fn parse(text: &str, props: Props<'_>) -> Result<Jgroups, Vec<JgroupsError>> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, opts).map_err(|e| {
        vec![JgroupsError {
            line: Some(e.pos().row as usize),
            message: format!("not well-formed XML ({e}); fix the file or restore the shipped one"),
        }]
    })?;
    let line = |n: &roxmltree::Node<'_, '_>| doc.text_pos_at(n.range().start).row as usize;
    let mut errors = Vec::new();
    let (tcpping, tcp) = find_elements(&doc, &line, &mut errors);
    let Some(ping) = tcpping else {
        errors.push(JgroupsError {
            line: None,
            message:
                "no <TCPPING> element: add <TCPPING initial_hosts=\"host[7800],...\"/> listing \
                      every other node of the cluster"
                    .into(),
        });
        return Err(errors);
    };
    let hosts_line = line(&ping);
    let mut attr = |node: &roxmltree::Node<'_, '_>, name: &str| -> Option<String> {
        let raw = node.attribute(name)?;
        match resolve(raw, props) {
            Ok(v) => Some(v),
            Err(message) => {
                errors.push(JgroupsError {
                    line: Some(line(node)),
                    message: format!("{name}: {message}"),
                });
                None
            }
        }
    };
    let hosts_text = attr(&ping, "initial_hosts");
    let range_text = attr(&ping, "port_range");
    let (bind_port_text, bind_addr_text) = match &tcp {
        Some(t) => (attr(t, "bind_port"), attr(t, "bind_addr")),
        None => (None, None),
    };
    let tcp_line = tcp.as_ref().map_or(hosts_line, line);
    let port_range = port_range(range_text.as_deref(), hosts_line, &mut errors);
    let bind_port = bind_port(bind_port_text.as_deref(), tcp_line, &mut errors);
    let bind_addr = bind_addr_text
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(|t| (t, tcp_line));
    let hosts = initial_hosts(hosts_text.as_deref(), port_range, hosts_line, &mut errors);
    if errors.is_empty() {
        Ok(Jgroups {
            hosts,
            hosts_line,
            port_range,
            bind_port,
            bind_addr,
        })
    } else {
        Err(errors)
    }
}

/// The `TCPPING` and `TCP` elements; errors for a second `TCPPING` and
/// for every discovery protocol cmx-kms does not implement.
fn find_elements<'a, 'input>(
    doc: &'a roxmltree::Document<'input>,
    line: &dyn Fn(&roxmltree::Node<'_, '_>) -> usize,
    errors: &mut Vec<JgroupsError>,
) -> (
    Option<roxmltree::Node<'a, 'input>>,
    Option<roxmltree::Node<'a, 'input>>,
) {
    let mut tcpping = None;
    let mut tcp = None;
    for node in doc.descendants().filter(roxmltree::Node::is_element) {
        let name = node.tag_name().name();
        if let Some((_, what)) = UNSUPPORTED.iter().find(|(p, _)| *p == name) {
            errors.push(JgroupsError {
                line: Some(line(&node)),
                message: format!(
                    "<{name}> ({what}) is not supported by cmx-kms: remove it and list every other \
                     node in <TCPPING initial_hosts=\"host[7800],...\"/>"
                ),
            });
        } else if name == "TCPPING" {
            if tcpping.is_some() {
                errors.push(JgroupsError {
                    line: Some(line(&node)),
                    message: "a second <TCPPING> element: keep only one".into(),
                });
            }
            tcpping = Some(node);
        } else if name == "TCP" {
            tcp = Some(node);
        }
    }
    (tcpping, tcp)
}

/// `TCPPING port_range`: 0 to 16, 1 when absent or wrong (reported).
fn port_range(text: Option<&str>, line: usize, errors: &mut Vec<JgroupsError>) -> u16 {
    match text.map(str::trim) {
        None | Some("") => 1,
        Some(t) => t
            .parse::<u16>()
            .ok()
            .filter(|n| *n <= 16)
            .unwrap_or_else(|| {
                errors.push(JgroupsError {
                    line: Some(line),
                    message: format!(
                        "port_range: '{}' is not a number from 0 to 16 (0 tries only the listed port)",
                        t.escape_debug()
                    ),
                });
                1
            }),
    }
}

/// `TCP bind_port`, with its line.
fn bind_port(
    text: Option<&str>,
    line: usize,
    errors: &mut Vec<JgroupsError>,
) -> Option<(u16, usize)> {
    let t = text.map(str::trim).filter(|t| !t.is_empty())?;
    match t.parse::<u16>().ok().filter(|p| *p > 0) {
        Some(p) => Some((p, line)),
        None => {
            errors.push(JgroupsError {
                line: Some(line),
                message: format!(
                    "bind_port: '{}' is not a port number (1-65535)",
                    t.escape_debug()
                ),
            });
            None
        }
    }
}

/// `TCPPING initial_hosts`; with `port_range`, at most
/// [`MAX_MEMBER_ADDRESSES`] addresses.
fn initial_hosts(
    text: Option<&str>,
    port_range: u16,
    line: usize,
    errors: &mut Vec<JgroupsError>,
) -> Vec<HostEntry> {
    let hosts = match text {
        Some(t) => parse_hosts(t).unwrap_or_else(|message| {
            errors.push(JgroupsError {
                line: Some(line),
                message: format!("initial_hosts: {message}"),
            });
            Vec::new()
        }),
        None => Vec::new(),
    };
    let total = hosts.len().saturating_mul(usize::from(port_range) + 1);
    if total > MAX_MEMBER_ADDRESSES {
        errors.push(JgroupsError {
            line: Some(line),
            message: format!(
                "initial_hosts and port_range make {total} addresses, more than {MAX_MEMBER_ADDRESSES}: \
                 list each node once and lower port_range"
            ),
        });
    }
    hosts
}

/// Resolves `${...}` placeholders in an attribute value.
fn resolve(raw: &str, props: Props<'_>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("'{}' opens ${{ without a closing }}", raw.escape_debug()))?;
        let inner = &after[..end];
        let (names, default) = match inner.split_once(':') {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let value = names
            .split(',')
            .map(str::trim)
            .find_map(props)
            .or_else(|| default.map(str::to_owned))
            .ok_or_else(|| {
                format!(
                    "${{{}}} has no value and no default: write ${{{}:value}}, or set kms.cluster.address \
                     (jgroups.tcp.address) / kms.cluster.port (jgroups.tcp.port)",
                    inner.escape_debug(),
                    names.escape_debug()
                )
            })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses `host[port],host[port]`; whitespace and line breaks around entries are allowed.
fn parse_hosts(text: &str) -> Result<Vec<HostEntry>, String> {
    let mut hosts = Vec::new();
    for entry in text.split(',') {
        let entry: String = entry.chars().filter(|c| !c.is_whitespace()).collect();
        if entry.is_empty() {
            continue;
        }
        let bad = || {
            format!(
                "'{}' is not host[port] (e.g. kms2.example.com[7800])",
                entry.escape_debug()
            )
        };
        let (host, tail) = entry.split_once('[').ok_or_else(bad)?;
        let port = tail.strip_suffix(']').ok_or_else(bad)?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(bad)?;
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !host_ok {
            return Err(bad());
        }
        let e = HostEntry {
            host: host.to_owned(),
            port,
        };
        if !hosts.contains(&e) {
            hosts.push(e);
        }
    }
    Ok(hosts)
}

#[cfg(test)]
#[path = "jgroups_tests.rs"]
mod tests;
