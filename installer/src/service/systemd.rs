//! [`ServiceManager`] over `systemctl`.

use std::ffi::OsString;
use std::time::Duration;

use super::ServiceManager;
use crate::InstallError;
use crate::cmd;

/// `systemctl` on the running system.
#[derive(Debug, Default)]
pub struct Systemd;

impl Systemd {
    /// The systemd service manager.
    pub fn new() -> Self {
        Self
    }

    fn systemctl(&self, args: &[&str]) -> Result<cmd::Output, InstallError> {
        let a: Vec<OsString> = args.iter().map(OsString::from).collect();
        cmd::run("systemctl", &a)
    }

    fn must(&self, args: &[&str]) -> Result<(), InstallError> {
        let out = self.systemctl(args)?;
        if out.ok() {
            Ok(())
        } else {
            Err(InstallError::Service(format!(
                "systemctl {} failed ({}):\n{}",
                args.join(" "),
                out.status(),
                cmd::indent(&out.text())
            )))
        }
    }
}

fn unit_name(unit: &str) -> String {
    format!("{unit}.service")
}

impl ServiceManager for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn manages_boot(&self) -> bool {
        true
    }

    fn reload_units(&self) -> Result<(), InstallError> {
        self.must(&["daemon-reload"])
    }

    fn is_enabled(&self, unit: &str) -> Result<bool, InstallError> {
        Ok(self
            .systemctl(&["is-enabled", "--quiet", &unit_name(unit)])?
            .ok())
    }

    fn enable(&self, unit: &str) -> Result<(), InstallError> {
        self.must(&["enable", &unit_name(unit)])
    }

    fn disable(&self, unit: &str) -> Result<(), InstallError> {
        self.must(&["disable", &unit_name(unit)])
    }

    fn is_active(&self, unit: &str) -> Result<bool, InstallError> {
        Ok(self
            .systemctl(&["is-active", "--quiet", &unit_name(unit)])?
            .ok())
    }

    fn start(&self, unit: &str, timeout: Duration) -> Result<(), InstallError> {
        // Type=notify: start returns when READY=1 arrived or the start failed.
        // The unit's own TimeoutStartSec bounds the wait; `timeout` is for the
        // direct manager.
        let _ = timeout;
        let name = unit_name(unit);
        let out = self.systemctl(&["start", &name])?;
        if out.ok() {
            return Ok(());
        }
        let journal = cmd::run(
            "journalctl",
            &["-u", &name, "-n", "20", "--no-pager", "-o", "cat"]
                .iter()
                .map(OsString::from)
                .collect::<Vec<_>>(),
        )
        .map(|o| o.text())
        .unwrap_or_default();
        Err(InstallError::Service(format!(
            "{name} did not become ready ({}):\n{}\nlast log lines:\n{}",
            out.status(),
            cmd::indent(&out.text()),
            cmd::indent(&journal)
        )))
    }

    fn stop(&self, unit: &str) -> Result<(), InstallError> {
        self.must(&["stop", &unit_name(unit)])
    }

    fn restart(&self, unit: &str, timeout: Duration) -> Result<(), InstallError> {
        self.stop(unit)?;
        self.start(unit, timeout)
    }
}
