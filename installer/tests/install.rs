//! Installer and package tests with the real `rpm` into scratch roots made
//! from a Debian minbase root (its shell and useradd run the scriptlets).
//!
//! The packages are built once per run through scripts/build-tarball and
//! scripts/build-rpm (see `support::artifacts`). Needs the tools of
//! scripts/testbed/install-rpm-tools.sh; fails naming it when they are missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/mod.rs"]
mod support;

#[path = "install/hardening.rs"]
mod hardening;
#[path = "install/legacy.rs"]
mod legacy;
#[path = "install/lifecycle.rs"]
mod lifecycle;
#[path = "install/packaging.rs"]
mod packaging;
#[path = "install/refusals.rs"]
mod refusals;
#[path = "install/repo.rs"]
mod repo;
#[path = "install/uninstall.rs"]
mod uninstall;
