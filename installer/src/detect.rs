//! What the installer finds on a node, before anything is decided: the
//! [`NodeFacts`] a plan is built from ([`crate::plan::build`], which does no
//! I/O). Everything here only reads: the rpm database, the installer's
//! state, the package file, the service manager, the Tomcat node's files,
//! who listens on the service's port, and the clock.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::InstallError;
use crate::fsops;
use crate::legacy::{self, LegacyNode};
use crate::options::Options;
use crate::paths::{self, Root};
use crate::port::{self, Listeners};
use crate::rpm::{PackageInfo, Rpm};
use crate::service::{self, ServiceManager};
use crate::state::{self, State};

/// The port cmx-kms listens on when kms.properties names none.
pub const DEFAULT_PORT: u16 = 8443;

/// The service manager and what it says about the cmx-kms unit.
#[derive(Clone, Debug)]
pub struct ServiceFacts {
    /// `systemd` or `direct`.
    pub manager: &'static str,
    /// It starts services at boot (enabling means something).
    pub manages_boot: bool,
    pub active: bool,
    pub enabled: bool,
}

/// A Tomcat-based Connected-KMS node, or a migration of one left unfinished.
#[derive(Debug)]
pub struct LegacyFacts {
    /// The old node's settings (from the backup when resuming).
    pub node: LegacyNode,
    /// Node path of the legacy backup: the unfinished migration's, or a new one.
    pub backup: String,
    /// An earlier run was interrupted after backing up.
    pub resuming: bool,
    pub tomcat_active: bool,
    /// Whether systemd enables Tomcat at boot (`false` off systemd or off `/`).
    pub tomcat_enabled: bool,
    /// `kms.war` exists (a file or a link).
    pub war_present: bool,
    /// Installed packages matching `tomcat*`.
    pub tomcat_packages: Vec<PackageInfo>,
    /// Tomcat's directory exists.
    pub tomcat_dir: bool,
    /// `/usr/share/kms/conf` exists.
    pub conf_dir: bool,
    /// Header lines for the migrated kms.properties.
    pub migration_header: Vec<String>,
}

/// What `--rollback` could go back to.
#[derive(Clone, Debug)]
pub struct RollbackFacts {
    /// The kept package of the version before the current one, if its file is there.
    pub previous: Option<(PathBuf, PackageInfo)>,
    /// The configuration backup of the last upgrade, if its directory is there.
    pub conf_backup: Option<String>,
}

/// Who listens on the port the service will use.
#[derive(Clone, Debug)]
pub struct PortFacts {
    pub port: u16,
    pub listeners: Listeners,
}

/// Everything a plan is decided from.
#[derive(Debug)]
pub struct NodeFacts {
    /// The root is `/` (the running system).
    pub system_root: bool,
    pub service: ServiceFacts,
    /// Our package, when rpm lists it *and* its files are here.
    pub installed: Option<PackageInfo>,
    /// Our package as rpm lists it, files or not (a migration upgrades it).
    pub installed_in_rpm: Option<PackageInfo>,
    /// The package file to install and what it holds (`None` with `--rollback`).
    pub package: Option<(PathBuf, PackageInfo)>,
    /// The installer's kept copy of the installed version's package.
    pub kept_current: Option<PathBuf>,
    /// Present when the node is (or was being migrated from) a Tomcat node.
    pub legacy: Option<LegacyFacts>,
    /// Present with `--rollback`.
    pub rollback: Option<RollbackFacts>,
    /// The service's port and its listeners (`None` with `--no-start`).
    pub port: Option<PortFacts>,
    /// Some owner or mode under the root is not as it must be.
    pub needs_fixes: bool,
    /// Node path a new configuration backup would take.
    pub next_conf_backup: String,
    /// Node path of the newest copy an uninstall kept (`.../uninstall-<time>`), if any.
    pub kept_uninstall: Option<String>,
}

