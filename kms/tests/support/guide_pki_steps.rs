//! The guide's steps, one function each: `openssl` and `keytool` run as
//! the guide runs them, a CA, a leaf (key, CSR, certificate), its `.p12`,
//! and `keytool -list -v` read back. Part of `guide_pki.rs` (its `steps`
//! module).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use super::{Ca, Identity};

/// JVM flags that make each keytool start faster.
const JVM_FAST: [&str; 3] = [
    "-J-XX:TieredStopAtLevel=1",
    "-J-XX:+UseSerialGC",
    "-J-Xshare:auto",
];

/// Run a command, panic with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e} (is it installed and on PATH?)"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `openssl ARGS` in `dir`; `args` is split on whitespace (file names are
/// relative to `dir`, subjects contain no spaces).
pub fn openssl(dir: &Path, args: &str) -> Output {
    run(Command::new("openssl")
        .current_dir(dir)
        .args(args.split_whitespace()))
}

/// `keytool ARGS` in `dir` with fast-start JVM flags; `args` split on whitespace.
pub fn keytool(dir: &Path, args: &str) -> Output {
    run(Command::new("keytool")
        .current_dir(dir)
        .args(JVM_FAST)
        .args(args.split_whitespace()))
}

/// `keytool -list -v` of a keystore (path without spaces); returns stdout.
pub fn keytool_list_v(keystore: &Path, store_password: &str) -> String {
    let dir = keystore.parent().unwrap_or(Path::new("."));
    let ks = keystore.display();
    let out = keytool(
        dir,
        &format!("-list -v -keystore {ks} -storepass {store_password}"),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One entry of `keytool -list -v` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeytoolEntry {
    pub alias: String,
    pub entry_type: String,
    /// SHA-256 fingerprints of the entry's certificates, leaf first.
    pub sha256: Vec<String>,
}

/// Parse `keytool -list -v` output into entries (alias, type, fingerprints).
pub fn parse_keytool_list_v(text: &str) -> Vec<KeytoolEntry> {
    let mut entries: Vec<KeytoolEntry> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(alias) = line.strip_prefix("Alias name: ") {
            let (alias, entry_type, sha256) = (alias.to_owned(), String::new(), Vec::new());
            entries.push(KeytoolEntry {
                alias,
                entry_type,
                sha256,
            });
        } else if let Some(t) = line.strip_prefix("Entry type: ") {
            entries.last_mut().expect("entry").entry_type = t.to_owned();
        } else if let Some(fp) = line.strip_prefix("SHA256: ") {
            entries
                .last_mut()
                .expect("entry")
                .sha256
                .push(fp.to_owned());
        }
    }
    entries
}

pub(super) fn identity(dir: &Path, name: &str) -> Identity {
    Identity {
        name: name.to_owned(),
        key: dir.join(format!("{name}.key")),
        cert: dir.join(format!("{name}.crt")),
        p12: None,
        p12_password: String::new(),
    }
}

pub(super) fn make_ca(dir: &Path, name: &str, subj: &str) -> Ca {
    openssl(
        dir,
        &format!(
            "req -x509 -newkey rsa:2048 -nodes -sha256 -keyout {name}.key -out {name}.crt \
             -days 3650 -subj {subj} -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
    Ca {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        serial: dir.join(format!("{name}.srl")),
    }
}

/// Extension file `name.ext` for a leaf: `eku` = serverAuth / clientAuth; SAN for servers.
pub(super) fn ext_file(dir: &Path, name: &str, eku: &str) {
    let mut text = String::from("basicConstraints=CA:FALSE\n");
    text.push_str("keyUsage=critical,digitalSignature,keyEncipherment\n");
    writeln!(text, "extendedKeyUsage={eku}").unwrap();
    if eku.contains("serverAuth") {
        text.push_str("subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    }
    fs::write(dir.join(format!("{name}.ext")), text).unwrap();
}

/// Key + CSR + certificate as the guide does (`genrsa`, `req -new -sha256`,
/// then signed by the CA `ca` with `x509 -req`); `ec` makes a P-256 key instead.
pub(super) fn make_leaf(
    dir: &Path,
    name: &str,
    subj: &str,
    eku: &str,
    ca: &str,
    ec: bool,
) -> Identity {
    if ec {
        openssl(
            dir,
            &format!(
                "genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {name}.key"
            ),
        );
    } else {
        openssl(dir, &format!("genrsa -out {name}.key 2048"));
    }
    openssl(
        dir,
        &format!("req -new -sha256 -key {name}.key -out {name}.csr -subj {subj}"),
    );
    ext_file(dir, name, eku);
    openssl(
        dir,
        &format!(
            "x509 -req -sha256 -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -CAserial {ca}.srl \
             -CAcreateserial -days 825 -extfile {name}.ext -out {name}.crt"
        ),
    );
    identity(dir, name)
}

/// `openssl pkcs12 -export -inkey K -in CHAIN -name N -out N.p12` (guide step 7).
pub(super) fn export_p12(dir: &Path, id: &mut Identity) {
    let name = &id.name;
    let password = format!("{name}Pwd");
    openssl(
        dir,
        &format!(
            "pkcs12 -export -inkey {name}.key -in {name}.crt -name {name} -out {name}.p12 \
             -passout pass:{password}"
        ),
    );
    id.p12 = Some(dir.join(format!("{name}.p12")));
    id.p12_password = password;
}

pub(super) fn guide_subject(cn: &str) -> String {
    format!("/C=US/ST=MyState/O=MyCorp/OU=MyOU/CN={cn}")
}
