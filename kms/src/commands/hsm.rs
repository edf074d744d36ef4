//! `cmx-kms hsm init|check|rotate`: the master key at the HSM or Vault (or
//! the soft key), through `crate::backend::MasterKeyAdmin`.

#![allow(clippy::print_stdout)] // The command's report is its output.

use std::path::Path;

use super::{CommandError, Status, load_config, runtime};
use crate::backend::{self, AdminError};
use crate::node::{self, StartError};

/// Which `hsm` subcommand.
#[derive(Clone, Copy, Debug)]
pub enum HsmCommand {
    /// Create and activate the master key if absent.
    Init,
    /// Connect, authenticate, find the master key, wrap and unwrap once.
    Check,
    /// Make a new master key version for new wraps.
    Rotate,
}

/// `cmx-kms hsm init|check|rotate -c PATH`: 0 when done (or every check
/// step passed), 69 when the backend cannot be reached, 78 when the settings
/// are wrong or the backend refused them (certificate, CA, identity or
/// policy, master key missing, not usable or of the wrong type).
pub fn run(path: &Path, cmd: HsmCommand) -> Result<(), CommandError> {
    let config = load_config(path)?;
    let ks = node::load_keystore(&config)?;
    runtime(config.server.workers)?.block_on(async {
        let init = matches!(cmd, HsmCommand::Init);
        let (admin, warning) = backend::build::admin(&config, &ks, init)
            .map_err(|e| CommandError::Setup(StartError::Backend(e)))?;
        if let Some(w) = warning {
            println!("warning: {w}");
        }
        let report = match cmd {
            HsmCommand::Init => admin.init().await,
            HsmCommand::Check => admin.check().await,
            HsmCommand::Rotate => admin.rotate().await,
        }?;
        println!("{}", report.text);
        if report.passed {
            Ok(())
        } else if report.config_problem {
            Err(CommandError::Reported(Status::Config))
        } else {
            Err(CommandError::Reported(Status::Unavailable))
        }
    })
}

impl From<AdminError> for CommandError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Backend(e) => Self::Backend(e),
            AdminError::NotSupported(what) => Self::Usage(what.to_owned()),
        }
    }
}
