//! Command-line interface.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::dev::DevFolder;
use crate::node::{self, Node};

/// Default location of the configuration, as in the original product.
pub const DEFAULT_CONFIG: &str = "/usr/share/kms/conf/kms.properties";

/// Exit codes (sysexits.h).
pub mod exit {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 64;
    pub const DATAERR: u8 = 65;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const IOERR: u8 = 74;
    /// Not allowed (`cmx-kms drain` may not signal the node).
    pub const NOPERM: u8 = 77;
    /// Bad configuration: systemd's `RestartPreventExitStatus=78` stops the unit.
    pub const CONFIG: u8 = 78;
}

#[derive(Parser)]
#[command(
    name = "cmx-kms",
    version,
    about = "Key management server for customer-managed keys"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (what the systemd unit starts).
    Serve {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run a throwaway local node with its own certificates and a software master key.
    Dev {
        /// Folder for the node's files (reused on a second run).
        #[arg(long, default_value = "cmx-kms-dev")]
        dir: PathBuf,
        #[arg(long, default_value_t = 8443)]
        port: u16,
    },
    /// Check kms.properties and the keystore it names; exit 0, or 78 listing every problem.
    CheckConfig {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Inspect and convert keystores.
    #[command(subcommand)]
    Keystore(KeystoreCommand),
    /// The master key at the HSM or Vault: create it, check the whole path, rotate it.
    Hsm {
        #[command(subcommand)]
        command: HsmSub,
        #[arg(short, long, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
    },
    /// Work with the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Take the running node out of its load balancer without stopping it (or put it back).
    Drain {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// End the drain: report ready again and keep connections open.
        #[arg(long)]
        resume: bool,
    },
    /// The running node's customer-key cache (`flush`).
    #[command(subcommand)]
    Cache(crate::cluster::cli::CacheCommand),
    /// The cluster as the running node sees it (`status`).
    #[command(subcommand)]
    Cluster(crate::cluster::cli::ClusterCommand),
}

#[derive(Subcommand)]
enum HsmSub {
    /// Create and activate the master key if absent; print its id.
    Init,
    /// Connect, authenticate, find the master key, and wrap and unwrap once; say what is wrong.
    Check,
    /// Make a new master key version for new wraps (old versions still unwrap).
    Rotate,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check a file's hash chain: finds removed, edited and inserted lines.
    Verify { file: PathBuf },
}

#[derive(Subcommand)]
enum KeystoreCommand {
    /// What `keytool -list [-v]` shows, for JKS and PKCS#12 alike.
    List {
        path: PathBuf,
        #[arg(short, long)]
        verbose: bool,
        /// File whose first line is the keystore password (else CMX_KMS_KEYSTORE_PASSWORD, else a prompt).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Convert a legacy (RC2/3DES) .p12 into one OpenSSL 3 reads without -legacy.
    ConvertLegacy {
        input: PathBuf,
        output: PathBuf,
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Password for the output (default: the input's).
        #[arg(long)]
        out_password_file: Option<PathBuf>,
    },
}

/// Parse the command line and run; never panics on input.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    crate::logging::init();
    // Keys live in this process's memory: no core dumps, no ptrace by other
    // unprivileged processes, whatever the unit file or shell says.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot turn off core dumps (prctl PR_SET_DUMPABLE)");
    }
    ExitCode::from(match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Dev { dir, port } => dev(&dir, port),
        Command::CheckConfig { config } => crate::check::run(&config),
        Command::Keystore(KeystoreCommand::List {
            path,
            verbose,
            password_file,
        }) => crate::check::keystore_list(&path, verbose, password_file.as_deref()),
        Command::Keystore(KeystoreCommand::ConvertLegacy {
            input,
            output,
            password_file,
            out_password_file,
        }) => crate::check::convert_legacy(
            &input,
            &output,
            password_file.as_deref(),
            out_password_file.as_deref(),
        ),
        Command::Audit(AuditCommand::Verify { file }) => crate::check::audit_verify(&file),
        Command::Drain { config, resume } => crate::drain::run(&config, resume),
        Command::Cache(c) => crate::cluster::cli::run_cache(c),
        Command::Cluster(c) => crate::cluster::cli::run_cluster(c),
        Command::Hsm { command, config } => crate::hsm::run(
            &config,
            match command {
                HsmSub::Init => crate::hsm::HsmCommand::Init,
                HsmSub::Check => crate::hsm::HsmCommand::Check,
                HsmSub::Rotate => crate::hsm::HsmCommand::Rotate,
            },
        ),
    })
}

/// Load the configuration, printing problems; `Err` carries the exit code.
pub fn load_config(path: &Path) -> Result<Config, u8> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    match config::load(path, &env) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            Ok(loaded.config)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Err(exit::CONFIG)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the async runtime: {e}");
            exit::SOFTWARE
        })
}

fn serve(path: &Path) -> u8 {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    run_node(&config, None)
}

fn run_node(config: &Config, dev: Option<&DevFolder>) -> u8 {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let node = match Node::bind(config).await {
            Ok(n) => n,
            Err(e @ node::StartError::Bind { .. }) => {
                eprintln!("cmx-kms: {e}");
                return exit::UNAVAILABLE;
            }
            Err(e) => {
                eprintln!("cmx-kms: {e}");
                return exit::CONFIG;
            }
        };
        tracing::info!(address = %node.local_addr, backend = node.app.keys.load().backend_kind().label(), "listening");
        if let Some(d) = dev {
            #[allow(clippy::print_stdout)]
            {
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
        }
        // The second future is first polled after the first signal, so
        // it waits for another one.
        node.run_until(crate::signals::shutdown(), crate::signals::shutdown())
            .await;
        tracing::info!("stopped");
        exit::OK
    })
}

fn dev(dir: &Path, port: u16) -> u8 {
    let folder = match DevFolder::prepare(dir, port) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cmx-kms dev: {e}");
            return exit::IOERR;
        }
    };
    let config = match load_config(&folder.properties) {
        Ok(c) => c,
        Err(code) => return code,
    };
    run_node(&config, Some(&folder))
}
