//! The cmx-kms `kms.properties` equivalent to a legacy node: the shipped
//! template with every legacy value set in it.
//!
//! Where each value comes from:
//! - the old `kms.properties`: every key cmx-kms knows is kept with its value
//!   (the legacy `kmip.server.url`/`port` become `kms.hsm.server.url`/`port`);
//!   keys cmx-kms does not know are kept as comments at the end;
//! - `server.xml`'s TLS connector: `keystoreFile` → `kms.keystore.file`,
//!   `keystorePass` → `kms.keystore.password`, `keyPass` (if different) →
//!   `kms.keystore.key-password`, `keyAlias` → `kms.server.key.alias`,
//!   `port` → `kms.server.port`, `address` → `kms.server.address`;
//! - `setenv.sh`: `-Djgroups.tcp.address` / `-Djgroups.tcp.port` become
//!   `kms.cluster.address` / `kms.cluster.port` (and are recorded in a
//!   comment block at the top); `jgroups.xml` stays where it is and cmx-kms
//!   reads its `TCPPING initial_hosts` (`kms.distributed.cache.config.file`).
//!
//! The installer refuses (and changes nothing) when Tomcat and the old
//! `kms.properties` name two different keystores or passwords: cmx-kms
//! reads one keystore for both roles.

use std::fmt::Write as _;

use zeroize::Zeroizing;

use super::{Connector, ConnectorForm, LegacyNode, SetEnv};
use crate::paths;

/// The new configuration and what the migration did (no secrets in `notes`).
pub struct Migration {
    /// The new `kms.properties` (holds the keystore password).
    pub text: Zeroizing<String>,
    /// What was taken from where, for the plan and the log.
    pub notes: Vec<String>,
}

/// Tomcat's base directory, against which relative keystore paths resolve.
const CATALINA_BASE: &str = paths::TOMCAT_DIR;

fn tomcat_path(p: &str) -> String {
    let p = p
        .replace("${catalina.base}", CATALINA_BASE)
        .replace("${catalina.home}", CATALINA_BASE);
    if p.starts_with('/') {
        p
    } else {
        format!("{CATALINA_BASE}/{p}")
    }
}

fn conflict(tomcat: &str, key: &str, what: &str) -> String {
    format!(
        "Tomcat's server.xml ({tomcat}) and kms.properties ({key}) give different {what}. cmx-kms serves TLS and talks to the HSM from one keystore: \
         put the server entry (kmsserver) and the client entry (kmsClient) in one keystore with `keytool -importkeystore`, \
         make server.xml and kms.properties agree, and run the installer again. Nothing was changed."
    )
}

/// Compose the new configuration from `node` and the shipped `template`.
/// `header` lines (timestamp, backup location) go first, as comments.
pub fn migrate(node: &LegacyNode, template: &str, header: &[String]) -> Result<Migration, String> {
    let mut notes = Vec::new();
    let (mut set, unknown) = sort_properties(node, &mut notes);
    take_connector(&mut set, &node.connector, &mut notes)?;
    take_setenv(&mut set, &node.setenv, &mut notes);
    connector_notes(&node.connector, &mut notes);

    let mut out = String::new();
    write_header(&mut out, node, header);
    write_settings(&mut out, template, &set, &unknown);
    Ok(Migration {
        text: Zeroizing::new(out),
        notes,
    })
}

/// Settings in the order they were found; a key at most once.
#[derive(Default)]
struct Settings(Vec<(String, Zeroizing<String>)>);

impl Settings {
    fn get(&self, k: &str) -> Option<Zeroizing<String>> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, k: &str, v: &str) {
        if let Some(slot) = self.0.iter_mut().find(|(key, _)| key == k) {
            slot.1 = Zeroizing::new(v.to_owned());
        } else {
            self.0.push((k.to_owned(), Zeroizing::new(v.to_owned())));
        }
    }
}

