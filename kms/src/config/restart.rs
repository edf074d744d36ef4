//! Keys read only when the node starts ([`KeySpec::restart`]): what a reload cannot apply.
//!
//! [`AtStart::of`] takes the values of those keys from the configuration a node starts with;
//! [`AtStart::changes`] compares them with a newly loaded configuration, so that a reload
//! can warn about each change it leaves for the next restart. Only the values of these keys
//! are kept (as text), never the configuration itself with its passwords.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::keys::{KEYS, KeySpec};
use super::{CacheType, Config, Workers};

/// What the running node keeps doing, said before the value in force.
const STILL: &str = "still using";

/// The values of the restart-only keys in one configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtStart {
    values: Vec<(&'static KeySpec, String)>,
    /// The members `jgroups.xml` names (`TCPPING initial_hosts` and
    /// `port_range`): read at start only, like the keys, but from a file whose
    /// path may stay the same while its content changes.
    members: String,
}

/// What names the members in a [`RestartChange`] about `jgroups.xml`'s content.
pub const MEMBERS: &str = "jgroups.xml's TCPPING initial_hosts";

/// A restart-only key whose value differs in a newly loaded configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartChange {
    /// The key.
    pub key: &'static str,
    /// The value in force: the one the node started with.
    pub running: String,
    /// The value in the configuration now.
    pub wanted: String,
    /// What the node keeps doing until it restarts, said before `running`.
    keeps: &'static str,
    /// Values not to be shown (the key is a secret).
    secret: bool,
}

impl AtStart {
    /// The values of every restart-only key of [`KEYS`] in `config`.
    pub fn of(config: &Config) -> Self {
        let values = KEYS
            .iter()
            .filter(|k| k.restart)
            .filter_map(|k| value(k.name, config).map(|(v, _)| (k, v)))
            .collect();
        Self {
            values,
            members: members(config),
        }
    }

    /// Every restart-only key whose value in `config` differs from ours, in [`KEYS`] order.
    pub fn changes(&self, config: &Config) -> Vec<RestartChange> {
        let mut out = Vec::new();
        for (spec, running) in &self.values {
            let Some((wanted, keeps)) = value(spec.name, config) else {
                continue;
            };
            if wanted != *running {
                out.push(RestartChange {
                    key: spec.name,
                    running: running.clone(),
                    wanted,
                    keeps,
                    secret: spec.secret,
                });
            }
        }
        let wanted = members(config);
        if wanted != self.members {
            out.push(RestartChange {
                key: MEMBERS,
                running: self.members.clone(),
                wanted,
                keeps: "the cluster still has the members",
                secret: false,
            });
        }
        out
    }
}

/// The members of the cluster as `jgroups.xml` lists them, as text.
fn members(c: &Config) -> String {
    let Some(cluster) = c.cache.cluster.as_ref() else {
        return "(no cluster)".into();
    };
    let hosts: Vec<String> = cluster
        .hosts
        .iter()
        .map(|h| format!("{}[{}]", h.host.escape_debug(), h.port))
        .collect();
    format!("{} port_range={}", hosts.join(","), cluster.port_range)
}

/// One line: the key, both values (none for a secret) and what stays in force, e.g.
/// `kms.server.port changed (18503 -> 18505) but needs a restart: still listening on port 18503`.
impl fmt::Display for RestartChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            return write!(
                f,
                "{} changed but needs a restart: the value the node started with stays in force",
                self.key
            );
        }
        write!(
            f,
            "{} changed ({} -> {}) but needs a restart: {} {}",
            self.key, self.running, self.wanted, self.keeps, self.running
        )
    }
}

/// The value of restart-only `key` in `c` as text, with what the running node keeps doing;
/// `None` for a key that a reload applies.
fn value(key: &str, c: &Config) -> Option<(String, &'static str)> {
    server_value(key, c)
        .or_else(|| connection_value(key, c))
        .or_else(|| listener_value(key, c))
        .or_else(|| cluster_value(key, c))
}

