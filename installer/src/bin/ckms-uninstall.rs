//! `ckms-uninstall`: remove cmx-kms from this node, keeping /var/log/kms.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ckms_installer::apply::{self, Ctx};
use ckms_installer::error::exit;
use ckms_installer::log::Log;
use ckms_installer::paths;
use ckms_installer::{InstallError, service, ui, uninstall};
use clap::Parser;

/// Remove cmx-kms: stop and disable the service, erase the package, remove
/// /usr/share/kms. /var/log/kms stays. Prints a plan and asks for Y (or --yes).
#[derive(Parser)]
#[command(name = "ckms-uninstall", version)]
struct Cli {
    /// Apply the plan without asking.
    #[arg(short, long)]
    yes: bool,
    /// Directory every node path is taken under (scratch roots for tests).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// How the service runs: systemd, or a direct process where systemd is not PID 1.
    #[arg(long, value_enum, default_value = "auto")]
    service_manager: service::Choice,
    /// Pass --nodeps to rpm: only for scratch roots whose rpm database lists no packages.
    #[arg(long, hide = true)]
    rpm_nodeps: bool,
}

fn run(cli: Cli) -> Result<u8, InstallError> {
    let (root, rpm, svc) = apply::tools(
        "ckms-uninstall",
        &cli.root,
        cli.rpm_nodeps,
        cli.service_manager,
    )?;
    let steps = uninstall::plan(&root, &rpm, svc.as_ref())?;
    let mut log = Log::terminal("ckms-uninstall", root.path(paths::INSTALL_LOG));
    if steps.is_empty() {
        log.say("cmx-kms is not installed here: nothing to do.");
        return Ok(exit::OK);
    }
    log.say("Plan: uninstall cmx-kms");
    let described = steps.iter().map(|s| s.describe());
    ui::confirm_plan(
        &mut log,
        described,
        &[uninstall::kept_note(&steps)],
        cli.yes,
    )?;
    let mut ctx = Ctx {
        root: &root,
        rpm: &rpm,
        svc: svc.as_ref(),
        ready_timeout: Duration::from_secs(60),
        log,
    };
    Ok(if uninstall::apply(&mut ctx, &steps) {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn main() -> ExitCode {
    ckms_installer::error::main("ckms-uninstall", run)
}
