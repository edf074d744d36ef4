//! cmx-kms: a key management server for customer-managed keys.
//!
//! Module map, from the outside in (each layer uses only those below it;
//! `scripts/check-cycles` keeps it so):
//! - [`cli`]: the command line; [`commands`]: one module per subcommand, and
//!   the one place where a failure becomes an exit code.
//! - [`node`]: builds a node from the config (TLS context, backend, key
//!   service), runs it, reloads it, and answers signals and the control socket.
//! - [`http`]: accept loop, per-connection timeouts, API v1, errors, the
//!   metrics and health listeners; [`readiness`] (canary).
//! - [`hierarchy`]: the key hierarchy over [`envelope`]s, with the customer-key
//!   [`cache`] and the [`cluster`] that shares it.
//! - [`backend`]: master-key backends (KMIP 1.x HSM, Vault Transit,
//!   development `soft`), [`backend::build`] from the config, and the
//!   concurrency gate in front of them.
//! - [`config`]: `kms.properties` (Java `.properties` semantics) into one
//!   validated `Config`; [`keystore`]: keytool keystores (JKS and PKCS#12),
//!   read by content; [`tls`]: rustls server config and client pinning;
//!   [`dev`]: the files of a throwaway development node.
//! - Operations: [`audit`] (hash-chained trail), [`metrics`], [`limits`]
//!   (rate limits), [`notify`] (systemd), [`logging`].
//! - Helpers: [`hex`], [`time`], [`text`] (escaping and capping client-controlled strings).

pub mod audit;
pub mod backend;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod dev;
pub mod envelope;
pub mod hex;
pub mod hierarchy;
pub mod http;
pub mod keystore;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod readiness;
pub mod text;
pub mod time;
pub mod tls;