fn server_value(key: &str, c: &Config) -> Option<(String, &'static str)> {
    let s = &c.server;
    Some(match key {
        "kms.server.address" => (s.address.to_string(), "still listening on"),
        "kms.server.port" => (s.port.to_string(), "still listening on port"),
        "kms.server.worker-threads" => (workers(s.workers), "still running with"),
        "kms.server.shutdown-grace" => (duration(s.shutdown_grace), STILL),
        "kms.server.drain-delay" => (duration(c.front.drain_delay), STILL),
        "kms.server.proxy-protocol.trusted" => (trusted(c), "still trusting"),
        "kms.audit.file" => (path(&c.audit.file), "records still go to"),
        _ => return None,
    })
}

fn connection_value(key: &str, c: &Config) -> Option<(String, &'static str)> {
    let s = &c.server;
    Some(match key {
        "kms.server.handshake-timeout" => (duration(s.handshake_timeout), STILL),
        "kms.server.header-timeout" => (duration(s.header_timeout), STILL),
        "kms.server.idle-timeout" => (duration(s.idle_timeout), STILL),
        "kms.server.max-connections" => (s.max_connections.to_string(), STILL),
        "kms.server.max-connection-lifetime" => (duration(s.max_connection_lifetime), STILL),
        "kms.server.max-pending-per-source" => (s.max_pending_per_source.to_string(), STILL),
        "kms.server.max-pending" => (s.max_pending.to_string(), STILL),
        "kms.server.backend-reserved-connections" => (s.backend_reserved.to_string(), STILL),
        _ => return None,
    })
}

fn listener_value(key: &str, c: &Config) -> Option<(String, &'static str)> {
    let r = &c.readiness;
    Some(match key {
        "kms.metrics.address" => (c.metrics.address.to_string(), "metrics still listen on"),
        "kms.metrics.port" => (c.metrics.port.to_string(), "metrics still on port"),
        "kms.health.address" => (c.health.address.to_string(), "the check still listens on"),
        "kms.health.port" => (c.health.port.to_string(), "the check still on port"),
        "kms.readiness.interval" => (duration(r.interval), STILL),
        "kms.readiness.timeout" => (duration(r.timeout), STILL),
        "kms.readiness.slow" => (duration(r.slow), STILL),
        _ => return None,
    })
}

fn cluster_value(key: &str, c: &Config) -> Option<(String, &'static str)> {
    let cluster = c.cache.cluster.as_ref();
    let none = || "(none)".to_string();
    Some(match key {
        "kms.cache.type" => (cache_type(c.cache.kind).to_string(), STILL),
        "kms.distributed.cache.config.file" => (path(&c.cache.distributed_config_file), STILL),
        "kms.cluster.address" => (
            cluster.map_or_else(none, |s| s.address.escape_debug().to_string()),
            STILL,
        ),
        "kms.cluster.port" => (cluster.map_or_else(none, |s| s.port.to_string()), STILL),
        "kms.control.socket" => (path(&c.cache.control_socket), STILL),
        _ => return None,
    })
}

/// A duration as `kms.properties` would write it.
fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A path, its control characters escaped (a value never breaks the log line).
fn path(p: &Path) -> String {
    p.display().to_string().escape_debug().to_string()
}

fn workers(w: Workers) -> String {
    match w {
        Workers::Automatic => "0".into(),
        Workers::Fixed(n) => n.to_string(),
    }
}

fn trusted(c: &Config) -> String {
    let blocks: Vec<String> = c
        .front
        .proxy_trusted
        .iter()
        .map(ToString::to_string)
        .collect();
    if blocks.is_empty() {
        "(none)".into()
    } else {
        blocks.join(",")
    }
}

fn cache_type(t: CacheType) -> &'static str {
    match t {
        CacheType::Local => "none",
        CacheType::Distributed => "distributed",
    }
}

#[cfg(test)]
#[path = "restart_tests.rs"]
mod tests;
