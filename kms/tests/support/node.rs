//! A real `cmx-kms serve` process on 127.0.0.1 and a real HTTPS client with
//! client certificates (rustls), for the server's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::guide_pki::{GuidePki, Identity};

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
/// A TCP connection to `dst` from source address `src` (std cannot bind
/// before connecting; tokio's `TcpSocket` can).
pub fn connect_from(src: IpAddr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(src, 0))?;
        let s = sock.connect(dst).await?.into_std()?;
        s.set_nonblocking(false)?;
        Ok(s)
    })
}

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
        mut cmd: Command,
    ) -> TestNode {
        std::fs::create_dir_all(dir).unwrap();
        let addr = at.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let (port, mport) = (addr.port(), free_port());
        let properties = dir.join("kms.properties");
        std::fs::write(&properties, props(port, mport)).unwrap();
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
        let mut node = TestNode {
            child,
            addr,
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], mport)),
            dir: dir.to_owned(),
            properties,
            log,
            audit: dir.join("audit.log"),
        };
        node.wait_listening();
        node
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

    fn wait_listening(&mut self) {
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

/// A TLS client configuration trusting `ca`, presenting `identity`
/// (certificate and key PEM files) when given.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    }
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The `error` label of an error body.
    pub fn label(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// An HTTPS client with an optional client certificate. One connection per
/// request unless [`Client::keep_alive`] is used.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
}

impl Client {
    pub fn new(addr: SocketAddr, ca: &Path, identity: Option<(&Path, &Path)>) -> Client {
        Client {
            addr,
            config: Arc::new(client_config(ca, identity)),
        }
    }

    /// Force one TLS version (for the protocol tests).
    pub fn with_versions(
        mut self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        ca: &Path,
        id: (&Path, &Path),
    ) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let chain: Vec<_> = CertificateDer::pem_file_iter(id.0)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(id.1).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        self.config = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .unwrap(),
        );
        self
    }

    fn connect(&self) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
        let tcp = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
        self.connect_on(tcp)
    }

    /// The TLS handshake on an open TCP connection.
    fn connect_on(
        &self,
        tcp: TcpStream,
    ) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // As curl and other HTTP clients do: without it, a request written as
        // head then body waits for the server's delayed ACK (about 40 ms),
        // which would hide every difference a timing comparison looks for.
        tcp.set_nodelay(true).unwrap();
        let conn = rustls::ClientConnection::new(
            Arc::clone(&self.config),
            ServerName::try_from("localhost").unwrap(),
        )
        .map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(tls)
    }

    /// One request on a fresh connection. `Err` when the TLS connection is
    /// refused (at the handshake, or by the alert TLS 1.3 sends after it).
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Resp, String> {
        self.request_with(method, path, body, &[])
    }

    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let mut tls = self.connect()?;
        send(&mut tls, method, path, body, headers, true).map_err(|e| e.to_string())?;
        read_response(&mut tls)
    }

    /// One request on a fresh connection from source address `src`
    /// (e.g. 127.0.0.2: all of 127/8 is loopback on Linux).
    pub fn request_from(&self, src: IpAddr, method: &str, path: &str) -> Result<Resp, String> {
        let tcp = connect_from(src, self.addr).map_err(|e| e.to_string())?;
        let mut tls = self.connect_on(tcp)?;
        send(&mut tls, method, path, None, &[], true).map_err(|e| e.to_string())?;
        read_response(&mut tls)
    }

    /// One request on an open TCP connection (on which the caller may
    /// already have written, e.g. a PROXY protocol header).
    pub fn request_on(
        &self,
        tcp: TcpStream,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        let mut tls = self.connect_on(tcp)?;
        send(&mut tls, method, path, body, &[], true).map_err(|e| e.to_string())?;
        read_response(&mut tls)
    }

    /// POST `json` on a fresh connection from source address `src`.
    pub fn post_from(
        &self,
        src: IpAddr,
        path: &str,
        json: &serde_json::Value,
    ) -> Result<Resp, String> {
        let tcp = connect_from(src, self.addr).map_err(|e| e.to_string())?;
        self.request_on(tcp, "POST", path, Some(json.to_string().as_bytes()))
    }

    pub fn post(&self, path: &str, json: &serde_json::Value) -> Resp {
        self.request("POST", path, Some(json.to_string().as_bytes()))
            .unwrap()
    }

    /// A persistent connection for several requests.
    pub fn keep_alive(&self) -> Result<KeepAlive, String> {
        Ok(KeepAlive {
            tls: self.connect()?,
        })
    }
}

/// A keep-alive connection.
pub struct KeepAlive {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl KeepAlive {
    /// Write raw bytes on the connection (for slow-client tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// Read one response (or the error that ended the connection).
    pub fn read(&mut self) -> Result<Resp, String> {
        read_response(&mut self.tls)
    }

    /// Whether this connection's handshake was full or resumed.
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        self.tls.conn.handshake_kind()
    }

    pub fn get(&mut self, path: &str) -> Result<Resp, String> {
        send(&mut self.tls, "GET", path, None, &[], false).map_err(|e| e.to_string())?;
        read_response(&mut self.tls)
    }

    pub fn post(&mut self, path: &str, json: &serde_json::Value) -> Result<Resp, String> {
        send(
            &mut self.tls,
            "POST",
            path,
            Some(json.to_string().as_bytes()),
            &[],
            false,
        )
        .map_err(|e| e.to_string())?;
        read_response(&mut self.tls)
    }
}

fn send(
    tls: &mut impl std::io::Write,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
    close: bool,
) -> std::io::Result<()> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    if close {
        req.push_str("Connection: close\r\n");
    }
    let mut has_ct = false;
    for (k, v) in headers {
        has_ct |= k.eq_ignore_ascii_case("content-type");
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        if !has_ct {
            req.push_str("Content-Type: application/json\r\n");
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes())?;
    if let Some(b) = body {
        tls.write_all(b)?;
    }
    tls.flush()
}

fn read_response(tls: &mut impl std::io::Read) -> Result<Resp, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, status, headers) = loop {
        let n = tls.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("connection closed after {} bytes", buf.len()));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_string();
            let mut lines = head.split("\r\n");
            let status: u16 = lines
                .next()
                .unwrap()
                .split(' ')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| {
                    l.split_once(':')
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                })
                .collect();
            break (pos + 4, status, headers);
        }
    };
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = tls
            .read(&mut chunk)
            .map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Resp {
        status,
        headers,
        body: buf[head_end..(head_end + len).min(buf.len())].to_vec(),
    })
}

/// Create a customer, user and workspace key with the backend client `b`;
/// returns the body a decrypt request needs.
pub fn chain(b: &Client) -> serde_json::Value {
    let r = b.post("/v1/customer-keys", &serde_json::json!({}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let c = r.json()["wrapped_customer_key"].clone();
    let r = b.post(
        "/v1/user-keys",
        &serde_json::json!({"wrapped_customer_key": c}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let u = r.json()["wrapped_user_key"].clone();
    let r = b.post(
        "/v1/workspace-keys",
        &serde_json::json!({"wrapped_customer_key": c, "wrapped_user_key": u}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let w = r.json()["wrapped_workspace_key"].clone();
    serde_json::json!({"wrapped_customer_key": c, "wrapped_user_key": u, "wrapped_workspace_key": w})
}

/// Wait (up to 30 s) until `/v1/ready` reports `want`.
pub fn wait_ready(client: &Client, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client.request("GET", "/v1/ready", None).unwrap();
        if r.json()["state"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "readiness stuck at {}", r.json());
        std::thread::sleep(Duration::from_millis(200));
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
