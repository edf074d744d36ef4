//! Members of a cluster that misbehave, against real `cmx-kms serve` nodes
//! on their own loopback addresses: one that never answers (`hung`), a flood
//! of idle connections from a member's address (`limits`), and a rogue that
//! holds the `kmsserver` key but not the master key (`rogue`). One test
//! binary for the three, so that the suite links it once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/cluster.rs"]
mod cluster_support;
#[path = "../support/mod.rs"]
mod support;

mod hung;
mod limits;
mod rogue;
