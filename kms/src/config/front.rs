//! Settings for running behind a load balancer: which peers may send a PROXY
//! protocol header (`kms.server.proxy-protocol.trusted`), how long a node
//! keeps serving once it reports draining (`kms.server.drain-delay`), and the
//! plain-HTTP readiness check listener (`kms.health.*`).

use std::net::IpAddr;
use std::time::Duration;

use super::defaults as d;
use super::error::Problem;
use super::file::ConfigFile;
use super::server::ServerSettings;
use super::values::{duration, ip, port_or_zero};

/// An address block, `a.b.c.d/n` or `x::/n` (a bare address is one host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `text`; the host bits past the prefix must be zero.
    pub fn parse(text: &str) -> Result<Self, String> {
        const EXPECTED: &str = "is not an address block (expected an address such as 10.0.0.5, or a block such as 10.0.0.0/24 or fd00::/64)";
        let (a, p) = text.split_once('/').unwrap_or((text, ""));
        let addr = ip(a).map_err(|_| EXPECTED.to_string())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() && !text.contains('/') {
            max
        } else {
            super::values::parse_u64(p)
                .filter(|n| *n <= u64::from(max))
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| EXPECTED.to_string())?
        };
        let this = Self { addr, prefix };
        if this.network() != bits(addr) {
            return Err(format!(
                "has bits set past the /{prefix} prefix (write the block's first address)"
            ));
        }
        Ok(this)
    }

    fn mask(&self) -> u128 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        let host = width - u32::from(self.prefix);
        if host >= 128 { 0 } else { !0u128 << host }
    }

    fn network(&self) -> u128 {
        bits(self.addr) & self.mask()
    }

    /// Whether `ip` is in this block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && bits(ip) & self.mask() == self.network()
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A comma-separated list of blocks; empty means none. The message follows the
/// quoted value: a list names the item at fault, a single item does not again.
pub fn cidr_list(text: &str) -> Result<Vec<Cidr>, String> {
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let single = items.len() == 1;
    items
        .into_iter()
        .map(|s| {
            Cidr::parse(s).map_err(|e| match single {
                true => e,
                false => format!("holds '{s}', which {e}"),
            })
        })
        .collect()
}

/// Behind a load balancer (`kms.server.proxy-protocol.trusted`, `kms.server.drain-delay`).
#[derive(Clone, Debug, Default)]
pub struct FrontSettings {
    /// Peers that must start every connection with a PROXY protocol header;
    /// empty (the default) turns the protocol off.
    pub proxy_trusted: Vec<Cidr>,
    /// On SIGTERM: how long the node reports draining while still serving,
    /// so the balancer's health check takes it out first.
    pub drain_delay: Duration,
}

impl FrontSettings {
    pub(super) fn take(file: &mut ConfigFile) -> Self {
        let proxy_trusted =
            file.parse_or("kms.server.proxy-protocol.trusted", Vec::new(), cidr_list);
        let drain_delay = file.parse_or("kms.server.drain-delay", d::DRAIN_DELAY, duration);
        Self {
            proxy_trusted,
            drain_delay,
        }
    }

    /// Whether a connection from `ip` must start with a PROXY header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.proxy_trusted.iter().any(|c| c.contains(ip))
    }
}

/// The readiness check listener for load balancers (`kms.health.*`).
#[derive(Clone, Copy, Debug)]
pub struct HealthSettings {
    /// `kms.health.address`: defaults to `kms.server.address`.
    pub address: IpAddr,
    /// `kms.health.port`: 0 (the default) means no check listener.
    pub port: u16,
}

impl HealthSettings {
    pub(super) fn take(file: &mut ConfigFile, server: &ServerSettings) -> Self {
        let this = Self {
            address: file.parse_or("kms.health.address", server.address, ip),
            port: file.parse_or("kms.health.port", 0, port_or_zero),
        };
        if this.port != 0 && this.port == server.port {
            let detail = format!(
                "port {} is also kms.server.port; give the check listener another port, or 0 to turn it off",
                this.port
            );
            file.error(
                file.origin_of("kms.health.port"),
                Some("kms.health.port"),
                Problem::Conflict { detail },
            );
        }
        this
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks() {
        let c = |s: &str| Cidr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(c("127.0.0.10").contains(ip("127.0.0.10")));
        assert!(!c("127.0.0.10").contains(ip("127.0.0.11")));
        assert!(c("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(c("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(c("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(!c("0.0.0.0/0").contains(ip("::1")));
        assert!(c("fd00::/64").contains(ip("fd00::5")));
        assert!(!c("fd00::/64").contains(ip("fd00:0:0:1::5")));
        assert!(c("::/0").contains(ip("2001:db8::1")));
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "x",
            "10.0.0.0/+8",
            "fd00::1/64",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            cidr_list(" 10.0.0.0/8, 127.0.0.10 ").map(|l| l.len()),
            Ok(2)
        );
        assert!(cidr_list("10.0.0.0/8,,bad").is_err());
        // The caller quotes the value before the message: one item is not named twice.
        let one = cidr_list("10.0.0.0/33").unwrap_err();
        assert!(one.starts_with("is not an address block"), "{one}");
        let two = cidr_list("10.0.0.0/8, 10.0.0.0/33").unwrap_err();
        assert!(
            two.starts_with("holds '10.0.0.0/33', which is not an address block"),
            "{two}"
        );
        assert_eq!(cidr_list("").map(|l| l.len()), Ok(0));
    }

    #[test]
    fn a_bad_block_is_quoted_once() {
        let text = "kms.keystore.file=k\nkms.keystore.password=p\nkms.hsm.protocol=soft\n\
                    kms.server.proxy-protocol.trusted=10.0.0.0/33\n";
        let errors = crate::config::parse_str(text, std::path::Path::new("/k.properties"), &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            errors,
            "/k.properties:4: kms.server.proxy-protocol.trusted: '10.0.0.0/33' is not an address block \
             (expected an address such as 10.0.0.5, or a block such as 10.0.0.0/24 or fd00::/64)"
        );
    }
}
