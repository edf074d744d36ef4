//! The node's life under a real systemd: a root with systemd as its PID 1,
//! booted with `systemd-nspawn` (see `support::booted`), into which the
//! guide's `sh CMX-KMS-Installer.sh` installs the real RPM; then start,
//! reload, restart, crash, bad configuration, upgrade, broken upgrade,
//! rollback and uninstall, all through `systemctl` and the shipped unit.
//!
//! One booted container runs the whole sequence (booting takes seconds, the
//! steps depend on each other). Needs the tools of
//! scripts/testbed/install-rpm-tools.sh and install-systemd-root.sh; fails
//! naming them when they are missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/mod.rs"]
mod support;

#[path = "systemd/checks.rs"]
mod checks;
#[path = "systemd/lifecycle.rs"]
mod lifecycle;
#[path = "systemd/teardown.rs"]
mod teardown;
