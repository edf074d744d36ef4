//! `ckms-install` and `ckms-uninstall`: put cmx-kms on a node, take over a
//! Tomcat-based Connected-KMS, upgrade with automatic rollback, and remove it
//! again while keeping the logs.
//!
//! Every run is one [`plan::Plan`]: the node's facts gathered ([`detect`], reading
//! only), the plan decided from them ([`plan::build`], pure), printed, confirmed,
//! then applied step by step ([`apply`]) with each step logged to
//! `/var/log/kms/install.log`. Every path is taken relative to a [`paths::Root`]
//! (`--root DIR`, `/` by default), so the whole flow runs against scratch roots
//! in the tests with the real `rpm`.
//!
//! Module map:
//! - [`paths`]: the node's paths, under a root.
//! - [`cmd`]: running external programs (rpm, chroot, systemctl), outputs captured.
//! - [`rpm`]: querying and installing packages, rpm version comparison.
//! - [`service`]: the service-manager interface, for systemd and for direct processes.
//! - [`legacy`]: reading a Tomcat-based node and writing the equivalent configuration.
//! - [`detect`], [`plan`], [`apply`], [`uninstall`]: what the node is, what to do, and doing it.
//! - [`fsops`], [`port`], [`state`], [`log`]: file operations, the port check, the
//!   installer's own state, the install log.
//! - [`safefs`], [`backup`]: descriptor-based file operations for directories
//!   other users can write (no link followed), and the private, pruned
//!   configuration backups.

pub mod apply;
pub mod backup;
pub mod clock;
pub mod cmd;
pub mod detect;
pub mod error;
pub mod fsops;
pub mod legacy;
pub mod log;
pub mod options;
pub mod paths;
pub mod plan;
pub mod port;
pub mod rpm;
pub mod safefs;
pub mod service;
pub mod state;
pub mod ui;
pub mod uninstall;

pub use error::InstallError;
