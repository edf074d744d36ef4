//! A node of the Tomcat-based Connected-KMS: detecting it, reading its
//! files (`server.xml`, `setenv.sh`, `jgroups.xml`, `kms.properties`), and
//! writing the equivalent cmx-kms configuration ([`migrate`]).

pub mod migrate;
pub mod precheck;
pub mod server_xml;
pub mod setenv;

use std::fs;

use zeroize::Zeroizing;

use crate::InstallError;
use crate::fsops::resolve_in_root;
use crate::paths::{self, Root};

pub use server_xml::{Connector, ConnectorForm};
pub use setenv::SetEnv;

/// Does the root look like a Tomcat-based Connected-KMS node? (`kms.war`
/// linked into Tomcat, or Tomcat's `server.xml` next to a `kms.properties`
/// while no cmx-kms binary is installed.)
pub fn detect(root: &Root) -> bool {
    let war = fs::symlink_metadata(root.path(paths::KMS_WAR)).is_ok();
    let ours = root.path(paths::CMX_KMS).exists();
    let server_xml = resolve_in_root(root, paths::SERVER_XML).exists();
    let props = root.path(paths::PROPERTIES).exists();
    war || (!ours && server_xml && props)
}

/// What a legacy node's files say. Passwords are zeroized; `Debug` hides them.
pub struct LegacyNode {
    /// The TLS connector of `server.xml`.
    pub connector: Connector,
    /// `setenv.sh`, if there is one.
    pub setenv: SetEnv,
    /// `TCPPING initial_hosts` of `jgroups.xml` (empty if none or no file).
    pub initial_hosts: Vec<String>,
    /// `jgroups.xml` exists.
    pub has_jgroups: bool,
    /// Entries of the old `kms.properties`, in file order (the last of duplicates wins).
    pub properties: Vec<(String, Zeroizing<String>)>,
    /// Keys that appeared more than once in the old `kms.properties`.
    pub duplicates: Vec<String>,
    /// Where `kms.war` points, if it is a link.
    pub war_target: Option<String>,
}

impl std::fmt::Debug for LegacyNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyNode")
            .field("connector", &self.connector)
            .field("setenv", &self.setenv)
            .field("initial_hosts", &self.initial_hosts)
            .field(
                "properties",
                &self.properties.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn legacy_err(path: &str, what: String) -> InstallError {
    InstallError::Legacy(format!(
        "cannot take over this Tomcat-based node: {path}: {what}. Nothing was changed."
    ))
}

/// A file of the KMS configuration directory: `None` if missing, refused
/// if it is a link or not a regular file.
fn read_own(
    host: &std::path::Path,
    node: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, InstallError> {
    match fs::symlink_metadata(host) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(legacy_err(
                node,
                "it is a symbolic link; the installer reads the KMS's own files only as regular files. \
                 Replace the link by a copy of the file it points to (cp --remove-destination) and run the installer again"
                    .into(),
            ));
        }
        _ => {}
    }
    crate::safefs::read_nofollow(host)
        .map(|b| Some(Zeroizing::new(b)))
        .map_err(|e| legacy_err(node, format!("cannot read it as a regular file ({e})")))
}

/// Read the legacy files under `base`: the node's root, or the backup a
/// migration in progress made of them (same layout).
pub fn read(base: &Root) -> Result<LegacyNode, InstallError> {
    let server_xml = resolve_in_root(base, paths::SERVER_XML);
    let text = fs::read(&server_xml)
        .map_err(|e| legacy_err(paths::SERVER_XML, format!("cannot read it ({e})")))?;
    let text = String::from_utf8(text)
        .map_err(|_| legacy_err(paths::SERVER_XML, "it is not UTF-8 text".into()))?;
    let connector = server_xml::read(&text).map_err(|e| legacy_err(paths::SERVER_XML, e))?;

    let setenv = match fs::read_to_string(resolve_in_root(base, paths::SETENV_SH)) {
        Ok(t) => setenv::read_setenv(&t),
        Err(_) => SetEnv::default(),
    };
    // The KMS configuration directory may belong to tomcat: its files are
    // read without following a link (a link there could make root copy any
    // file of the node into the new configuration, readable by kms).
    let jg = base.path(paths::JGROUPS);
    let (has_jgroups, initial_hosts) = match read_own(&jg, paths::JGROUPS)? {
        Some(b) => (
            true,
            setenv::read_initial_hosts(&String::from_utf8_lossy(&b))
                .map_err(|e| legacy_err(paths::JGROUPS, e))?,
        ),
        None => (false, Vec::new()),
    };

    let props = base.path(paths::PROPERTIES);
    let bytes = read_own(&props, paths::PROPERTIES)?
        .ok_or_else(|| legacy_err(paths::PROPERTIES, "it does not exist".into()))?;
    let decoded = cmx_kms::config::properties::decode(&bytes);
    let lexed = cmx_kms::config::properties::lex(&decoded.text);
    if let Some(e) = lexed.errors.first() {
        return Err(legacy_err(
            paths::PROPERTIES,
            format!(
                "line {}: {} (fix the line and run the installer again)",
                e.line, e.kind
            ),
        ));
    }
    let mut properties: Vec<(String, Zeroizing<String>)> = Vec::new();
    let mut duplicates = Vec::new();
    for e in lexed.entries {
        if let Some(slot) = properties.iter_mut().find(|(k, _)| *k == e.key) {
            duplicates.push(e.key.clone());
            slot.1 = e.value;
        } else {
            properties.push((e.key, e.value));
        }
    }
    let war_target = fs::read_link(base.path(paths::KMS_WAR))
        .ok()
        .map(|t| t.display().to_string());
    Ok(LegacyNode {
        connector,
        setenv,
        initial_hosts,
        has_jgroups,
        properties,
        duplicates,
        war_target,
    })
}
