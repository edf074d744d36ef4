//! Who listens on a TCP port: `/proc/net/tcp{,6}` listeners, matched to
//! processes through their socket inodes in `/proc/PID/fd`.

use std::collections::HashSet;
use std::fs;

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

/// Listeners on TCP `port` (IPv4 and IPv6) in this network namespace.
pub fn listeners(port: u16) -> Listeners {
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
            let lport = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && lport == Some(port) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let found = listeners(port);
        assert!(found.in_use);
        assert!(
            found
                .holders
                .iter()
                .any(|h| h.pid == i32::try_from(std::process::id()).unwrap_or(0)),
            "{found:?}"
        );
        drop(l);
        assert!(!listeners(port).in_use);
    }
}
