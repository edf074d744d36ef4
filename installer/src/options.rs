//! The command line of `ckms-install`, as detection and planning need it.

use std::path::PathBuf;
use std::time::Duration;

use crate::paths::Root;
use crate::service;

/// The command line of `ckms-install`, as the plan needs it.
#[derive(Clone, Debug)]
pub struct Options {
    pub root: Root,
    /// The package to install; by default the `cmx-kms-server-*.rpm` next to the program.
    pub package: Option<PathBuf>,
    pub manager: service::Choice,
    pub ready_timeout: Duration,
    /// Go back to the previous version instead of installing.
    pub rollback: bool,
    /// Pass `--nodeps` to rpm (scratch roots only).
    pub rpm_nodeps: bool,
    /// Install and configure, but leave the service stopped (no port check either).
    pub no_start: bool,
}
