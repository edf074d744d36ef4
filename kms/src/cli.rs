//! The command line: clap's description of `cmx-kms` and the dispatch to
//! `crate::commands`, whose one `exit` turns failures into exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{self, CommandError, DEFAULT_CONFIG, Status};

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
    Cache(CacheCommand),
    /// The cluster as the running node sees it (`status`).
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// `cmx-kms cache ...`.
#[derive(Subcommand)]
enum CacheCommand {
    /// Forget a customer key (or every key) on every node of the cluster now.
    Flush {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The customer key's id (32 hex digits, as in the audit trail); all keys when absent.
        #[arg(long)]
        key_id: Option<String>,
    },
}

/// `cmx-kms cluster ...`.
#[derive(Subcommand)]
enum ClusterCommand {
    /// Members, reachable or not and why, the owner split, and the kmsserver fingerprints.
    Status {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
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
    /// Several files, oldest first (rotated ones): each must also go on
    /// with the chain of the one before it.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
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
    // First of all for a node: until its handlers are installed, the default
    // action of SIGHUP (a logrotate reload), SIGTERM and SIGUSR1 would end
    // it without a word. They wait instead (see `crate::node::signals`).
    let held = runs_a_node().then(crate::node::signals::hold);
    // Before anything allocates much: no transparent huge pages for this
    // process. mimalloc asks for them on its arenas (and RHEL backs every
    // aligned region with them by default), so each touched 2 MiB of heap
    // became resident whole: about 7 MiB more idle and 9 KiB more per idle
    // connection, for no measured speed (docs/design/performance.md).
    let thp = nix::sys::prctl::set_thp_disable(true);
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Status::Usage
            } else {
                Status::Ok
            }
            .into();
        }
    };
    crate::logging::init();
    // Keys live in this process's memory: no core dumps, no ptrace by other
    // unprivileged processes, whatever the unit file or shell says.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot turn off core dumps (prctl PR_SET_DUMPABLE)");
    }
    if let Some(Err(e)) = held {
        tracing::warn!(error = %e, "cannot hold signals during start: a SIGHUP before the node runs ends it");
    }
    if let Err(e) = thp {
        tracing::warn!(error = %e, "cannot turn off transparent huge pages (prctl PR_SET_THP_DISABLE): the heap may hold more memory than it uses");
    }
    commands::error::exit(run(cli.command))
}

/// `serve` or `dev`, seen before the command line is parsed (the command is
/// always the first argument; there are no options before it).
fn runs_a_node() -> bool {
    let first = std::env::args_os().nth(1);
    matches!(
        first.as_deref().and_then(|a| a.to_str()),
        Some("serve" | "dev")
    )
}

fn run(command: Command) -> Result<(), CommandError> {
    match command {
        Command::Serve { config } => commands::serve::run(&config),
        Command::Dev { dir, port } => commands::serve::dev(&dir, port),
        Command::CheckConfig { config } => commands::check_config::run(&config),
        Command::Keystore(KeystoreCommand::List {
            path,
            verbose,
            password_file,
        }) => commands::keystore::list(&path, verbose, password_file.as_deref()),
        Command::Keystore(KeystoreCommand::ConvertLegacy {
            input,
            output,
            password_file,
            out_password_file,
        }) => commands::keystore::convert_legacy(
            &input,
            &output,
            password_file.as_deref(),
            out_password_file.as_deref(),
        ),
        Command::Audit(AuditCommand::Verify { files }) => commands::audit::verify(&files),
        Command::Drain { config, resume } => commands::drain::run(&config, resume),
        Command::Cache(CacheCommand::Flush { config, key_id }) => {
            commands::cache::flush(&config, key_id.as_deref())
        }
        Command::Cluster(ClusterCommand::Status { config }) => commands::cluster::status(&config),
        Command::Hsm { command, config } => commands::hsm::run(
            &config,
            match command {
                HsmSub::Init => commands::hsm::HsmCommand::Init,
                HsmSub::Check => commands::hsm::HsmCommand::Check,
                HsmSub::Rotate => commands::hsm::HsmCommand::Rotate,
            },
        ),
    }
}
