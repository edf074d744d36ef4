//! Paths on a node (kept from the original product), and the root they live under.

use std::path::{Path, PathBuf};

/// Name of the package, as the original product named it.
pub const PACKAGE: &str = "cmx-kms-server";
/// The systemd unit (without `.service`) and the direct-process service name.
pub const SERVICE: &str = "cmx-kms";
/// The service user and group, created by the package's `%pre` scriptlet.
pub const SERVICE_USER: &str = "kms";
/// The Tomcat service of a legacy node.
pub const TOMCAT_SERVICE: &str = "tomcat";

/// Application directory.
pub const APP_DIR: &str = "/usr/share/kms";
/// Binaries.
pub const BIN_DIR: &str = "/usr/share/kms/bin";
/// The server binary.
pub const CMX_KMS: &str = "/usr/share/kms/bin/cmx-kms";
/// Configuration directory.
pub const CONF_DIR: &str = "/usr/share/kms/conf";
/// The configuration file.
pub const PROPERTIES: &str = "/usr/share/kms/conf/kms.properties";
/// The keystore, where the guide puts it.
pub const KEYSTORE: &str = "/usr/share/kms/conf/kmsKeystore.jks";
/// The JGroups file listing the cluster's nodes.
pub const JGROUPS: &str = "/usr/share/kms/conf/jgroups.xml";
/// First configuration backup (the guide's `cp -r conf conf-orig`); later ones get `.1`, `.2`, ...
pub const CONF_ORIG: &str = "/usr/share/kms/conf-orig";
/// Logs; kept on uninstall.
pub const LOG_DIR: &str = "/var/log/kms";
/// The installer's log.
pub const INSTALL_LOG: &str = "/var/log/kms/install.log";
/// The installer's own state: copies of installed packages (for rollback) and `state`.
pub const STATE_DIR: &str = "/var/lib/cmx-kms-installer";
/// Copies of the packages this installer installed.
pub const PACKAGES_DIR: &str = "/var/lib/cmx-kms-installer/packages";
/// Backups that must survive an uninstall (legacy Tomcat files, configuration at uninstall).
pub const BACKUP_DIR: &str = "/var/backups/cmx-kms";
/// The systemd unit the package ships.
pub const UNIT_FILE: &str = "/usr/lib/systemd/system/cmx-kms.service";
/// Runtime files of the direct-process service manager.
pub const RUN_DIR: &str = "/run";
/// The service's runtime directory (its control socket), which the unit's
/// `RuntimeDirectory=` makes under systemd: `kms:kms 0750`.
pub const RUNTIME_DIR: &str = "/run/cmx-kms";

/// Tomcat of a legacy node.
pub const TOMCAT_DIR: &str = "/usr/share/tomcat";
/// Tomcat's main configuration.
pub const SERVER_XML: &str = "/usr/share/tomcat/conf/server.xml";
/// Tomcat's environment script (JGroups address and port, `JAVA_HOME`).
pub const SETENV_SH: &str = "/usr/share/tomcat/bin/setenv.sh";
/// The web application link the original installer made.
pub const KMS_WAR: &str = "/usr/share/tomcat/webapps/kms.war";

/// The directory every node path is taken under: `/` on a real node, a
/// scratch directory in tests (`--root DIR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    /// A root at `dir`, which must be an absolute path.
    pub fn new(dir: &Path) -> Result<Self, crate::InstallError> {
        if !dir.is_absolute() {
            return Err(crate::InstallError::Usage(format!(
                "--root {} must be an absolute path",
                dir.display()
            )));
        }
        if !dir.is_dir() {
            return Err(crate::InstallError::Usage(format!(
                "--root {} is not a directory",
                dir.display()
            )));
        }
        Ok(Self(dir.to_path_buf()))
    }

    /// The real system root, `/`.
    pub fn system() -> Self {
        Self(PathBuf::from("/"))
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// True when the root is `/` (the running system).
    pub fn is_system(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// Where the node path `abs` (absolute, as on the node) is under this root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.0.join(abs.trim_start_matches('/'))
    }

    /// The node path of a path under this root (for messages), if it is under it.
    pub fn node_path(&self, p: &Path) -> String {
        match p.strip_prefix(&self.0) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => p.display().to_string(),
        }
    }
}
