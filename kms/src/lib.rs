//! cmx-kms: a key management server for customer-managed keys.
//!
//! Module map, from the outside in:
//! - [`cli`]: the `cmx-kms` commands; [`check`] (`check-config`, `keystore`, `audit verify`),
//!   [`hsm`] (`hsm init|check|rotate`, and config → backend), [`dev`] (a throwaway local node).
//! - [`config`]: `kms.properties` (Java `.properties` semantics) into one validated `Config`.
//! - [`keystore`]: keytool keystores (JKS and PKCS#12), read by content.
//! - [`node`]: builds a node from the config (TLS context, backend, key service) and reloads it.
//! - [`tls`]: rustls server config and client pinning; [`http`]: accept loop, per-connection
//!   timeouts, API v1, errors, the metrics listener.
//! - [`keys`]: the key hierarchy over [`envelope`]s, with the customer-key [`cache`].
//! - [`backend`]: master-key backends (KMIP 1.x HSM, Vault Transit, development `soft`) and the
//!   concurrency gate in front of them.
//! - Operations: [`audit`] (hash-chained trail), [`metrics`], [`readiness`] (canary), [`limits`]
//!   (rate limits), [`notify`] (systemd), [`signals`], [`logging`].
//! - Helpers: [`hex`], [`time`], [`text`] (escaping and capping client-controlled strings).

pub mod audit;
pub mod backend;
pub mod cache;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod drain;
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
pub mod text;
pub mod time;
pub mod tls;
