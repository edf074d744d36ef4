//! The `kmip1` backend: the master key lives in a KMIP 1.x HSM, which
//! encrypts and decrypts for us.
//!
//! Layers, bottom up:
//! - [`ttlv`]: our own TTLV codec (see `docs/design/kmip.md` for why not `kmip-ttlv`);
//! - [`messages`] / [`response`]: the requests we send and the answers we parse;
//! - `tls`, `conn`, `pool`: rustls towards the HSM, one connection, and the
//!   pool with retry, failover and a circuit breaker per endpoint;
//! - [`KmipBackend`]: the [`crate::backend::Backend`] implementation;
//! - [`admin`]: `hsm init`, `hsm rotate`, `hsm check`.

pub mod admin;
mod backend;
mod conn;
mod dial;
mod endpoint;
mod failure;
mod key_lookup;
pub mod master_key;
pub mod messages;
mod pool;
pub mod response;
pub mod settings;
pub mod tags;
pub mod tls;
pub mod ttlv;
mod versions;
mod wrapauth;

#[cfg(test)]
pub(crate) mod test_vectors;

pub use admin::{CheckReport, CheckStep, InitReport, RotateReport, check, init, rotate};
pub use backend::KmipBackend;
pub use master_key::KeyInfo;
pub use settings::{BreakerSettings, KmipPoolSettings, KmipSettings};
pub use tls::TlsProblem;
