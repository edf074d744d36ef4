//! Test PKI and keystore made exactly the way the Connected-KMS install guide
//! makes them: real `openssl` for keys, CSRs, certificates and `.p12` files,
//! real `keytool` for `kmsKeystore.jks`.
//!
//! Include it from an integration test with
//! `#[path = "support/guide_pki.rs"] mod guide_pki;` (or `mod support;` and
//! `support::guide_pki`), then call [`GuidePki::generate`] with a temp dir.
//!
//! Layout of the directory after `generate` (all paths are also fields):
//!
//! | file | what it is |
//! |---|---|
//! | `ca.crt`, `ca.key` | "client CA" (`CN=cmxTestCA`): signs kmsServer, cmxBackend, cmxDevice* |
//! | `kmipSigningCA.crt`, `kmipSigningCA.key` | the separate "HSM CA": signs kmsClient and the HSM server cert; imported as `kmipSigningCA` |
//! | `kmsServer.{key,csr,crt,p12}` | RSA-2048, `CN=localhost`, SAN `DNS:localhost,IP:127.0.0.1`, EKU serverAuth, by the client CA |
//! | `kmsClient.{key,csr,crt,p12}` | RSA-2048, `CN=kmsClient`, EKU clientAuth, by the HSM CA (the HSM trusts it) |
//! | `cmxBackend.{key,csr,crt,p12}` | RSA-2048, `CN=cmxBackend, OU=MyOU, O=MyCorp, ST=MyState, C=US`, EKU clientAuth, by the client CA |
//! | `cmxDevice.{key,csr,crt,p12}` | the same for `cmxDevice` (agents use `cmxDevice.p12`) |
//! | `<extra>.{key,csr,crt,p12}` | one per extra device alias (e.g. `cmxDevice20190512`), like cmxDevice |
//! | `hsmServer.{key,crt}` | P-256 ECDSA, `CN=localhost`, SAN localhost/127.0.0.1, EKU serverAuth, by the HSM CA (PyKMIP, TESTBED 1.6) |
//! | `kmsKeystore.jks` | the keystore: private keys `kmsClient`, `kmsServer`; trusted certs `kmipSigningCA`, `cmxBackend`, `cmxDevice`, extras |
//!
//! Every `.key` is unencrypted PEM (PKCS#8, as OpenSSL 3 `genrsa` writes it).
//! Each `.p12` was made with `openssl pkcs12 -export` (OpenSSL 3 defaults:
//! PBES2/AES-256) with password `<name>Pwd`, friendly name = the name.
//! The keystore type follows [`StoreType`]; `keytool` writes aliases in lower
//! case, so `keytool -list` shows `kmsserver`.
//!
//! [`GuidePki::make_client`] adds further client certificates (not imported):
//! signed by the client CA, self-signed, signed by the HSM CA, or expired
//! (made with `openssl ca -startdate/-enddate`, since OpenSSL 3.0's `x509`
//! has no `-not_before`).
//!
//! `keytool` starts a JVM (~0.3-1 s per call); a default PKI takes 5 calls.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

// The openssl and keytool steps, one function each.
#[path = "guide_pki_steps.rs"]
mod steps;

// The steps the tests call themselves; not every test binary uses each.
#[allow(unused_imports)]
pub use steps::{KeytoolEntry, keytool, keytool_list_v, openssl, parse_keytool_list_v, run};
use steps::{export_p12, guide_subject, identity, make_ca, make_leaf};

/// Password of the keystore unless [`PkiOptions::store_password`] says otherwise.
pub const DEFAULT_STORE_PASSWORD: &str = "kmsKeystorePwd";

/// Which kind of store keytool writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StoreType {
    /// No `-storetype`: PKCS#12 as Java 9+ writes it (PBES2/AES-256, SHA-256 MAC).
    #[default]
    DefaultPkcs12,
    /// `-deststoretype JKS` (magic FEEDFEED).
    Jks,
    /// Default type written with `keytool -J-Dkeystore.pkcs12.legacy`
    /// (RC2-40 certificates, 3DES keys, SHA-1 MAC: what Java 8 wrote).
    LegacyPkcs12,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct PkiOptions {
    pub store_type: StoreType,
    /// Extra device identities imported as trusted certs, e.g. `cmxDevice20190512`.
    pub extra_device_aliases: Vec<String>,
    pub store_password: String,
    /// Key password of the private key entries, when it differs from the
    /// store password. Only JKS can store that (keytool ignores it for PKCS#12).
    pub key_password: Option<String>,
}

impl Default for PkiOptions {
    fn default() -> Self {
        Self {
            store_type: StoreType::default(),
            extra_device_aliases: Vec::new(),
            store_password: DEFAULT_STORE_PASSWORD.to_owned(),
            key_password: None,
        }
    }
}

/// A CA: certificate and key (PEM).
#[derive(Clone, Debug)]
pub struct Ca {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: PathBuf,
}

