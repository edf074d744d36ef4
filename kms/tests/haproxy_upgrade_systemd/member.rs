//! One node of the rolling upgrade: its booted root, and what the test asks
//! of it there (the installer, `rpm -q`, `systemctl`, the journal, the audit
//! trail).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use super::install_support::booted::BootedRoot;
use super::install_support::node::expect_code;
use super::install_support::text;
use super::support::guide_pki::GuidePki;
use super::upgrade_node::{self, CONF};
use super::{INSTALLER, UNIT};

/// One node: its booted root, its name in HAProxy, its API address.
pub(crate) struct Member {
    pub(crate) b: BootedRoot,
    pub(crate) name: String,
    pub(crate) api: SocketAddr,
}

impl Member {
    /// `sh CMX-KMS-Installer.sh --yes --rpm-nodeps <args>` inside, as root.
    pub(crate) fn installer(&self, args: &str) -> Output {
        self.b.sh(&format!(
            "cd {INSTALLER} && sh CMX-KMS-Installer.sh --yes --rpm-nodeps {args}"
        ))
    }

    /// `rpm -q cmx-kms-server` inside: `Some("0.1.0-2")` or `None`.
    pub(crate) fn version(&self) -> Option<String> {
        let out = self
            .b
            .sh("rpm -q --qf '%{VERSION}-%{RELEASE}' cmx-kms-server");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `systemctl is-active cmx-kms` inside (it exits non-zero unless active).
    pub(crate) fn is_active(&self) -> String {
        String::from_utf8_lossy(&self.b.sh(&format!("systemctl is-active {UNIT}")).stdout)
            .trim()
            .to_owned()
    }

    /// `systemctl status` with the unit's last journal lines, for failures.
    pub(crate) fn status(&self) -> String {
        text(
            &self
                .b
                .sh(&format!("systemctl status --no-pager -l -n 40 {UNIT}")),
        )
    }

    /// N-1 freshly installed (enabled, not started: unconfigured), then
    /// configured and started by the installer's second run.
    pub(crate) fn set_up(
        b: BootedRoot,
        name: String,
        api: SocketAddr,
        hport: u16,
        c: &Cluster<'_>,
    ) -> Self {
        let m = Member { b, name, api };
        let out = m.installer(&format!("--package {}", c.prev));
        expect_code(&out, 0, &format!("install N-1 on {}", m.name));
        assert!(
            text(&out).contains("(service manager: systemd)"),
            "{}",
            text(&out)
        );
        upgrade_node::configure(&m.b.p(CONF), c.pki, c.soft_key, m.api, hport);
        let out = m.installer(&format!("--package {}", c.prev));
        expect_code(&out, 0, &format!("start N-1 on {}", m.name));
        assert_eq!(m.version().as_deref(), Some("0.1.0-1"));
        assert_eq!(m.is_active(), "active", "{}", m.status());
        m
    }

    /// systemd's own journal lines about the unit: (stops begun, stops it had
    /// to end by force at `TimeoutStopSec`).
    pub(crate) fn stops(&self) -> (usize, usize, String) {
        let j = self
            .b
            .must(&format!("journalctl --no-pager -u {UNIT} -o cat _PID=1"));
        let begun = j
            .lines()
            .filter(|l| l.starts_with("Stopping cmx-kms.service"))
            .count();
        let forced = j
            .lines()
            .filter(|l| l.contains("timed out") || l.contains("Killing"))
            .count();
        (begun, forced, j)
    }

    /// How many times the server logged the start of a drain (its own
    /// lines in the journal).
    pub(crate) fn drain_lines(&self) -> usize {
        self.b
            .must(&format!("journalctl --no-pager -u {UNIT} -o cat"))
            .lines()
            .filter(|l| l.contains("the health check reports draining"))
            .count()
    }

    /// The unit's journal, systemd's lines and the server's, with
    /// microsecond timestamps: beside HAProxy's log when a check failed.
    pub(crate) fn journal(&self) -> String {
        text(&self.b.sh(&format!(
            "journalctl --no-pager -u {UNIT} -o short-precise -n 120"
        )))
    }

    /// Did this node answer a device's decrypt with 200 (its audit trail)?
    /// The first such record is enough: the trail holds many thousands.
    pub(crate) fn served(&self) -> bool {
        std::fs::read_to_string(self.b.p("/var/log/kms/audit.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("decrypt-workspace-key"))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["status"] == 200 && v["operation"] == "decrypt-workspace-key")
    }
}

/// What every node shares.
pub(crate) struct Cluster<'a> {
    pub(crate) pki: &'a GuidePki,
    pub(crate) soft_key: &'a Path,
    pub(crate) prev: String,
}
