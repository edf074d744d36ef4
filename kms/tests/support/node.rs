//! A real `cmx-kms serve` process on 127.0.0.1 (or a node in the test's own
//! process), free ports, and running the `cmx-kms` command, for the server's
//! integration tests; the HTTPS client is in `client.rs`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{Client, Resp};
use super::guide_pki::{GuidePki, Identity};

/// Create the soft master key the properties name when it is missing, with
/// the function `cmx-kms dev` uses: `serve` never creates one. Properties that
/// do not load (a test of a refusal) are left for the node to report.
pub fn ensure_soft_key(properties: &Path, env: &[(&str, &str)]) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Ok(loaded) = cmx_kms::config::load(properties, &env) else {
        return;
    };
    let c = loaded.config;
    if c.hsm.protocol == cmx_kms::config::Protocol::Soft
        && std::fs::symlink_metadata(&c.hsm.soft.key_file).is_err()
    {
        // A failure is the node's to report, as it would be for an operator.
        let _ = cmx_kms::backend::soft::create_key_file(&c.hsm.soft.key_file, &c.keystore.password);
    }
}

/// A free port on 127.0.0.1 (bound then released: good enough for tests).
pub fn free_port() -> u16 {
    port_in_block(20000..26000, 1)
}

/// A port free on every one of `ips` (loopback addresses), for nodes that
/// listen on the same port at different addresses.
pub fn free_port_on(ips: &[IpAddr]) -> u16 {
    for _ in 0..1000 {
        let port = free_port();
        if ips
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// Two consecutive free ports (a `cmx-kms dev` node takes `port` and `port + 1`).
pub fn free_port_pair() -> u16 {
    port_in_block(20000..26000, 2)
}

include!("ports.rs");
/// A running `cmx-kms serve`.
pub struct TestNode {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub dir: PathBuf,
    pub properties: PathBuf,
    pub log: PathBuf,
    pub audit: PathBuf,
}

impl TestNode {
    /// The properties a test node runs with: the guide's keystore, the soft
    /// backend, free ports, files in `dir`; `extra` lines are appended.
    pub fn properties(
        pki: &GuidePki,
        dir: &Path,
        port: u16,
        metrics_port: u16,
        extra: &str,
    ) -> String {
        format!(
            "kms.keystore.file={}\nkms.keystore.password={}\nkms.keystore.alias=kmsClient\n\
             kms.hsm.protocol=soft\nkms.hsm.soft.key.file={}\nkms.server.address=127.0.0.1\n\
             kms.server.port={port}\nkms.metrics.port={metrics_port}\nkms.audit.file={}\n{extra}",
            pki.keystore.display(),
            pki.store_password,
            dir.join("soft-master.key").display(),
            dir.join("audit.log").display(),
        )
    }

    /// Start a node with the guide's keystore and the soft backend.
    pub fn start(pki: &GuidePki, dir: &Path, extra: &str) -> TestNode {
        Self::start_with(
            dir,
            |port, mport| Self::properties(pki, dir, port, mport, extra),
            &[],
        )
    }

    /// Start a node with properties made by `props(port, metrics_port)` and extra env vars.
    pub fn start_with(
        dir: &Path,
        props: impl Fn(u16, u16) -> String,
        env: &[(&str, &str)],
    ) -> TestNode {
        Self::spawn(dir, props, env, Command::new(env!("CARGO_BIN_EXE_cmx-kms")))
    }

    /// Like [`TestNode::start`], for a node kept in a `static` (shared by the
    /// tests of one file), which is never dropped: the node is started from a
    /// thread that lives as long as the test process, with `setpriv
    /// --pdeathsig KILL`, so the kernel kills it when the process ends.
    pub fn start_for_process(pki: &GuidePki, dir: &Path, extra: &str) -> TestNode {
        let (pki, dir, extra) = (pki.clone(), dir.to_owned(), extra.to_owned());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--pdeathsig", "KILL", "--"])
                .arg(env!("CARGO_BIN_EXE_cmx-kms"));
            let node = Self::spawn(
                &dir,
                |port, mport| Self::properties(&pki, &dir, port, mport, &extra),
                &[],
                cmd,
            );
            let _ = tx.send(node);
            // The death signal belongs to this thread: keep it alive.
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the node started")
    }

    /// Start a node with the guide's keystore and the soft backend listening
    /// on `addr` (another loopback address than 127.0.0.1, as the nodes of a
    /// cluster on one machine; see [`free_port_on`] for a port free on all).
    pub fn start_at(pki: &GuidePki, dir: &Path, addr: SocketAddr, extra: &str) -> TestNode {
        let ip = addr.ip();
        Self::spawn_at(
            dir,
            Some(addr),
            |port, mport| {
                Self::properties(pki, dir, port, mport, extra).replace(
                    "kms.server.address=127.0.0.1\n",
                    &format!("kms.server.address={ip}\n"),
                )
            },
            &[],
            Command::new(env!("CARGO_BIN_EXE_cmx-kms")),
        )
    }

    fn spawn(
        dir: &Path,
        props: impl Fn(u16, u16) -> String,
        env: &[(&str, &str)],
        cmd: Command,
    ) -> TestNode {
        Self::spawn_at(dir, None, props, env, cmd)
    }

    fn spawn_at(
        dir: &Path,
        at: Option<SocketAddr>,
        props: impl Fn(u16, u16) -> String,
        env: &[(&str, &str)],
        cmd: Command,
    ) -> TestNode {
        let mut node = Self::launch_at(dir, at, props, env, cmd);
        node.wait_listening();
        node
    }

    /// Like [`TestNode::start`], without waiting for the node to listen: the
    /// process has just been started (see [`TestNode::wait_listening`]).
    pub fn launch(pki: &GuidePki, dir: &Path, extra: &str) -> TestNode {
        Self::launch_at(
            dir,
            None,
            |port, mport| Self::properties(pki, dir, port, mport, extra),
            &[],
            Command::new(env!("CARGO_BIN_EXE_cmx-kms")),
        )
    }

    fn launch_at(
        dir: &Path,
        at: Option<SocketAddr>,
        props: impl Fn(u16, u16) -> String,
        env: &[(&str, &str)],
        mut cmd: Command,
    ) -> TestNode {
        std::fs::create_dir_all(dir).unwrap();
        let addr = at.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let (port, mport) = (addr.port(), free_port());
        let properties = dir.join("kms.properties");
        std::fs::write(&properties, props(port, mport)).unwrap();
        ensure_soft_key(&properties, env);
        let log = dir.join("server.log");
        cmd.arg("serve")
            .arg("-c")
            .arg(&properties)
            .env("CMX_KMS_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("server.stdout")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        TestNode {
            child,
            addr,
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], mport)),
            dir: dir.to_owned(),
            properties,
            log,
            audit: dir.join("audit.log"),
        }
    }

    /// Starts a node that has exited again, with the same properties (so the
    /// same ports) and files; its log continues in the same file.
    pub fn restart(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_some(),
            "restart: the node is still running"
        );
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Command::new(env!("CARGO_BIN_EXE_cmx-kms"))
            .arg("serve")
            .arg("-c")
            .arg(&self.properties)
            .env("CMX_KMS_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.wait_listening();
    }

    /// Waits up to `timeout` for the node to exit and returns how it
    /// exited; panics naming `what` when it is still running then.
    pub fn wait_exit(&mut self, what: &str, timeout: Duration) -> std::process::ExitStatus {
        let mut status = None;
        super::wait_for(what, timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        // `wait_for` returns only once the closure has seen an exit status.
        status.unwrap()
    }

    /// Waits until the node accepts connections; panics if it exits first.
    pub fn wait_listening(&mut self) {
        // Generous: a loaded machine can take a while to start a node.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("cmx-kms exited with {status}:\n{}", self.log_text());
            }
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "cmx-kms did not listen on {} within 60 s:\n{}",
            self.addr,
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// For a 503 `backend-unavailable` answer: the backend refused the
    /// connection at once; the node did not wait out a timeout. Read from
    /// the line the node logged under the answer's request id (written
    /// before the answer was sent), so it holds on a slow machine too.
    pub fn assert_backend_refused(&self, r: &Resp) {
        let id = r.header("x-request-id").expect("x-request-id");
        let log = self.log_text();
        let line = log
            .lines()
            .find(|l| l.contains(id) && l.contains("key operation failed"))
            .unwrap_or_else(|| panic!("no log line for request {id}:\n{log}"));
        assert!(
            line.contains("cannot connect") && !line.contains(" within "),
            "refused expected, not a timeout: {line}"
        );
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// A client presenting `id`'s certificate.
    pub fn client(&self, pki: &GuidePki, id: &Identity) -> Client {
        Client::new(self.addr, &pki.ca.cert, Some((&id.cert, &id.key)))
    }

    /// A client presenting no certificate.
    pub fn anonymous(&self, pki: &GuidePki) -> Client {
        Client::new(self.addr, &pki.ca.cert, None)
    }

    /// GET /metrics (plain HTTP on loopback).
    pub fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.metrics_addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `cmx-kms ARGS -c CONFIG`.
pub fn cmx_with_config(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cmx-kms"))
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .unwrap()
}

/// stdout then stderr of a finished command, as text.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A node in this test process over a soft backend the test can switch off
/// (`set_unavailable`: the one fake, standing for an unreachable HSM): the
/// properties of [`TestNode::properties`] plus `extra`, files in `dir`, a
/// free port, and a readiness canary every `probe_interval`. Run it with
/// `rt.spawn(node.run(...))`.
pub fn soft_node_in_process(
    rt: &tokio::runtime::Runtime,
    pki: &GuidePki,
    dir: &Path,
    extra: &str,
    probe_interval: Duration,
) -> (cmx_kms::Node, Arc<cmx_kms::backend::soft::SoftBackend>) {
    soft_node_in_process_at(
        rt,
        pki,
        dir,
        IpAddr::from([127, 0, 0, 1]),
        extra,
        probe_interval,
    )
}

/// As [`soft_node_in_process`], listening on `ip` (a free port there).
pub fn soft_node_in_process_at(
    rt: &tokio::runtime::Runtime,
    pki: &GuidePki,
    dir: &Path,
    ip: IpAddr,
    extra: &str,
    probe_interval: Duration,
) -> (cmx_kms::Node, Arc<cmx_kms::backend::soft::SoftBackend>) {
    std::fs::create_dir_all(dir).unwrap();
    let text = TestNode::properties(pki, dir, 1, 0, extra).replace(
        "kms.server.address=127.0.0.1\n",
        &format!("kms.server.address={ip}\n"),
    );
    let mut config = cmx_kms::config::parse_str(&text, &dir.join("kms.properties"), &[])
        .unwrap()
        .config;
    config.server.port = 0;
    let (soft, _) = cmx_kms::backend::soft::SoftBackend::open_or_create(
        &config.hsm.soft.key_file,
        &secrecy::SecretString::from(pki.store_password.clone()),
    )
    .unwrap();
    let soft = Arc::new(soft);
    let mut node = rt
        .block_on(cmx_kms::Node::bind_with_backend(&config, soft.clone()))
        .unwrap();
    node.set_probe_settings(cmx_kms::ProbeSettings {
        interval: probe_interval,
        timeout: Duration::from_secs(2),
        slow: Duration::from_secs(1),
    });
    (node, soft)
}