/// One identity: key, certificate, and (for the guide's four) a `.p12`.
#[derive(Clone, Debug)]
pub struct Identity {
    /// File stem and the alias used in the keystore.
    pub name: String,
    pub key: PathBuf,
    pub cert: PathBuf,
    /// `openssl pkcs12 -export` output, if made.
    pub p12: Option<PathBuf>,
    /// Password of [`Identity::p12`].
    pub p12_password: String,
}

/// Everything [`GuidePki::generate`] made.
#[derive(Clone, Debug)]
pub struct GuidePki {
    pub dir: PathBuf,
    pub options: PkiOptions,
    /// The client CA ("test CA").
    pub ca: Ca,
    /// The HSM CA (`kmipSigningCA` in the keystore).
    pub hsm_ca: Ca,
    pub kms_server: Identity,
    pub kms_client: Identity,
    pub cmx_backend: Identity,
    pub cmx_device: Identity,
    pub extra_devices: Vec<Identity>,
    /// P-256 server certificate for the KMIP server (PyKMIP), signed by the HSM CA.
    pub hsm_server: Identity,
    /// `kmsKeystore.jks`.
    pub keystore: PathBuf,
    pub store_password: String,
    /// Key password of `kmsServer`/`kmsClient` (= store password unless set).
    pub key_password: String,
}

/// Kinds of extra client certificate for [`GuidePki::make_client`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// Signed by the client CA but not imported into the keystore.
    SignedByClientCa,
    /// Self-signed.
    SelfSigned,
    /// Signed by the HSM CA (must never be accepted as a client).
    SignedByHsmCa,
    /// Signed by the client CA, validity 2020-01-01 .. 2020-02-01.
    Expired,
}

impl GuidePki {
    /// Import `cert` into the keystore as a trusted certificate entry
    /// `alias` (`keytool -import`), as the guide pins a client.
    pub fn import_certificate(&self, alias: &str, cert: &Path) {
        keytool(
            &self.dir,
            &format!(
                "-import -noprompt -alias {alias} -file {} -keystore {} -storepass {}",
                cert.display(),
                self.keystore.display(),
                self.store_password
            ),
        );
    }

    /// Make the PKI and the keystore in `dir` (which must exist; its path
    /// must not contain spaces, as for every temp dir).
    pub fn generate(dir: &Path, options: PkiOptions) -> GuidePki {
        assert!(
            options.key_password.is_none() || options.store_type == StoreType::Jks,
            "a key password different from the store password needs StoreType::Jks"
        );
        assert!(
            !dir.display().to_string().contains(' '),
            "no spaces in {}",
            dir.display()
        );
        let ca = make_ca(dir, "ca", "/C=US/O=MyCorp/CN=cmxTestCA");
        let hsm_ca = make_ca(dir, "kmipSigningCA", "/C=US/O=HsmVendor/CN=kmipSigningCA");

        let client = |name: &str, ca: &str| {
            let mut id = make_leaf(dir, name, &guide_subject(name), "clientAuth", ca, false);
            export_p12(dir, &mut id);
            id
        };
        let mut kms_server = make_leaf(
            dir,
            "kmsServer",
            &guide_subject("localhost"),
            "serverAuth",
            "ca",
            false,
        );
        export_p12(dir, &mut kms_server);
        let kms_client = client("kmsClient", "kmipSigningCA");
        let cmx_backend = client("cmxBackend", "ca");
        let cmx_device = client("cmxDevice", "ca");
        let extra_devices = options
            .extra_device_aliases
            .iter()
            .map(|a| client(a, "ca"))
            .collect();
        let hsm_server = make_leaf(
            dir,
            "hsmServer",
            "/CN=localhost",
            "serverAuth",
            "kmipSigningCA",
            true,
        );

        let store_password = options.store_password.clone();
        let key_password = options
            .key_password
            .clone()
            .unwrap_or_else(|| store_password.clone());
        let pki = GuidePki {
            dir: dir.to_owned(),
            options,
            ca,
            hsm_ca,
            kms_server,
            kms_client,
            cmx_backend,
            cmx_device,
            extra_devices,
            hsm_server,
            keystore: dir.join("kmsKeystore.jks"),
            store_password,
            key_password,
        };
        pki.build_keystore();
        pki
    }