/// Gather the facts of the node under `opts.root`.
pub fn facts(
    opts: &Options,
    rpm: &Rpm,
    svc: &dyn ServiceManager,
) -> Result<NodeFacts, InstallError> {
    let root = &opts.root;
    let st = State::load(root)?;
    let installed_in_rpm = rpm.installed(paths::PACKAGE)?;
    let installed = installed_in_rpm
        .clone()
        .filter(|_| root.path(paths::CMX_KMS).exists());
    let service = ServiceFacts {
        manager: svc.name(),
        manages_boot: svc.manages_boot(),
        active: svc.is_active(paths::SERVICE)?,
        enabled: svc.is_enabled(paths::SERVICE)?,
    };
    let (package, legacy, rollback) = if opts.rollback {
        let rollback = installed
            .is_some()
            .then(|| rollback_facts(root, rpm, &st))
            .transpose()?;
        (None, None, rollback)
    } else {
        let file = find_package(opts.package.as_deref())?;
        let info = rpm.file_info(&file)?;
        let migrating = st.get(state::key::MIGRATION).map(str::to_owned);
        let legacy = if migrating.is_some() || (installed.is_none() && legacy::detect(root)) {
            Some(legacy_facts(root, rpm, svc, migrating)?)
        } else {
            None
        };
        (Some((file, info)), legacy, None)
    };
    let port = (!opts.no_start).then(|| {
        let (port, address) = match &legacy {
            Some(l) => (legacy_port(&l.node), None),
            None => (
                configured_port(root, DEFAULT_PORT),
                configured_address(root),
            ),
        };
        PortFacts {
            port,
            listeners: port::listeners(port, address),
        }
    });
    Ok(NodeFacts {
        system_root: root.is_system(),
        service,
        kept_current: kept_package(root, &st, state::key::CURRENT),
        installed,
        installed_in_rpm,
        package,
        legacy,
        rollback,
        port,
        needs_fixes: needs_fixes(root),
        next_conf_backup: fsops::next_conf_backup(root),
        kept_uninstall: kept_uninstall(root),
    })
}

/// The newest `uninstall-<time>` folder of the backups that holds a copy of
/// the configuration (the time stamps sort by name).
fn kept_uninstall(root: &Root) -> Option<String> {
    let rd = std::fs::read_dir(root.path(paths::BACKUP_DIR)).ok()?;
    rd.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("uninstall-"))
        .map(|n| format!("{}/{n}", paths::BACKUP_DIR))
        .filter(|node| root.path(&format!("{node}/conf")).is_dir())
        .max()
}

fn rollback_facts(root: &Root, rpm: &Rpm, st: &State) -> Result<RollbackFacts, InstallError> {
    let previous = match kept_package(root, st, state::key::PREVIOUS) {
        Some(p) => {
            let info = rpm.file_info(&p)?;
            Some((p, info))
        }
        None => None,
    };
    let conf_backup = st
        .get(state::key::BACKUP)
        .filter(|b| root.path(b).is_dir())
        .map(str::to_owned);
    Ok(RollbackFacts {
        previous,
        conf_backup,
    })
}

fn legacy_facts(
    root: &Root,
    rpm: &Rpm,
    svc: &dyn ServiceManager,
    resuming: Option<String>,
) -> Result<LegacyFacts, InstallError> {
    let (base, backup) = match &resuming {
        Some(b) => (Root::new(&root.path(b))?, b.clone()),
        None => (root.clone(), legacy_backup_dir()),
    };
    let node = legacy::read(&base)?;
    let tomcat_enabled =
        root.is_system() && svc.name() == "systemd" && svc.is_enabled(paths::TOMCAT_SERVICE)?;
    Ok(LegacyFacts {
        node,
        migration_header: migration_header(&backup),
        backup,
        resuming: resuming.is_some(),
        tomcat_active: svc.is_active(paths::TOMCAT_SERVICE)?,
        tomcat_enabled,
        war_present: std::fs::symlink_metadata(root.path(paths::KMS_WAR)).is_ok(),
        tomcat_packages: rpm.installed_matching("tomcat*")?,
        tomcat_dir: root.path(paths::TOMCAT_DIR).exists(),
        conf_dir: root.path(paths::CONF_DIR).exists(),
    })
}

