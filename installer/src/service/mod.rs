//! The service manager: how the installer enables, starts, stops and waits for
//! the service.
//!
//! Two implementations:
//! - [`Systemd`]: `systemctl` on the running system. `systemctl start` of the
//!   `Type=notify` unit returns once cmx-kms has sent `READY=1`, so a
//!   successful start means ready. Used when the root is `/` and systemd is
//!   PID 1 (`/run/systemd/system` exists), which is every supported RHEL node.
//! - [`Direct`]: no service manager at all (containers, build machines whose
//!   PID 1 is not systemd, and every scratch root in the tests). It starts
//!   `cmx-kms serve` itself, detached, as the `kms` user (inside the root via
//!   `chroot` when the root is not `/`), with a `NOTIFY_SOCKET` of its own,
//!   and takes `READY=1` on that socket as readiness; a pid file under the
//!   root's `/run` remembers the process. Nothing starts it again at boot.
//!
//! `--service-manager auto` (the default) picks systemd when it is PID 1 and
//! the root is `/`, and the direct manager otherwise.

mod direct;
mod systemd;

use std::time::Duration;

pub use direct::{Direct, alive, service_ids};
pub use systemd::Systemd;

use crate::InstallError;
use crate::paths::Root;

/// What the installer needs from a service manager. `unit` is a service name
/// without `.service` (`cmx-kms`, `tomcat`).
pub trait ServiceManager {
    /// A short name for plans and logs.
    fn name(&self) -> &'static str;
    /// Does it start services at boot (so that enabling means something)?
    fn manages_boot(&self) -> bool {
        false
    }
    /// Re-read unit files after the package changed them.
    fn reload_units(&self) -> Result<(), InstallError>;
    /// Is the unit enabled to start at boot? (Always true for the direct manager.)
    fn is_enabled(&self, unit: &str) -> Result<bool, InstallError>;
    /// Enable the unit at boot.
    fn enable(&self, unit: &str) -> Result<(), InstallError>;
    /// Disable the unit at boot.
    fn disable(&self, unit: &str) -> Result<(), InstallError>;
    /// Is the unit running?
    fn is_active(&self, unit: &str) -> Result<bool, InstallError>;
    /// Start the unit and wait until it is ready, at most `timeout`.
    fn start(&self, unit: &str, timeout: Duration) -> Result<(), InstallError>;
    /// Stop the unit (nothing to do if it is not running).
    fn stop(&self, unit: &str) -> Result<(), InstallError>;
    /// Stop if running, then start and wait until ready.
    fn restart(&self, unit: &str, timeout: Duration) -> Result<(), InstallError> {
        self.stop(unit)?;
        self.start(unit, timeout)
    }
}

/// The `--service-manager` choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// systemd if it runs this system and the root is `/`, else direct.
    Auto,
    /// Always `systemctl`.
    Systemd,
    /// Always start and stop the process directly.
    Direct,
}

/// Is systemd PID 1 of the running system? (`sd_booted()`'s test.)
pub fn systemd_running() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// The service manager for `choice` on `root`.
pub fn choose(choice: Choice, root: &Root) -> Result<Box<dyn ServiceManager>, InstallError> {
    match choice {
        Choice::Auto if root.is_system() && systemd_running() => Ok(Box::new(Systemd::new())),
        Choice::Auto | Choice::Direct => Ok(Box::new(Direct::new(root))),
        Choice::Systemd => {
            if !root.is_system() {
                return Err(InstallError::Usage(
                    "--service-manager systemd works on the running system only (--root /); use --service-manager direct with another root".into(),
                ));
            }
            if !systemd_running() {
                return Err(InstallError::Usage(
                    "--service-manager systemd: systemd is not running this system (no /run/systemd/system); use --service-manager direct".into(),
                ));
            }
            Ok(Box::new(Systemd::new()))
        }
    }
}
