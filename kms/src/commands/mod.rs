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

use crate::config::{Config, Workers};

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

/// The async runtime of the commands that need one (`serve`, `dev`, `hsm`),
/// with the workers of `kms.server.worker-threads`.
///
/// Work-stealing (by default one worker more than the CPUs: see
/// [`crate::config::Workers`]), without the per-worker LIFO slot: with
/// it, a task woken by a request's task (the audit writer's group commit, a
/// connection's next read) runs on the waking worker and the other core sits
/// idle while it does; without it, the woken task goes to the shared queue and
/// an idle worker takes it (docs/design/performance.md, "The runtime's LIFO
/// slot"). The option is among tokio's unstable ones, enabled for the
/// workspace by `.cargo/config.toml`; a build without that flag keeps the slot.
pub fn runtime(workers: Workers) -> Result<tokio::runtime::Runtime, CommandError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().worker_threads(workers.count());
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build().map_err(CommandError::Runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_is_built_without_its_lifo_slot() {
        // The workspace's `.cargo/config.toml` sets the flag; were it lost (a
        // RUSTFLAGS that replaces it), the option would silently drop out.
        let unstable_options = cfg!(tokio_unstable);
        assert!(
            unstable_options,
            "tokio_unstable is not set: .cargo/config.toml or a RUSTFLAGS without it"
        );
        let runtime = runtime(Workers::Automatic).expect("the runtime builds");
        assert_eq!(runtime.block_on(async { 6 * 7 }), 42);
    }

    #[test]
    fn the_runtime_has_the_configured_workers() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let automatic = runtime(Workers::Automatic).expect("the runtime builds");
        assert_eq!(automatic.metrics().num_workers(), cpus + 1);
        let three = std::num::NonZeroUsize::new(3).expect("3 is not zero");
        let fixed = runtime(Workers::Fixed(three)).expect("the runtime builds");
        assert_eq!(fixed.metrics().num_workers(), 3);
    }
}
