//! `cmx-kms dev`: a throwaway local node.
//!
//! Creates, in a folder, a CA, a server certificate, `cmxBackend` and
//! `cmxDevice` client certificates (PEM and `.p12`), a keytool-compatible
//! keystore (PKCS#12, as keytool writes by default) and a `kms.properties`
//! with the `soft` backend on 127.0.0.1. A second run reuses the folder.
//!
//! The folder may already exist (`--dir .`): then only what `dev` itself made
//! is touched. It is never chmod-ed, no file in it is overwritten, and a
//! `kms.properties` is only reused when its first line is the one `dev`
//! writes, so a real configuration (and its keystore password) is never run
//! or printed as a development node.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Why the development folder could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A file or the folder cannot be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen refused to make a certificate.
    #[error("cannot make the development certificates: {0}")]
    Cert(#[from] rcgen::Error),
    /// The PKCS#12 writer failed.
    #[error("cannot write the development keystore: {0}")]
    Keystore(String),
    /// The soft master key cannot be created.
    #[error("{0}")]
    SoftKey(#[from] crate::backend::soft::SoftKeyError),
    /// No random bytes for the keystore password.
    #[error("the operating system's random generator failed")]
    Rng,
    /// The folder holds files `dev` did not make.
    #[error(
        "{} already exists and was not made by `cmx-kms dev`, so it is left alone; \
         pass --dir a new or empty folder, or one an earlier `cmx-kms dev` made",
        path.display()
    )]
    NotOurs {
        /// The file found.
        path: PathBuf,
    },
}

/// The files of a development node.
#[derive(Clone, Debug)]
pub struct DevFolder {
    /// The folder (canonical).
    pub dir: PathBuf,
    /// Its `kms.properties`.
    pub properties: PathBuf,
    /// The API port the node listens on.
    pub port: u16,
    /// Password of the keystore and of every `.p12` (random, made on the first run).
    pub password: String,
}

const NAMES: [&str; 2] = ["cmxBackend", "cmxDevice"];

/// The first line of every `kms.properties` that `dev` writes: how a second
/// run knows the folder is its own.
const HEADER: &str = "# cmx-kms development node, made by `cmx-kms dev`. NOT FOR PRODUCTION:";

/// Every file `dev` writes, and those the node it starts creates.
const FILES: [&str; 14] = [
    "kms.properties",
    "kmsKeystore.jks",
    "ca.crt",
    "kmsServer.crt",
    "kmsServer.key",
    "cmxBackend.crt",
    "cmxBackend.key",
    "cmxBackend.p12",
    "cmxDevice.crt",
    "cmxDevice.key",
    "cmxDevice.p12",
    SOFT_KEY,
    "audit.log",
    RUN,
];

/// The private folder (mode 0700) that holds the node's control socket. The
/// socket itself is made mode 0660 for the service's group; inside a folder
/// only its owner can enter, nobody else can reach it, whatever the group
/// of the folder `dev` was pointed at.
const RUN: &str = "run";

/// The soft master key file `dev` makes (`kms.hsm.soft.key.file`).
const SOFT_KEY: &str = "soft-master.key";

