//! Errors: each message says what went wrong and what to do about it. None
//! carries a password: values read from configuration files are never quoted.

use std::path::PathBuf;

/// Why the installer stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Wrong command line.
    #[error("{0}")]
    Usage(String),
    /// Not running as root.
    #[error(
        "{program} must run as root (it installs a package and writes /usr/share/kms): run it with sudo, for example `sudo sh CMX-KMS-Installer.sh`"
    )]
    NotRoot { program: &'static str },
    /// A program the installer needs is not on the PATH.
    #[error("`{program}` was not found on the PATH; {hint}")]
    MissingTool {
        program: &'static str,
        hint: &'static str,
    },
    /// The package file is missing or unusable.
    #[error("{0}")]
    Package(String),
    /// The client port is held by another program.
    #[error("{0}")]
    PortTaken(String),
    /// A legacy Tomcat file could not be read or understood.
    #[error("{0}")]
    Legacy(String),
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// An external command failed.
    #[error("{0}")]
    Command(String),
    /// The service manager failed (start, stop, readiness).
    #[error("{0}")]
    Service(String),
    /// The node is in a state the installer will not touch.
    #[error("{0}")]
    Refused(String),
    /// The operator answered no.
    #[error("nothing was changed (the plan was not confirmed)")]
    NotConfirmed,
}

impl InstallError {
    /// An I/O error on a path.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// Exit codes of both programs.
pub mod exit {
    /// Done (including "nothing to do" and "installed, configure it next").
    pub const OK: u8 = 0;
    /// Refused or not confirmed before any change: nothing was changed.
    pub const NOTHING_CHANGED: u8 = 1;
    /// The upgrade failed and the previous version was restored and is running.
    pub const ROLLED_BACK: u8 = 2;
    /// A step failed and the node needs attention (rollback failed or impossible).
    pub const FAILED: u8 = 3;
    /// Wrong command line.
    pub const USAGE: u8 = 64;
}

/// The `main` of `ckms-install` and `ckms-uninstall`: parse the command line
/// (help and version exit 0, mistakes 64), run, and turn an error into its
/// message on stderr and its exit code. The one place that does.
pub fn main<C: clap::Parser>(
    program: &str,
    run: impl FnOnce(C) -> Result<u8, InstallError>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let cli = match C::try_parse() {
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
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::from(match e {
                InstallError::Usage(_) => exit::USAGE,
                _ => exit::NOTHING_CHANGED,
            })
        }
    }
}
