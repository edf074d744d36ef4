//! The installer's own state, `/var/lib/cmx-kms-installer/state`: which
//! package files are current and previous (copies kept in `packages/` for
//! rollback), the configuration backup of the last upgrade, and a legacy
//! migration in progress. `key=value` lines; no secrets.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt as _;

use crate::InstallError;
use crate::paths::{self, Root};

/// Keys of the state file.
pub mod key {
    /// File name (in `packages/`) of the installed package.
    pub const CURRENT: &str = "current";
    /// File name of the package installed before it (the rollback target).
    pub const PREVIOUS: &str = "previous";
    /// Node path of the configuration backup taken before the last upgrade.
    pub const BACKUP: &str = "conf_backup";
    /// Node path of the legacy backup of a migration not yet finished.
    pub const MIGRATION: &str = "migration";
}

/// The state, as read; saved with [`State::save`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    values: BTreeMap<String, String>,
}

impl State {
    /// Read the state under `root` (empty if there is none).
    pub fn load(root: &Root) -> Result<Self, InstallError> {
        let path = root.path(&format!("{}/state", paths::STATE_DIR));
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(InstallError::io("read", &path)(e)),
        };
        let values = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Ok(Self { values })
    }

    /// A value.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.values
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Set (`Some`) or clear (`None`) a value.
    pub fn set(&mut self, k: &str, v: Option<&str>) {
        match v {
            Some(v) => {
                self.values.insert(k.to_owned(), v.to_owned());
            }
            None => {
                self.values.remove(k);
            }
        }
    }

    /// Write the state (atomically: a temporary file renamed over it).
    pub fn save(&self, root: &Root) -> Result<(), InstallError> {
        let dir = root.path(paths::STATE_DIR);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(InstallError::io("create", &dir))?;
        let mut text = String::from("# ckms-install state: do not edit\n");
        for (k, v) in &self.values {
            text.push_str(&format!("{k}={v}\n"));
        }
        let tmp = dir.join("state.tmp");
        fs::write(&tmp, text).map_err(InstallError::io("write", &tmp))?;
        let path = dir.join("state");
        fs::rename(&tmp, &path).map_err(InstallError::io("write", &path))
    }
}
