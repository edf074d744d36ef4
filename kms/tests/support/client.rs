//! A real HTTPS client with client certificates (rustls) for the server's
//! integration tests: one request per connection, or a kept-alive connection,
//! and the helpers that make a key chain and wait for readiness.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

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
        self.request_on(tcp, method, path, None)
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
