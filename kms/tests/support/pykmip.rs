//! Test helper: a throw-away PKI made with openssl, and a real PyKMIP server
//! on a free 127.0.0.1 port that can be stopped, restarted and whose log can
//! be read.
//!
//! PyKMIP is found in the testbed directory
//! `${CMX_KMS_TESTBED:-${XDG_CACHE_HOME:-$HOME/.cache}/cmx-kms-testbed}/venv-pykmip`,
//! installed by `scripts/testbed/install-pykmip.sh`. Tests FAIL when it is missing.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cmx_kms::backend::kmip::KmipSettings;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The testbed directory, by the project's rule.
pub fn testbed_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CMX_KMS_TESTBED").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("cmx-kms-testbed")
}

/// The `pykmip-server` executable; panics with the install advice when missing.
pub fn pykmip_server() -> PathBuf {
    let bin = testbed_dir().join("venv-pykmip/bin/pykmip-server");
    assert!(
        bin.is_file(),
        "PyKMIP is not installed at {}: run scripts/testbed/install-pykmip.sh",
        bin.display()
    );
    bin
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Test PKI in a directory:
/// - `hsm-ca`: the HSM's CA (the keystore's `kmipSigningCA`), EC P-256;
/// - `server-ec` / `server-rsa`: PyKMIP certificates (CN=localhost, SAN localhost + 127.0.0.1);
/// - `client`: the `kmsClient` identity (CN=kms-client, clientAuth), signed by hsm-ca;
/// - `other-client`: a second identity (CN=other-client), signed by hsm-ca;
/// - `rogue-ca` and `rogue-client`: a CA nobody trusts and a client it signed.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn generate(dir: &Path) -> Self {
        fs::create_dir_all(dir).expect("pki dir");
        for ca in ["hsm-ca", "rogue-ca"] {
            openssl(
                dir,
                &[
                    "genpkey",
                    "-quiet",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    &format!("{ca}.key"),
                ],
            );
            openssl(
                dir,
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-key",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.crt"),
                    "-days",
                    "30",
                    "-subj",
                    &format!("/CN=Test {ca}"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            );
        }
        let leaf = |name: &str, alg: &str, cn: &str, eku: &str, ca: &str| {
            let keygen: &[&str] = if alg == "ec" {
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
            } else {
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
            };
            let key = format!("{name}.key");
            let mut args = vec!["genpkey", "-quiet"];
            args.extend_from_slice(keygen);
            args.extend_from_slice(&["-out", &key]);
            openssl(dir, &args);
            openssl(
                dir,
                &[
                    "req",
                    "-new",
                    "-key",
                    &key,
                    "-subj",
                    &format!("/CN={cn}"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            );
            fs::write(
                dir.join(format!("{name}.ext")),
                format!(
                    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                     extendedKeyUsage={eku}\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
                ),
            )
            .expect("ext file");
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    &format!("{ca}.crt"),
                    "-CAkey",
                    &format!("{ca}.key"),
                    "-CAcreateserial",
                    "-days",
                    "30",
                    "-extfile",
                    &format!("{name}.ext"),
                    "-out",
                    &format!("{name}.crt"),
                ],
            );
        };
        leaf("server-ec", "ec", "localhost", "serverAuth", "hsm-ca");
        leaf("server-rsa", "rsa", "localhost", "serverAuth", "hsm-ca");
        leaf("client", "ec", "kms-client", "clientAuth", "hsm-ca");
        leaf("other-client", "ec", "other-client", "clientAuth", "hsm-ca");
        leaf("rogue-client", "ec", "kms-client", "clientAuth", "rogue-ca");
        Self {
            dir: dir.to_owned(),
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The certificate `name.crt` followed by its CA, as a chain.
    pub fn chain(&self, name: &str, ca: &str) -> Vec<CertificateDer<'static>> {
        vec![self.cert(name), self.cert(ca)]
    }

    pub fn cert(&self, name: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(self.path(&format!("{name}.crt"))).expect("read cert")
    }

    pub fn key(&self, name: &str) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_file(self.path(&format!("{name}.key"))).expect("read key")
    }

    /// The default `kmsClient` identity: chain and key.
    pub fn client_identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.chain("client", "hsm-ca"), self.key("client"))
    }

    /// The default trust: the HSM CA only.
    pub fn trust(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert("hsm-ca")]
    }
}

/// A policy that lets every identity use a key (PyKMIP `operation_policy_name`).
pub const SHARED_POLICY: &str = r#"{ "shared": { "preset": { "SYMMETRIC_KEY": {
  "LOCATE": "ALLOW_ALL", "CHECK": "ALLOW_ALL", "GET": "ALLOW_ALL",
  "GET_ATTRIBUTES": "ALLOW_ALL", "GET_ATTRIBUTE_LIST": "ALLOW_ALL",
  "ADD_ATTRIBUTE": "ALLOW_ALL", "MODIFY_ATTRIBUTE": "ALLOW_ALL",
  "DELETE_ATTRIBUTE": "ALLOW_ALL", "SET_ATTRIBUTE": "ALLOW_ALL",
  "ACTIVATE": "ALLOW_ALL", "REVOKE": "ALLOW_ALL", "DESTROY": "ALLOW_ALL",
  "ENCRYPT": "ALLOW_ALL", "DECRYPT": "ALLOW_ALL" } } } }"#;

