//! `ckms-install`: install cmx-kms on this node, take over a Tomcat-based
//! Connected-KMS, upgrade with automatic rollback, or roll back on demand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ckms_installer::apply::{self, Ctx};
use ckms_installer::detect;
use ckms_installer::error::exit;
use ckms_installer::log::Log;
use ckms_installer::options::Options;
use ckms_installer::paths;
use ckms_installer::plan;
use ckms_installer::{InstallError, service, ui};
use clap::Parser;

/// Install, upgrade or roll back cmx-kms on this node. Prints a plan, asks
/// for Y (or --yes), then applies it step by step, logging to
/// /var/log/kms/install.log.
#[derive(Parser)]
#[command(name = "ckms-install", version)]
struct Cli {
    /// Apply the plan without asking.
    #[arg(short, long)]
    yes: bool,
    /// Directory every node path is taken under (scratch roots for tests).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The package to install (default: the cmx-kms-server-*.rpm next to this program).
    #[arg(long)]
    package: Option<PathBuf>,
    /// How to run the service: systemd, or a direct process where systemd is not PID 1.
    #[arg(long, value_enum, default_value = "auto")]
    service_manager: service::Choice,
    /// Seconds to wait for the service to be ready after a start.
    #[arg(long, default_value_t = 60)]
    ready_timeout: u64,
    /// Go back to the version installed before the current one, with its configuration.
    #[arg(long)]
    rollback: bool,
    /// Install and configure, but do not start the service (nor check its
    /// port); the configuration is still checked.
    #[arg(long)]
    no_start: bool,
    /// Pass --nodeps to rpm: only for scratch roots whose rpm database lists no packages.
    #[arg(long, hide = true)]
    rpm_nodeps: bool,
}

fn run(cli: Cli) -> Result<u8, InstallError> {
    let (root, rpm, svc) = apply::tools(
        "ckms-install",
        &cli.root,
        cli.rpm_nodeps,
        cli.service_manager,
    )?;
    let opts = Options {
        root: root.clone(),
        package: cli.package,
        manager: cli.service_manager,
        ready_timeout: Duration::from_secs(cli.ready_timeout.max(1)),
        rollback: cli.rollback,
        rpm_nodeps: cli.rpm_nodeps,
        no_start: cli.no_start,
    };
    let facts = detect::facts(&opts, &rpm, svc.as_ref())?;
    let plan = plan::build(&facts, &opts)?;
    apply::preflight(&root, &plan)?;
    let mut log = Log::terminal("ckms-install", root.path(paths::INSTALL_LOG));
    log.say(&format!("Plan: {}", plan.summary));
    if plan.steps.is_empty() {
        return Ok(exit::OK);
    }
    let steps = plan.steps.iter().map(|s| s.describe());
    ui::confirm_plan(&mut log, steps, &plan.notes, cli.yes)?;
    let mut ctx = Ctx {
        root: &root,
        rpm: &rpm,
        svc: svc.as_ref(),
        ready_timeout: opts.ready_timeout,
        log,
    };
    Ok(apply::apply(&mut ctx, &plan).exit_code())
}

fn main() -> ExitCode {
    ckms_installer::error::main("ckms-install", run)
}
