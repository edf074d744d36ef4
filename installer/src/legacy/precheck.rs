//! Before a migration changes anything: can cmx-kms use the node's keystore
//! with the migrated configuration? The Java node may hold a keystore
//! cmx-kms does not read (JCEKS), name one that is gone, or carry a wrong
//! password; found only after Tomcat is retired, that leaves the node
//! serving nothing. Checked here with cmx-kms's own keystore reader, as
//! `cmx-kms check-config` would: the file opens with the password (and the
//! key password), and the entries the configuration names are there
//! (the server key; with a KMIP HSM also the client key and the HSM's CA).

use std::collections::BTreeMap;

use cmx_kms::config::defaults;
use cmx_kms::keystore::KeyStore;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::fsops::resolve_in_root;
use crate::paths::{self, Root};

/// The last value of each key of the migrated configuration text.
fn values(text: &str) -> BTreeMap<String, Zeroizing<String>> {
    let lexed = cmx_kms::config::properties::lex(text);
    lexed
        .entries
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect()
}

/// Open the keystore the migrated configuration `text` names (node paths
/// taken under `root`). `Err` lists what stops cmx-kms from using it, each
/// with the key to set and what to do.
pub fn keystore(root: &Root, text: &str) -> Result<(), Vec<String>> {
    let v = values(text);
    let get = |k: &str| {
        v.get(k)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let mut problems = Vec::new();
    let file = get("kms.keystore.file");
    let password = v
        .get("kms.keystore.password")
        .filter(|p| !p.is_empty())
        .map(|p| SecretString::from(p.as_str().to_owned()));
    if file.is_none() {
        problems.push(
            "kms.keystore.file: no keystore is named (neither kms.properties nor server.xml's keystoreFile): \
             set kms.keystore.file in the old kms.properties"
                .to_owned(),
        );
    }
    if password.is_none() {
        problems.push(
            "kms.keystore.password: no keystore password (neither kms.properties nor server.xml's keystorePass): \
             set kms.keystore.password in the old kms.properties"
                .to_owned(),
        );
    }
    let (Some(file), Some(password)) = (file, password) else {
        return Err(problems);
    };
    let node = if file.starts_with('/') {
        file
    } else {
        format!("{}/{file}", paths::CONF_DIR)
    };
    let key_password = v
        .get("kms.keystore.key-password")
        .filter(|p| !p.is_empty())
        .map(|p| SecretString::from(p.as_str().to_owned()));
    let host = resolve_in_root(root, &node);
    let bytes = match crate::safefs::read_nofollow(&host) {
        Ok(b) => Zeroizing::new(b),
        Err(e) => {
            return Err(vec![format!(
                "kms.keystore.file: keystore {node}: {e}: put the keystore there, or set kms.keystore.file \
                 (or server.xml's keystoreFile) to its path"
            )]);
        }
    };
    let ks = KeyStore::from_bytes(&bytes, &password, key_password.as_ref()).map_err(|e| {
        vec![format!(
            "keystore {node}: {e}{}",
            match e {
                cmx_kms::KeystoreError::WrongStorePassword { .. } => {
                    " (kms.keystore.password, or server.xml's keystorePass)"
                }
                _ => "",
            }
        )]
    })?;
    entries(&ks, &get, &node)
}

/// The entries the configuration needs are in the keystore, of the right kind.
fn entries(
    ks: &KeyStore,
    get: &dyn Fn(&str) -> Option<String>,
    node: &str,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let alias = |k: &str, default: &str| get(k).unwrap_or_else(|| default.to_owned());
    let server = alias("kms.server.key.alias", defaults::SERVER_KEY_ALIAS);
    if let Err(e) = ks.private_key(&server) {
        problems.push(format!(
            "kms.server.key.alias={server} (server.xml's keyAlias): keystore {node}: {e}"
        ));
    }
    let kmip = get("kms.hsm.protocol").is_none_or(|p| p.eq_ignore_ascii_case("kmip1"));
    if kmip {
        let client = alias("kms.keystore.alias", defaults::KEYSTORE_ALIAS);
        if let Err(e) = ks.private_key(&client) {
            problems.push(format!("kms.keystore.alias={client}: keystore {node}: {e}"));
        }
        let ca = alias("kms.hsm.ca.alias", defaults::HSM_CA_ALIAS);
        if let Err(e) = ks.certificate(&ca) {
            problems.push(format!("kms.hsm.ca.alias={ca}: keystore {node}: {e}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
