//! cmx-kms: a key management server for customer-managed keys.
//!
//! Module map:
//! - [`config`]: `kms.properties` (Java `.properties` semantics) into one validated `Config`.
//! - [`keystore`]: keytool keystores (JKS and PKCS#12), read by content.
//! - [`backend`]: master-key backends (KMIP 1.x HSM, Vault Transit, development `soft`).

pub mod audit;
pub mod backend;
pub mod cache;
pub mod check;
pub mod cli;
pub mod config;
pub mod dev;
pub mod envelope;
pub mod hex;
pub mod hsm;
pub mod http;
pub mod keys;
pub mod keystore;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod readiness;
pub mod signals;
pub mod time;
pub mod tls;
