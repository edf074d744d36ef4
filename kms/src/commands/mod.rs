//! The `cmx-kms` subcommands over the library, one module each. Every
//! command's `run` returns `Result<_, CommandError>`: it prints its report
//! (stdout) and leaves failures to [`error::exit`], the one place that prints
//! them (stderr) and turns them into exit codes. `crate::cli` parses the
//! command line and calls them.
//!
//! - [`serve`]: `serve` and `dev` (a throwaway local node).
//! - [`check_config`]: `check-config`; [`keystore`]: `keystore list|convert-legacy`;
//!   [`audit`]: `audit verify`.
//! - [`hsm`]: `hsm init|check|rotate` over `crate::backend::MasterKeyAdmin`.
//! - [`drain`]: `drain [--resume]` (signals the running node);
//!   [`cache`] and [`cluster`]: `cache flush`, `cluster status` (its control socket).

use std::path::Path;

use crate::config::Config;

pub mod audit;
pub mod cache;
pub mod check_config;
pub mod cluster;
pub mod drain;
pub mod error;
pub mod hsm;
pub mod keystore;
pub mod serve;

pub use error::{CommandError, Status};

/// Default location of the configuration, as in the original product.
pub const DEFAULT_CONFIG: &str = "/usr/share/kms/conf/kms.properties";

/// Load the configuration a command was given (warnings are logged).
pub fn load_config(path: &Path) -> Result<Config, CommandError> {
    Ok(crate::node::load_config(path)?)
}

/// The async runtime of the commands that need one (`serve`, `dev`, `hsm`).
pub fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CommandError::Runtime)
}
