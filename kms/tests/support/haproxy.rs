//! A real HAProxy (the distribution's, installed by
//! `scripts/testbed/install-haproxy.sh`) in front of test nodes, running the
//! shipped `packaging/haproxy/cmx-kms.cfg` with only its addresses changed:
//! the frontend on a free loopback port, the servers on the test nodes, the
//! stats socket in the test's directory, and the backend connecting from
//! 127.0.0.10 (the address the nodes trust for the PROXY protocol). For the
//! tests' own diagnosis its log lines carry timestamps (`format iso`) and it
//! logs every failed or recovered check with its reason
//! (`option log-health-checks`): the "is DOWN" line then names no reason,
//! the "Health check for server … failed" line before it does.
//! Started in the foreground (`-db`), killed when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::node::free_port;

/// The address HAProxy connects to the nodes from.
pub const SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));

/// One server line: the node's API address and its check listener.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    pub api: SocketAddr,
    pub health: SocketAddr,
}

/// A running HAProxy.
pub struct HaProxy {
    child: Child,
    pub addr: SocketAddr,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub config: PathBuf,
}

fn binary() -> &'static str {
    if Path::new("/usr/sbin/haproxy").exists() {
        "/usr/sbin/haproxy"
    } else {
        "haproxy"
    }
}

/// The shipped configuration, with the test's addresses.
pub fn config(dir: &Path, port: u16, servers: &[Server]) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/haproxy/cmx-kms.cfg"),
    )
    .unwrap();
    let mut out = String::new();
    for line in shipped.lines() {
        let t = line.trim_start();
        if t.starts_with("log stdout format raw") {
            out.push_str(&line.replace("format raw", "format iso"));
            out.push('\n');
        } else if t == "option tcplog" {
            out.push_str(line);
            out.push_str("\n    option log-health-checks\n");
        } else if t.starts_with("stats socket ") {
            out.push_str(&format!(
                "    stats socket {} mode 600 level admin\n",
                dir.join("admin.sock").display()
            ));
        } else if t.starts_with("bind ") {
            out.push_str(&format!("    bind 127.0.0.1:{port}\n"));
        } else if t.starts_with("source ") {
            out.push_str(&format!("    source {SOURCE}\n"));
        } else if t.starts_with("server ") {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.contains("send-proxy-v2") && out.contains("check port"));
    assert!(out.contains("format iso") && out.contains("log-health-checks"));
    for (i, s) in servers.iter().enumerate() {
        // `port` here overrides the shipped check port: each test node has
        // its own check listener on 127.0.0.1.
        out.push_str(&format!(
            "    server kms{} {} port {}\n",
            i + 1,
            s.api,
            s.health.port()
        ));
    }
    out
}

impl HaProxy {
    /// Start HAProxy in `dir` in front of `servers`.
    pub fn start(dir: &Path, servers: &[Server]) -> HaProxy {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, self::config(dir, port, servers)).unwrap();
        let check = Command::new(binary())
            .args(["-c", "-q", "-f"])
            .arg(&config)
            .output()
            .expect("haproxy is installed (scripts/testbed/install-haproxy.sh)");
        assert!(
            check.status.success(),
            "haproxy -c: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.join("haproxy.log");
        let child = Command::new(binary())
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("haproxy.stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut h = HaProxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            socket: dir.join("admin.sock"),
            log,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(h.addr).is_err() || !h.socket.exists() {
            if let Some(status) = h.child.try_wait().unwrap() {
                panic!("haproxy exited with {status}: {}", h.log_text());
            }
            assert!(Instant::now() < deadline, "haproxy did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        h
    }

    /// The log proper (stdout): the lines that `log stdout` writes.
    pub fn log_lines(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log and, after it, what HAProxy wrote to stderr (its warnings).
    pub fn log_text(&self) -> String {
        let mut s = self.log_lines();
        s.push_str(
            &std::fs::read_to_string(self.log.with_file_name("haproxy.stderr")).unwrap_or_default(),
        );
        s
    }

    /// One command on the admin socket.
    pub fn admin(&self, cmd: &str) -> String {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// Whether each server is up (`show servers state`: operational state 2
    /// is running; 0 is stopped, as after failed checks).
    pub fn servers_up(&self) -> Vec<(String, bool)> {
        self.admin("show servers state kms_nodes")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 5 && f[1] == "kms_nodes").then(|| (f[3].to_owned(), f[5] == "2"))
            })
            .collect()
    }

    pub fn is_up(&self, server: &str) -> bool {
        self.servers_up()
            .iter()
            .any(|(name, up)| name == server && *up)
    }

    /// Wait (up to `timeout`) until `server` is up (or down); the time it took.
    pub fn wait_server(&self, server: &str, up: bool, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.is_up(server) == up {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "{server} not {} after {timeout:?}: {:?}\n{}",
                if up { "up" } else { "down" },
                self.servers_up(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
