//! Who listens on a TCP port: `/proc/net/tcp{,6}` listeners, matched to
//! processes through their socket inodes in `/proc/PID/fd`.
//!
//! Only listeners the service's own bind would collide with count: those on
//! its address or on a wildcard one. Nodes sharing one network namespace
//! (containers on the host network, several addresses on one host) may each
//! listen on the same port at their own address; the installer of one
//! cannot see the others' processes and would otherwise refuse.

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv6Addr};

/// A process listening on the port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// `/proc/PID/cmdline`, arguments joined by spaces.
    pub cmdline: String,
}

impl Holder {
    /// Is it a cmx-kms server?
    pub fn is_cmx_kms(&self) -> bool {
        self.comm == "cmx-kms" || self.cmdline.contains("/usr/share/kms/bin/cmx-kms")
    }

    /// Is it Tomcat (the Java Connected-KMS)?
    pub fn is_tomcat(&self) -> bool {
        self.cmdline.contains("org.apache.catalina") || self.cmdline.contains("tomcat")
    }
}

/// What listens on `port`.
#[derive(Clone, Debug, Default)]
pub struct Listeners {
    /// Some socket listens on the port.
    pub in_use: bool,
    /// The processes holding it, where they could be found.
    pub holders: Vec<Holder>,
}

/// Listeners on TCP `port` (IPv4 and IPv6) in this network namespace that
/// a bind to `address` (`None`: every address, as a wildcard bind) would
/// collide with.
pub fn listeners(port: u16, address: Option<IpAddr>) -> Listeners {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let Some((laddr, lport)) = local.rsplit_once(':') else {
                continue;
            };
            let lport = u16::from_str_radix(lport, 16).ok();
            if *state == "0A" && lport == Some(port) && collides(address, parse_addr(laddr)) {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    let mut out = Listeners {
        in_use: !inodes.is_empty(),
        holders: Vec::new(),
    };
    if inodes.is_empty() {
        return out;
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().map(|s| inodes.contains(s)))
                .unwrap_or(false)
        });
        if holds {
            let comm = fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            let cmdline = fs::read(p.path().join("cmdline")).unwrap_or_default();
            out.holders.push(Holder {
                pid,
                comm: comm.trim().to_owned(),
                cmdline: String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .trim()
                    .to_owned(),
            });
        }
    }
    out
}

/// An address of `/proc/net/tcp{,6}`: 8 or 32 hex digits, each group of 8
/// a 32-bit word in host (little-endian here) byte order.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| {
            hex.get(i * 8..i * 8 + 8)
                .and_then(|w| u32::from_str_radix(w, 16).ok())
        })
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match (hex.len(), bytes.len()) {
        (8, 4) => Some(IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])),
        (32, 16) => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&bytes);
            let v6 = Ipv6Addr::from(b);
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    }
}

/// Would a bind to `want` collide with a listener on `have`? Yes if either
/// is a wildcard (or unknown), or they are the same address.
fn collides(want: Option<IpAddr>, have: Option<IpAddr>) -> bool {
    let wild = |a: &IpAddr| a.is_unspecified();
    match (want, have) {
        (Some(w), Some(h)) => wild(&w) || wild(&h) || w == h,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn finds_our_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        let found = listeners(port, None);
        assert!(found.in_use);
        assert!(found.holders.iter().any(|h| h.pid == me), "{found:?}");
        drop(l);
        // Ours is gone; another process on this machine may bind the freed
        // port at once (seen in a clean-clone run beside other tests).
        let after = listeners(port, None);
        assert!(!after.holders.iter().any(|h| h.pid == me), "{after:?}");
    }

    #[test]
    fn a_listener_on_another_address_does_not_count() {
        let l = std::net::TcpListener::bind("127.0.0.2:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(listeners(port, ip("127.0.0.2")).in_use);
        assert!(listeners(port, None).in_use);
        assert!(listeners(port, ip("0.0.0.0")).in_use);
        assert!(listeners(port, ip("::")).in_use);
        assert!(!listeners(port, ip("127.0.0.3")).in_use);
        drop(l);
    }

    #[test]
    fn proc_net_addresses_parse() {
        // 127.0.0.1 and ::ffff:127.0.0.2 and :: as the kernel prints them
        // on a little-endian machine.
        if cfg!(target_endian = "little") {
            assert_eq!(parse_addr("0100007F"), Some(IpAddr::from([127, 0, 0, 1])));
            assert_eq!(
                parse_addr("0000000000000000FFFF00000200007F"),
                Some(IpAddr::from([127, 0, 0, 2]))
            );
        }
        assert_eq!(
            parse_addr("00000000000000000000000000000000"),
            Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        );
        assert_eq!(
            parse_addr("00000000"),
            Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        );
        assert_eq!(parse_addr("zz"), None);
    }
}