    /// Extra `-J...`/`-storetype` arguments for writes to the keystore.
    fn store_args(&self, dest: bool) -> &'static str {
        match (self.options.store_type, dest) {
            (StoreType::DefaultPkcs12, _) => "",
            (StoreType::Jks, true) => "-deststoretype JKS",
            (StoreType::Jks, false) => "-storetype JKS",
            (StoreType::LegacyPkcs12, _) => "-J-Dkeystore.pkcs12.legacy",
        }
    }

    /// Guide "Create the Connected-KMS keystore", steps 1-5 (with `-noprompt`).
    fn build_keystore(&self) {
        let (dir, ks) = (&self.dir, "kmsKeystore.jks");
        let (sp, kp) = (&self.store_password, &self.key_password);
        for id in [&self.kms_client, &self.kms_server] {
            let (name, pw) = (&id.name, &id.p12_password);
            let extra = self.store_args(true);
            keytool(
                dir,
                &format!(
                    "{extra} -importkeystore -noprompt -srckeystore {name}.p12 -srcstoretype PKCS12 \
                     -srckeypass {pw} -srcstorepass {pw} -alias {name} -deststorepass {sp} \
                     -destkeypass {kp} -destkeystore {ks}"
                ),
            );
        }
        let mut imports =
            vec!["-trustcacerts -alias kmipSigningCA -file kmipSigningCA.crt".to_owned()];
        for id in [&self.cmx_backend, &self.cmx_device]
            .into_iter()
            .chain(&self.extra_devices)
        {
            imports.push(format!("-alias {0} -file {0}.crt", id.name));
        }
        for import in imports {
            let extra = self.store_args(false);
            keytool(
                dir,
                &format!("{extra} -import -noprompt {import} -keystore {ks} -storepass {sp}"),
            );
        }
    }

    /// All identities the guide makes (kmsServer, kmsClient, cmxBackend, cmxDevice, extras).
    pub fn identities(&self) -> Vec<&Identity> {
        let mut all = vec![
            &self.kms_server,
            &self.kms_client,
            &self.cmx_backend,
            &self.cmx_device,
        ];
        all.extend(self.extra_devices.iter());
        all
    }

    /// Make a further client certificate `name` (`CN=name`, EKU clientAuth)
    /// of the given kind, with a `.p12` (password `<name>Pwd`); not imported.
    pub fn make_client(&self, name: &str, kind: ClientKind) -> Identity {
        let (dir, subj) = (&self.dir, guide_subject(name));
        let mut id = match kind {
            ClientKind::SignedByClientCa => make_leaf(dir, name, &subj, "clientAuth", "ca", false),
            ClientKind::SignedByHsmCa => {
                make_leaf(dir, name, &subj, "clientAuth", "kmipSigningCA", false)
            }
            ClientKind::SelfSigned => {
                openssl(dir, &format!("genrsa -out {name}.key 2048"));
                openssl(
                    dir,
                    &format!(
                        "req -x509 -new -sha256 -key {name}.key -out {name}.crt -days 825 \
                         -subj {subj} -addext extendedKeyUsage=clientAuth"
                    ),
                );
                identity(dir, name)
            }
            ClientKind::Expired => {
                self.make_with_dates(name, &subj, "20200101000000Z", "20200201000000Z")
            }
        };
        export_p12(dir, &mut id);
        id
    }

    /// A client certificate like [`ClientKind::SignedByClientCa`] (not
    /// imported) that is valid from a minute ago until `not_after` (seconds
    /// since the Unix epoch), for tests that wait for it to expire.
    pub fn make_client_valid_until(&self, name: &str, not_after: i64) -> Identity {
        let stamp = |t: i64| {
            let out = run(Command::new("date")
                .arg("-u")
                .arg(format!("-d@{t}"))
                .arg("+%Y%m%d%H%M%SZ"));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let subj = guide_subject(name);
        let mut id = self.make_with_dates(name, &subj, &stamp(now - 60), &stamp(not_after));
        export_p12(&self.dir, &mut id);
        id
    }

    /// `openssl ca` with explicit dates (OpenSSL 3.0 `x509 -req` cannot).
    fn make_with_dates(&self, name: &str, subj: &str, start: &str, end: &str) -> Identity {
        let dir = &self.dir;
        let cadir = format!("{name}.ca");
        fs::create_dir_all(dir.join(&cadir)).unwrap();
        fs::write(dir.join(&cadir).join("index.txt"), "").unwrap();
        fs::write(dir.join(&cadir).join("serial"), "1000\n").unwrap();
        let conf = format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {cadir}/index.txt\nnew_certs_dir = {cadir}\n\
             serial = {cadir}/serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n\
             x509_extensions = ext\n[p]\ncommonName = supplied\ncountryName = optional\n\
             stateOrProvinceName = optional\norganizationName = optional\n\
             organizationalUnitName = optional\n[ext]\nbasicConstraints = CA:FALSE\n\
             keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = clientAuth\n"
        );
        fs::write(dir.join(&cadir).join("ca.cnf"), conf).unwrap();
        openssl(dir, &format!("genrsa -out {name}.key 2048"));
        openssl(
            dir,
            &format!("req -new -sha256 -key {name}.key -out {name}.csr -subj {subj}"),
        );
        openssl(
            dir,
            &format!(
                "ca -batch -notext -preserveDN -config {cadir}/ca.cnf -cert ca.crt -keyfile ca.key \
                 -in {name}.csr -out {name}.crt -startdate {start} -enddate {end}"
            ),
        );
        identity(dir, name)
    }
}
