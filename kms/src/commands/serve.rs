//! `cmx-kms serve` (what the systemd unit starts) and `cmx-kms dev` (a
//! throwaway local node with its own certificates and a software master key).

use std::path::Path;

use super::{CommandError, load_config, runtime};
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::dev::DevFolder;
use crate::node::{Node, files, signals};

/// `cmx-kms serve -c PATH`: run the node until SIGTERM/SIGINT.
///
/// `cli::main` has held the signals the node answers (`signals::hold`).
pub fn run(path: &Path) -> Result<(), CommandError> {
    let config = load_config(path)?;
    run_node(&config, None)
}

/// `cmx-kms dev --dir DIR --port PORT`: prepare (or reuse) the folder, then
/// run its node, printing how to try it. Signals are held as for [`run`].
pub fn dev(dir: &Path, port: u16) -> Result<(), CommandError> {
    let folder = DevFolder::prepare(dir, port)?;
    let config = load_config(&folder.properties)?;
    run_node(&config, Some(&folder))
}

fn run_node(config: &Config, dev: Option<&DevFolder>) -> Result<(), CommandError> {
    check_files(config)?;
    let rt = runtime(config.server.workers)?;
    let workers = rt.metrics().num_workers();
    rt.block_on(async {
        // On this thread, the one that held the signals: a signal of the
        // start waits in its handler until the running node answers it.
        let (handlers, stop) = signals::install();
        let node = Node::bind(config)
            .await
            .map_err(|e| match files::locate(config, &e) {
                Some(located) => located_error(vec![located]),
                None => CommandError::Start(e),
            })?
            .with_handlers(handlers);
        tracing::info!(address = %node.local_addr, backend = node.app.keys.load().backend_kind().label(), workers, "listening");
        if let Some(d) = dev {
            print_dev_banner(&node, d);
        }
        // The second future is first polled after the first signal, so
        // it waits for another one.
        node.run_until(stop.signalled(), signals::shutdown()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The files the configuration names, as `check-config` checks them: every
/// problem at its line and key, before anything is opened for writing. What
/// the node can start without (a Vault token file still to come) is logged.
fn check_files(config: &Config) -> Result<(), CommandError> {
    let (ks, mut problems) = match files::keystore(config) {
        Ok(ks) => (Some(ks), Vec::new()),
        Err(e) => (None, vec![e]),
    };
    let found = files::check(config, ks.as_ref());
    for w in &found.later {
        tracing::warn!("{w}");
    }
    problems.extend(found.problems);
    match problems.is_empty() {
        true => Ok(()),
        false => Err(located_error(problems)),
    }
}

fn located_error(errors: Vec<ConfigError>) -> CommandError {
    CommandError::Config(ConfigErrors {
        errors,
        warnings: Vec::new(),
    })
}

#[allow(clippy::print_stdout)] // `dev` is run by a person at a terminal.
fn print_dev_banner(node: &Node, d: &DevFolder) {
    let metrics = node
        .metrics_addr
        .map(|a| format!(", metrics on http://{a}/metrics"))
        .unwrap_or_default();
    println!(
        "cmx-kms dev node listening on https://{}{metrics} (files in {}).\nTry it (paste into a shell):\n\n{}",
        node.local_addr,
        d.dir.display(),
        d.curl_commands()
    );
}