/// What PyKMIP logs once it has loaded [`SHARED_POLICY`].
const POLICY_LOADED: &str = "Loading policy: shared";

/// A free TCP port on 127.0.0.1, below the ephemeral range (see ports.rs).
pub fn free_port() -> u16 {
    port_in_block(26000..29000, 1)
}

include!("ports.rs");

/// A running (or stopped) PyKMIP server.
pub struct PyKmip {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl PyKmip {
    /// Starts PyKMIP with the certificate `server-ec` or `server-rsa` of `pki`,
    /// TLS 1.2, client certificates required (EKU clientAuth), its database
    /// and log in `dir`. Waits until it accepts connections.
    pub fn start(pki: &Pki, dir: &Path, server_cert: &str) -> Self {
        let bin = pykmip_server();
        fs::create_dir_all(dir.join("policies")).expect("server dir");
        fs::write(dir.join("policies/shared.json"), SHARED_POLICY).expect("policy");
        let port = free_port();
        let suites = if server_cert.contains("ec") {
            "tls_cipher_suites=\n    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n"
        } else {
            ""
        };
        let conf = format!(
            "[server]\nhostname=127.0.0.1\nport={port}\ncertificate_path={cert}\nkey_path={key}\n\
             ca_path={ca}\nauth_suite=TLS1.2\npolicy_path={policies}\nenable_tls_client_auth=True\n\
             logging_level=DEBUG\ndatabase_path={db}\n{suites}",
            cert = pki.path(&format!("{server_cert}.crt")).display(),
            key = pki.path(&format!("{server_cert}.key")).display(),
            ca = pki.path("hsm-ca.crt").display(),
            policies = dir.join("policies").display(),
            db = dir.join("pykmip.db").display(),
        );
        fs::write(dir.join("server.conf"), conf).expect("server.conf");
        let _ = bin;
        let mut server = Self {
            dir: dir.to_owned(),
            port,
            child: None,
        };
        server.start_again();
        server
    }

    /// Starts the stopped server again on the same port with the same database.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "PyKMIP already running");
        let policies_loaded = self.log().matches(POLICY_LOADED).count();
        let out = fs::File::create(self.dir.join("server.stdout")).expect("stdout file");
        let err = out.try_clone().expect("stdout file");
        // Its own process group: PyKMIP forks worker processes, and stopping,
        // pausing or killing must reach all of them (a worker left behind
        // outlives the test).
        // Python's multiprocessing makes a folder in TMPDIR that only a clean
        // exit removes; PyKMIP is killed, so the folder goes with the test's.
        let tmp = self.dir.join("tmp");
        fs::create_dir_all(&tmp).expect("PyKMIP's TMPDIR");
        let child = Command::new(pykmip_server())
            .process_group(0)
            .env("TMPDIR", &tmp)
            .arg("-f")
            .arg(self.dir.join("server.conf"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start pykmip-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Listening is not enough: the policy monitor loads the policy
            // directory a moment later, and keys may be created under it.
            if self.log().matches(POLICY_LOADED).count() > policies_loaded
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "PyKMIP exited ({status}) before listening: {}\n{}",
                    fs::read_to_string(self.dir.join("server.stdout")).unwrap_or_default(),
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "PyKMIP did not listen within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (SIGTERM, so its helper processes go too) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGCONT);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever is left of the group (workers included) goes now.
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        // The port must be free again before a restart.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpListener::bind(("127.0.0.1", self.port)).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Freezes the server (SIGSTOP): it still accepts TCP connections in the
    /// kernel backlog but never answers. [`PyKmip::resume`] thaws it.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("PyKMIP running");
        let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        nix::sys::signal::killpg(group, signal).expect("signal PyKMIP");
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Whether the log comes to satisfy `holds` within `timeout` (polled every
    /// 100 ms). PyKMIP writes from its own session threads, which may log an
    /// event after this side has already seen its effect.
    pub async fn log_eventually(&self, timeout: Duration, holds: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !holds(&self.log()) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    /// How often the log says it processed `operation` (e.g. "Decrypt").
    pub fn operations_logged(&self, operation: &str) -> usize {
        let needle = format!("Processing operation: {operation}");
        self.log().lines().filter(|l| l.ends_with(&needle)).count()
    }

    /// Backend settings for this server with short, test-friendly timeouts.
    pub fn settings(&self, key_name: &str) -> KmipSettings {
        test_settings(&[self.port], key_name)
    }
}

/// Settings for endpoints on 127.0.0.1 at `ports`, with short timeouts.
pub fn test_settings(ports: &[u16], key_name: &str) -> KmipSettings {
    let mut s = KmipSettings::new(
        "127.0.0.1",
        ports.first().copied().unwrap_or(5696),
        key_name,
    );
    s.endpoints = ports.iter().map(|p| ("127.0.0.1".to_owned(), *p)).collect();
    s.connect_timeout = Duration::from_secs(3);
    s.request_timeout = Duration::from_secs(5);
    s.breaker.failures = 2;
    s.breaker.cooldown = Duration::from_millis(500);
    s
}

impl Drop for PyKmip {
    fn drop(&mut self) {
        self.stop();
    }
}
