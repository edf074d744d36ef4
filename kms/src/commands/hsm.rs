//! `cmx-kms hsm init|check|rotate`: the master key at the HSM or Vault.

#![allow(clippy::print_stdout)] // The command's report is its output.

use std::path::Path;

use super::{CommandError, Status, load_config, runtime};
use crate::backend::{self, kmip};
use crate::config::{Config, Protocol};
use crate::keystore::KeyStore;
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

/// `cmx-kms hsm init|check|rotate -c PATH`.
pub fn run(path: &Path, cmd: HsmCommand) -> Result<(), CommandError> {
    let config = load_config(path)?;
    let ks = node::load_keystore(&config)?;
    runtime()?.block_on(async {
        match config.hsm.protocol {
            Protocol::Kmip1 => kmip_cmd(&config, &ks, cmd).await,
            Protocol::Vault => vault_cmd(&config, &ks, cmd).await,
            Protocol::Soft => soft_cmd(&config, &ks, cmd).await,
        }
    })
}

fn setup(e: backend::BuildError) -> CommandError {
    CommandError::Setup(StartError::Backend(e))
}

async fn kmip_cmd(config: &Config, ks: &KeyStore, cmd: HsmCommand) -> Result<(), CommandError> {
    let b = backend::build::kmip(config, ks).map_err(setup)?;
    match cmd {
        HsmCommand::Init => println!("{}", kmip::init(&b).await?),
        HsmCommand::Rotate => println!("{}", kmip::rotate(&b).await?),
        HsmCommand::Check => {
            let r = kmip::check(&b).await;
            println!("{r}");
            if !r.is_ok() {
                return Err(CommandError::Reported(Status::Unavailable));
            }
        }
    }
    Ok(())
}

async fn vault_cmd(config: &Config, ks: &KeyStore, cmd: HsmCommand) -> Result<(), CommandError> {
    let (b, warning) = backend::build::vault(config, ks).map_err(setup)?;
    if let Some(w) = warning {
        println!("warning: {w}");
    }
    match cmd {
        HsmCommand::Init => println!("{}", b.init().await?),
        HsmCommand::Rotate => {
            let (before, after) = b.rotate().await?;
            println!(
                "rotated Transit key '{}': version {} -> {}; new wraps use it now, older blobs still unwrap, and /v1/customer-keys/rewrap moves them to it",
                after.name, before.latest_version, after.latest_version
            );
        }
        HsmCommand::Check => {
            let r = b.check().await;
            println!("{r}");
            if !r.passed() {
                return Err(CommandError::Reported(Status::Unavailable));
            }
        }
    }
    Ok(())
}

async fn soft_cmd(config: &Config, ks: &KeyStore, cmd: HsmCommand) -> Result<(), CommandError> {
    let b = backend::build(config, ks).map_err(setup)?;
    match cmd {
        HsmCommand::Init | HsmCommand::Check => {
            b.probe().await?;
            println!(
                "soft master key in {} works (development only)",
                config.hsm.soft.key_file.display()
            );
            Ok(())
        }
        HsmCommand::Rotate => Err(CommandError::Usage(
            "the soft backend has one master key version; it cannot rotate".into(),
        )),
    }
}