impl DevFolder {
    /// A file in the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Create the folder's files, or reuse them if `kms.properties` exists.
    pub fn prepare(dir: &Path, port: u16) -> Result<Self, DevError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DevError::Io { path, source }
        };
        let existed = fs::symlink_metadata(dir).is_ok();
        if !existed {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir))?;
            // Only a folder made here gets its mode set.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        }
        let dir = dir.canonicalize().map_err(io(dir))?;
        let properties = dir.join("kms.properties");
        if fs::symlink_metadata(&properties).is_ok() {
            let text = fs::read_to_string(&properties).map_err(io(&properties))?;
            if text.lines().next() != Some(HEADER) {
                return Err(DevError::NotOurs { path: properties });
            }
            let find = |k: &str| {
                text.lines().find_map(|l| {
                    l.strip_prefix(k)
                        .and_then(|r| r.strip_prefix('='))
                        .map(str::to_owned)
                })
            };
            let password = find("kms.keystore.password").unwrap_or_default();
            let port = find("kms.server.port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(port);
            let folder = Self {
                dir,
                properties,
                port,
                password,
            };
            folder.make_run_dir()?;
            folder.make_soft_key()?;
            return Ok(folder);
        }
        if let Some(name) = FILES
            .iter()
            .find(|name| fs::symlink_metadata(dir.join(name)).is_ok())
        {
            return Err(DevError::NotOurs {
                path: dir.join(name),
            });
        }
        let mut pw = [0u8; 12];
        getrandom::fill(&mut pw).map_err(|_| DevError::Rng)?;
        let password = crate::hex::encode(&pw);
        let folder = Self {
            dir,
            properties,
            port,
            password,
        };
        folder.make_pki()?;
        folder.write_properties()?;
        folder.make_run_dir()?;
        folder.make_soft_key()?;
        Ok(folder)
    }

    /// The soft master key, made here when the folder has none: `serve` never
    /// creates one (a folder from an older `dev` gets its key on the next run).
    fn make_soft_key(&self) -> Result<(), DevError> {
        let path = self.path(SOFT_KEY);
        if fs::symlink_metadata(&path).is_ok() {
            return Ok(());
        }
        let password = secrecy::SecretString::from(self.password.clone());
        crate::backend::soft::create_key_file(&path, &password)?;
        Ok(())
    }

    /// The private folder for the control socket, made (or made private
    /// again) on every start: the node binds its socket there.
    fn make_run_dir(&self) -> Result<(), DevError> {
        let path = self.path(RUN);
        let io = |source| DevError::Io {
            path: path.clone(),
            source,
        };
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = fs::symlink_metadata(&path).map_err(io)?;
                // A symbolic link or a file here is not the folder dev made.
                if !meta.is_dir() {
                    return Err(DevError::NotOurs { path });
                }
                if meta.permissions().mode() & 0o077 != 0 {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).map_err(io)?;
                }
                Ok(())
            }
            Err(source) => Err(io(source)),
        }
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<(), DevError> {
        let path = self.path(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true) // never overwrite: the file may be someone else's
            .mode(0o600)
            .open(&path)
            .map_err(|source| DevError::Io {
                path: path.clone(),
                source,
            })?;
        std::io::Write::write_all(&mut f, data).map_err(|source| DevError::Io { path, source })
    }

    fn make_pki(&self) -> Result<(), DevError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = dn("cmx-kms dev CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        self.write("ca.crt", ca_cert.pem().as_bytes())?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut ks = p12_keystore::KeyStore::new();
        let ca_p12 = p12_cert(ca_cert.der())?;

        let mut server = CertificateParams::new(vec!["localhost".to_string()])?;
        server
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        server.distinguished_name = dn("localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &issuer)?;
        self.write("kmsServer.crt", server_cert.pem().as_bytes())?;
        self.write("kmsServer.key", server_key.serialize_pem().as_bytes())?;
        let chain = p12_keystore::PrivateKeyChain::new(
            b"kmsserver-dev-key-id".to_vec(),
            p12_keystore::PrivateKey::from_der(&server_key.serialize_der()).map_err(ks_err)?,
            [p12_cert(server_cert.der())?, ca_p12.clone()],
        );
        ks.add_entry(
            "kmsserver",
            p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
        );

        for name in NAMES {
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.distinguished_name = dn(name);
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate()?;
            let cert = p.signed_by(&key, &issuer)?;
            self.write(&format!("{name}.crt"), cert.pem().as_bytes())?;
            self.write(&format!("{name}.key"), key.serialize_pem().as_bytes())?;
            let der = p12_cert(cert.der())?;
            // The client's own .p12, as the guide ships cmxDevice.p12 to agents.
            let mut own = p12_keystore::KeyStore::new();
            let chain = p12_keystore::PrivateKeyChain::new(
                name.as_bytes().to_vec(),
                p12_keystore::PrivateKey::from_der(&key.serialize_der()).map_err(ks_err)?,
                [der.clone(), ca_p12.clone()],
            );
            own.add_entry(name, p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
            self.write(
                &format!("{name}.p12"),
                &own.writer(&self.password).write().map_err(ks_err)?,
            )?;
            ks.add_entry(name, p12_keystore::KeyStoreEntry::Certificate(der));
        }
        self.write(
            "kmsKeystore.jks",
            &ks.writer(&self.password).write().map_err(ks_err)?,
        )
    }

    fn write_properties(&self) -> Result<(), DevError> {
        let mut t = String::new();
        let _ = writeln!(t, "{HEADER}");
        let _ = writeln!(
            t,
            "# the master key is a software key in soft-master.key, not in an HSM."
        );
        let _ = writeln!(t, "kms.keystore.file=kmsKeystore.jks");
        let _ = writeln!(t, "kms.keystore.password={}", self.password);
        let _ = writeln!(t, "kms.hsm.protocol=soft");
        let _ = writeln!(t, "kms.hsm.soft.key.file={SOFT_KEY}");
        let _ = writeln!(t, "kms.server.address=127.0.0.1");
        let _ = writeln!(t, "kms.server.port={}", self.port);
        // Metrics on the next port, not the product's fixed 9443: two dev
        // nodes (or a dev node beside a real one) must not collide on it.
        let _ = writeln!(
            t,
            "kms.metrics.port={}",
            self.port.checked_add(1).unwrap_or(0)
        );
        let _ = writeln!(t, "kms.audit.file=audit.log");
        // In the folder, not the service's /run/cmx-kms (which only the
        // packaged unit creates): `cmx-kms cache flush --config` reaches it.
        let _ = writeln!(t, "kms.control.socket={RUN}/control.sock");
        self.write("kms.properties", t.as_bytes())
    }

    /// Ready-to-paste shell commands that create a key chain and decrypt a
    /// workspace key with curl.
    pub fn curl_commands(&self) -> String {
        let d = self.dir.display();
        let url = format!("https://127.0.0.1:{}", self.port);
        let mut t = String::new();
        let _ = writeln!(
            t,
            "B=\"curl -sS --cacert {d}/ca.crt --cert {d}/cmxBackend.crt --key {d}/cmxBackend.key -H content-type:application/json\""
        );
        let _ = writeln!(
            t,
            "D=\"curl -sS --cacert {d}/ca.crt --cert-type P12 --cert {d}/cmxDevice.p12:{} -H content-type:application/json\"",
            self.password
        );
        let _ = writeln!(
            t,
            "field() {{ sed -n \"s/.*\\\"$1\\\":\\\"\\([^\\\"]*\\)\\\".*/\\1/p\"; }}"
        );
        let _ = writeln!(
            t,
            "C=$($B -X POST -d '{{}}' {url}/v1/customer-keys | field wrapped_customer_key)"
        );
        let _ = writeln!(
            t,
            "U=$($B -X POST -d \"{{\\\"wrapped_customer_key\\\":\\\"$C\\\"}}\" {url}/v1/user-keys | field wrapped_user_key)"
        );
        let _ = writeln!(
            t,
            "W=$($B -X POST -d \"{{\\\"wrapped_customer_key\\\":\\\"$C\\\",\\\"wrapped_user_key\\\":\\\"$U\\\"}}\" {url}/v1/workspace-keys | field wrapped_workspace_key)"
        );
        let _ = writeln!(
            t,
            "$D -X POST -d \"{{\\\"wrapped_customer_key\\\":\\\"$C\\\",\\\"wrapped_user_key\\\":\\\"$U\\\",\\\"wrapped_workspace_key\\\":\\\"$W\\\"}}\" {url}/v1/workspace-keys/decrypt"
        );
        t
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d.push(DnType::OrganizationName, "cmx-kms development");
    d
}

fn p12_cert(der: &[u8]) -> Result<p12_keystore::Certificate, DevError> {
    p12_keystore::Certificate::from_der(der).map_err(ks_err)
}

fn ks_err(e: p12_keystore::error::Error) -> DevError {
    DevError::Keystore(e.to_string())
}