/// The port a migrated node will listen on: Tomcat's connector port, unless
/// the old kms.properties already names one.
pub fn legacy_port(node: &LegacyNode) -> u16 {
    node.properties
        .iter()
        .find(|(k, _)| k == "kms.server.port")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(node.connector.port)
}

/// The package file: `--package`, or the single `cmx-kms-server-*.rpm` next to the program.
pub fn find_package(given: Option<&Path>) -> Result<PathBuf, InstallError> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(InstallError::Package(format!(
                "--package {}: no such file; nothing was changed",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| InstallError::Package(format!("cannot locate ckms-install itself: {e}")))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(InstallError::io("read", dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cmx-kms-server-") && n.ends_with(".rpm"))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.swap_remove(0)),
        0 => Err(InstallError::Package(format!(
            "no cmx-kms-server-*.x86_64.rpm next to ckms-install in {}: the package is incomplete. \
             Extract cmx-kms-server-rpm.tar.gz again (it holds the RPM, ckms-install, ckms-uninstall, \
             CMX-KMS-Installer.sh and CMX-KMS-Uninstaller.sh) and run CMX-KMS-Installer.sh from there. Nothing was changed.",
            dir.display()
        ))),
        _ => Err(InstallError::Package(format!(
            "several cmx-kms-server packages in {}: keep one, or name it with --package. Nothing was changed.",
            dir.display()
        ))),
    }
}

/// The port the service will listen on: `kms.server.port` of the node's
/// configuration, else `fallback`.
pub fn configured_port(root: &Root, fallback: u16) -> u16 {
    configured(root, "kms.server.port").unwrap_or(fallback)
}

/// `kms.server.address` in the node's kms.properties, if it is an IP
/// address (unset, or a host name: `None`, every address counts).
fn configured_address(root: &Root) -> Option<std::net::IpAddr> {
    configured(root, "kms.server.address")
}

/// The last value of `key` in the node's kms.properties, parsed (the text
/// itself stays in the zeroizing entry).
fn configured<T: std::str::FromStr>(root: &Root, key: &str) -> Option<T> {
    std::fs::read(root.path(paths::PROPERTIES))
        .ok()
        .and_then(|b| {
            let d = cmx_kms::config::properties::decode(&b);
            cmx_kms::config::properties::lex(&d.text)
                .entries
                .into_iter()
                .rev()
                .find(|e| e.key == key)
                .and_then(|e| e.value.trim().parse().ok())
        })
}

fn kept_package(root: &Root, state: &State, key: &str) -> Option<PathBuf> {
    let name = state.get(key)?;
    let p = root.path(&format!("{}/{name}", paths::PACKAGES_DIR));
    p.is_file().then_some(p)
}

/// Header lines of a migrated configuration.
pub fn migration_header(backup: &str) -> Vec<String> {
    vec![
        format!(
            "Written by ckms-install on {} from the Tomcat-based Connected-KMS of this node.",
            crate::clock::timestamp(SystemTime::now())
        ),
        format!(
            "The original files are kept, untouched, in {backup} and {}.",
            paths::CONF_ORIG
        ),
    ]
}

/// Node path of a new legacy backup.
pub fn legacy_backup_dir() -> String {
    format!(
        "{}/legacy-{}",
        paths::BACKUP_DIR,
        crate::clock::stamp(SystemTime::now())
    )
}

/// Does the root need any owner or mode change?
pub fn needs_fixes(root: &Root) -> bool {
    match service::service_ids(root) {
        Ok(ids) => !fsops::permission_fixes(root, ids).is_empty(),
        Err(_) => true,
    }
}
