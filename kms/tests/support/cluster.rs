//! Cluster nodes for the cluster tests: real `cmx-kms serve` processes on
//! their own loopback addresses (127.0.0.N, the same ports on each), each
//! with its own `jgroups.xml` listing the others, and a real HAProxy in
//! front of them running the shipped configuration with round robin.
//! Include with `#[path = "support/cluster.rs"] mod cluster_support;` beside
//! `mod support`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::guide_pki::GuidePki;
use crate::support::haproxy::{SOURCE, Server};
use crate::support::node::{TestNode, free_port};

/// 127.0.0.`n`: each node of a test cluster has an address of its own.
pub fn ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// Start a member on `me` with `ports`, listing `others`, its canary off
/// (`kms.readiness.interval=1h`: its HSM calls would blur counts).
pub fn start_member(
    pki: &GuidePki,
    dir: &Path,
    me: IpAddr,
    ports: Ports,
    others: &[IpAddr],
) -> ClusterNode {
    let base = TestNode::properties(
        pki,
        dir,
        ports.api,
        ports.metrics,
        "kms.readiness.interval=1h\n",
    )
    .replace(
        "kms.server.address=127.0.0.1",
        &format!("kms.server.address={me}"),
    );
    let props = base + &cluster_props(dir, me, ports, others);
    ClusterNode::start(dir, me, ports, &props)
}

/// The ports every node of a test cluster uses, each on its own address.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub api: u16,
    pub metrics: u16,
    pub health: u16,
    pub cluster: u16,
}

impl Ports {
    pub fn pick() -> Ports {
        Ports {
            api: free_port(),
            metrics: free_port(),
            health: free_port(),
            cluster: free_port(),
        }
    }
}

/// `jgroups.xml` in the guide's layout, listing `others` on `port`.
pub fn jgroups_xml(others: &[IpAddr], port: u16) -> String {
    let hosts: Vec<String> = others.iter().map(|ip| format!("{ip}[{port}]")).collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config xmlns=\"urn:org:jgroups\">\n    \
         <TCP bind_addr=\"${{jgroups.tcp.address:SITE_LOCAL}}\" bind_port=\"${{jgroups.tcp.port:7800}}\"/>\n    \
         <TCPPING initial_hosts=\"{}\" port_range=\"0\"/>\n    <MERGE3/>\n    <FD_SOCK/>\n</config>\n",
        hosts.join(",")
    )
}

/// The lines that put a node on `ip` with `ports`, in the cluster of `others`.
pub fn cluster_props(dir: &Path, ip: IpAddr, ports: Ports, others: &[IpAddr]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let jgroups = dir.join("jgroups.xml");
    std::fs::write(&jgroups, jgroups_xml(others, ports.cluster)).unwrap();
    format!(
        "kms.cache.type=distributed\nkms.distributed.cache.config.file={}\nkms.cluster.address={ip}\n\
         kms.cluster.port={}\nkms.metrics.address={ip}\nkms.health.port={}\n\
         kms.server.proxy-protocol.trusted={SOURCE}\nkms.control.socket={}\n",
        jgroups.display(),
        ports.cluster,
        ports.health,
        dir.join("control.sock").display()
    )
}

/// A running node on its own address.
pub struct ClusterNode {
    pub child: Child,
    pub ip: IpAddr,
    pub ports: Ports,
    pub dir: PathBuf,
    pub properties: PathBuf,
    pub log: PathBuf,
}

impl ClusterNode {
    /// Start `cmx-kms serve` with `props` (which must put it on `ip`/`ports`).
    pub fn start(dir: &Path, ip: IpAddr, ports: Ports, props: &str) -> ClusterNode {
        std::fs::create_dir_all(dir).unwrap();
        let properties = dir.join("kms.properties");
        std::fs::write(&properties, props).unwrap();
        super::support::node::ensure_soft_key(&properties, &[]);
        let log = dir.join("server.log");
        let child = Command::new(env!("CARGO_BIN_EXE_cmx-kms"))
            .arg("serve")
            .arg("-c")
            .arg(&properties)
            .env("CMX_KMS_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut n = ClusterNode {
            child,
            ip,
            ports,
            dir: dir.to_owned(),
            properties,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(n.api()).is_err() {
            if let Some(status) = n.child.try_wait().unwrap() {
                panic!("cmx-kms on {ip} exited with {status}:\n{}", n.log_text());
            }
            assert!(Instant::now() < deadline, "no listener on {}", n.api());
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    pub fn api(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.ports.api)
    }

    pub fn cluster_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.ports.cluster)
    }

    pub fn server(&self) -> Server {
        Server {
            api: self.api(),
            health: SocketAddr::new(self.ip, self.ports.health),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// GET /metrics on the node's own metrics address.
    pub fn metrics(&self) -> String {
        let Ok(mut s) = TcpStream::connect(SocketAddr::new(self.ip, self.ports.metrics)) else {
            return String::new();
        };
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }

    /// A metric's value (the first line starting with `name_and_labels `).
    pub fn metric(&self, name_and_labels: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
    }

    /// The readiness check's answer (plain HTTP on the health port).
    pub fn health_ok(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(SocketAddr::new(self.ip, self.ports.health)) else {
            return false;
        };
        let _ = write!(
            s,
            "GET /v1/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200")
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// HAProxy running the shipped configuration, with round robin.
pub struct RoundRobin {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl RoundRobin {
    pub fn start(dir: &Path, servers: &[Server]) -> RoundRobin {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let text = crate::support::haproxy::config(dir, port, servers);
        assert!(
            text.contains("balance leastconn"),
            "the shipped balance line moved"
        );
        let config = dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            text.replace("balance leastconn", "balance roundrobin"),
        )
        .unwrap();
        let bin = if Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy"
        } else {
            "haproxy"
        };
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("haproxy.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("haproxy.stderr")).unwrap())
            .spawn()
            .expect("haproxy is installed (scripts/testbed/install-haproxy.sh)");
        let mut h = RoundRobin {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(h.addr).is_err() {
            if let Some(status) = h.child.try_wait().unwrap() {
                panic!("haproxy exited with {status}");
            }
            assert!(Instant::now() < deadline, "haproxy did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        h
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