/// The old `kms.properties` sorted into the keys cmx-kms knows (legacy
/// names renamed) and the ones it does not (kept as comments).
fn sort_properties(
    node: &LegacyNode,
    notes: &mut Vec<String>,
) -> (Settings, Vec<(String, Zeroizing<String>)>) {
    let mut set = Settings::default();
    let mut unknown = Vec::new();
    let has = |k: &str| node.properties.iter().any(|(key, _)| key == k);
    for (k, v) in &node.properties {
        let key = match k.as_str() {
            "kmip.server.url" if !has("kms.hsm.server.url") => "kms.hsm.server.url".to_owned(),
            "kmip.server.port" if !has("kms.hsm.server.port") => "kms.hsm.server.port".to_owned(),
            other => other.to_owned(),
        };
        if key != *k {
            notes.push(format!("{k} (legacy name) is written as {key}"));
        }
        if cmx_kms::config::keys::find(&key).is_some() {
            set.0.push((key, v.clone()));
        } else {
            notes.push(format!(
                "{k} is not a cmx-kms key: kept as a comment at the end of kms.properties"
            ));
            unknown.push((k.clone(), v.clone()));
        }
    }
    for d in &node.duplicates {
        notes.push(format!("{d} appeared more than once in the old kms.properties: the last value is kept (as Java did)"));
    }
    (set, unknown)
}

/// `server.xml`'s TLS connector: keystore, passwords, alias, port, address.
/// Refuses where it names another keystore or password than `kms.properties`.
fn take_connector(
    set: &mut Settings,
    c: &Connector,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    if let Some(f) = &c.keystore_file {
        take_keystore_file(set, &tomcat_path(f), notes)?;
    }
    if let Some(p) = &c.keystore_pass {
        take_passwords(set, p, c.key_pass.as_ref().map(|k| k.as_str()), notes)?;
    }
    if let Some(a) = &c.key_alias {
        set.put("kms.server.key.alias", a);
    }
    set.put("kms.server.port", &c.port.to_string());
    if let Some(a) = &c.address {
        set.put("kms.server.address", a);
    }
    Ok(())
}

fn take_keystore_file(set: &mut Settings, f: &str, notes: &mut Vec<String>) -> Result<(), String> {
    match set.get("kms.keystore.file") {
        Some(k) if k.as_str() != f => Err(conflict(
            &format!("keystoreFile {f}"),
            &format!("kms.keystore.file {}", k.as_str()),
            "keystores",
        )),
        Some(_) => Ok(()),
        None => {
            notes.push(format!("kms.keystore.file taken from server.xml: {f}"));
            set.put("kms.keystore.file", f);
            Ok(())
        }
    }
}

/// `keystorePass`, and `keyPass` where it differs from it.
fn take_passwords(
    set: &mut Settings,
    pass: &str,
    key_pass: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    match set.get("kms.keystore.password") {
        Some(k) if !k.is_empty() && k.as_str() != pass => {
            return Err(conflict(
                "keystorePass",
                "kms.keystore.password",
                "keystore passwords",
            ));
        }
        Some(k) if !k.is_empty() => {}
        _ => {
            notes.push("kms.keystore.password taken from server.xml (keystorePass)".into());
            set.put("kms.keystore.password", pass);
        }
    }
    if let Some(kp) = key_pass
        && kp != pass
    {
        match set.get("kms.keystore.key-password") {
            Some(k) if k.as_str() != kp => {
                return Err(conflict(
                    "keyPass",
                    "kms.keystore.key-password",
                    "key passwords",
                ));
            }
            _ => set.put("kms.keystore.key-password", kp),
        }
    }
    Ok(())
}

/// This node's cluster address and port: setenv.sh's -Djgroups.tcp.*.
fn take_setenv(set: &mut Settings, s: &SetEnv, notes: &mut Vec<String>) {
    if let Some(a) = &s.jgroups_address {
        set.put("kms.cluster.address", a);
        notes.push(format!(
            "kms.cluster.address taken from {} (-Djgroups.tcp.address): {a}",
            paths::SETENV_SH
        ));
    }
    if let Some(p) = &s.jgroups_port {
        set.put("kms.cluster.port", p);
        notes.push(format!(
            "kms.cluster.port taken from {} (-Djgroups.tcp.port): {p}",
            paths::SETENV_SH
        ));
    }
}

/// What was read from the connector (and what was not needed).
fn connector_notes(c: &Connector, notes: &mut Vec<String>) {
    if let Some(t) = &c.keystore_type {
        notes.push(format!(
            "server.xml's keystoreType {t} is not needed: cmx-kms tells JKS from PKCS#12 by content"
        ));
    }
    notes.push(format!(
        "from server.xml ({} form): port {}{}, keystore, password and key alias",
        match c.form {
            ConnectorForm::Attributes => "Connector attribute",
            ConnectorForm::SslHostConfig => "SSLHostConfig/Certificate",
        },
        c.port,
        c.address
            .as_ref()
            .map(|a| format!(", address {a}"))
            .unwrap_or_default()
    ));
}

/// The comment block on top: `header`, then the legacy cluster settings.
fn write_header(out: &mut String, node: &LegacyNode, header: &[String]) {
    for h in header {
        let _ = writeln!(out, "# {h}");
    }
    let s = &node.setenv;
    let _ = writeln!(out, "#");
    let _ = writeln!(
        out,
        "# Cluster settings of this node, from {} and {}.",
        paths::SETENV_SH,
        paths::JGROUPS
    );
    let _ = writeln!(
        out,
        "# This node's JGroups address and port are written below as kms.cluster.address"
    );
    let _ = writeln!(
        out,
        "# and kms.cluster.port (see docs/cluster.md); the legacy values were:"
    );
    let _ = writeln!(
        out,
        "#   jgroups.tcp.address={}",
        s.jgroups_address.as_deref().unwrap_or("(not set)")
    );
    let _ = writeln!(
        out,
        "#   jgroups.tcp.port={}",
        s.jgroups_port.as_deref().unwrap_or("(not set: 7800)")
    );
    if node.has_jgroups {
        let _ = writeln!(
            out,
            "#   TCPPING initial_hosts={} (kept in {}, which cmx-kms reads)",
            if node.initial_hosts.is_empty() {
                "(empty)".to_owned()
            } else {
                node.initial_hosts.join(",")
            },
            paths::JGROUPS
        );
    }
    if let Some(j) = &s.java_home {
        let _ = writeln!(out, "#   JAVA_HOME={j} (not used by cmx-kms)");
    }
    let _ = writeln!(out);
}

/// The template with each setting in place of its (commented) line; the
/// settings the template has no line for, then the unknown keys, at the end.
fn write_settings(
    out: &mut String,
    template: &str,
    set: &Settings,
    unknown: &[(String, Zeroizing<String>)],
) {
    let mut placed = vec![false; set.0.len()];
    for line in template.lines() {
        let t = line.trim_start();
        let body = t.strip_prefix('#').unwrap_or(t);
        let hit = set.0.iter().enumerate().find(|(i, (k, _))| {
            !placed.get(*i).copied().unwrap_or(true)
                && body
                    .strip_prefix(k.as_str())
                    .is_some_and(|r| r.starts_with('='))
        });
        match hit {
            Some((i, (k, v))) => {
                if let Some(p) = placed.get_mut(i) {
                    *p = true;
                }
                let _ = writeln!(out, "{k}={}", escape_value(v));
            }
            None => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    let rest: Vec<_> = set
        .0
        .iter()
        .zip(&placed)
        .filter(|(_, p)| !**p)
        .map(|(e, _)| e)
        .collect();
    write_section(
        out,
        "#### Migrated settings ##########################################################",
        "",
        &rest,
    );
    let unknown: Vec<_> = unknown.iter().collect();
    write_section(
        out,
        "#### Kept from the old kms.properties: not cmx-kms keys, so commented out #####",
        "#",
        &unknown,
    );
}

/// A block at the end: an empty line, `title`, then each entry as
/// `PREFIXkey=value`; nothing when there are no entries.
fn write_section(
    out: &mut String,
    title: &str,
    prefix: &str,
    entries: &[&(String, Zeroizing<String>)],
) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}");
    for (k, v) in entries {
        let _ = writeln!(out, "{prefix}{k}={}", escape_value(v));
    }
}

/// Write `v` as a `.properties` value that reads back as exactly `v`.
pub fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let n = v.chars().count();
    for (i, ch) in v.chars().enumerate() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{c}' => out.push_str("\\f"),
            ' ' if i == 0 || i + 1 == n => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
