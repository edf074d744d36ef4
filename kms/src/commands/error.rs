//! How a command fails, and the one place that says so: [`exit`] prints a
//! [`CommandError`] to stderr and turns it into the process's exit code
//! ([`Status`], from sysexits.h where one fits). systemd's
//! `RestartPreventExitStatus=78` relies on bad configuration being 78.

use std::process::ExitCode;

use crate::backend::BackendError;
use crate::config::ConfigErrors;
use crate::dev::DevError;
use crate::node::StartError;

/// The exit statuses of `cmx-kms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Done.
    Ok,
    /// Done, but not everywhere (`cache flush`: a member did not acknowledge).
    Incomplete,
    /// Bad command line or password input (`EX_USAGE`).
    Usage,
    /// A file's content is bad: a keystore, an audit chain (`EX_DATAERR`).
    Data,
    /// The backend, the port or the running node is not available (`EX_UNAVAILABLE`).
    Unavailable,
    /// A bug or a broken host, not the operator's input (`EX_SOFTWARE`).
    Software,
    /// A file cannot be read or written (`EX_IOERR`).
    Io,
    /// Not allowed (`cmx-kms drain` may not signal the node) (`EX_NOPERM`).
    NotAllowed,
    /// Bad configuration (`EX_CONFIG`): systemd does not restart the unit.
    Config,
}

impl Status {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Incomplete => 1,
            Self::Usage => 64,
            Self::Data => 65,
            Self::Unavailable => 69,
            Self::Software => 70,
            Self::Io => 74,
            Self::NotAllowed => 77,
            Self::Config => 78,
        }
    }
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> Self {
        ExitCode::from(s.code())
    }
}

/// Why a command failed. The message is for the operator; [`CommandError::status`]
/// is the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// kms.properties does not load: every problem, each naming file, line and key.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The node could not start.
    #[error("cmx-kms: {0}")]
    Start(StartError),
    /// What the configuration names cannot be set up for a command: the
    /// keystore, the backend's settings.
    #[error("{0}")]
    Setup(#[from] StartError),
    /// `check-config` found problems: one line each (`file:line: key: problem`),
    /// then how many.
    #[error("{}", problems_text(.0))]
    Problems(Vec<String>),
    /// The backend refused or failed an operator's request.
    #[error("{0}")]
    Backend(#[from] BackendError),
    /// The `dev` folder cannot be prepared.
    #[error("cmx-kms dev: {0}")]
    Dev(#[from] DevError),
    /// The async runtime does not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The command line or a password input is wrong.
    #[error("{0}")]
    Usage(String),
    /// A file's content is bad (a keystore).
    #[error("{0}")]
    Data(String),
    /// The running node, or the process to signal, is not there.
    #[error("{0}")]
    Unavailable(String),
    /// A system call failed in a way the operator cannot fix.
    #[error("{0}")]
    Software(String),
    /// A file cannot be read or written.
    #[error("{0}")]
    Io(String),
    /// Not allowed to signal the node.
    #[error("{0}")]
    NotAllowed(String),
    /// Several independent failures (one per process `drain` signalled);
    /// the last one's status is the command's.
    #[error("{}", several_text(.0))]
    Several(Vec<CommandError>),
    /// The command's report (stdout) already says what failed: nothing more
    /// to print, exit with this status.
    #[error("")]
    Reported(Status),
}

fn problems_text(problems: &[String]) -> String {
    let mut t = String::new();
    for p in problems {
        t.push_str(&format!("{p}\n"));
    }
    t.push_str(&format!("{} problem(s) found", problems.len()));
    t
}

fn several_text(errors: &[CommandError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

impl CommandError {
    /// The exit status this failure ends the process with.
    pub fn status(&self) -> Status {
        match self {
            Self::Config(_) | Self::Setup(_) | Self::Problems(_) => Status::Config,
            Self::Start(StartError::Bind { .. }) => Status::Unavailable,
            Self::Start(StartError::ReloadTask(_)) => Status::Software,
            Self::Start(_) => Status::Config,
            Self::Backend(e) if e.is_config_class() => Status::Config,
            Self::Backend(_) | Self::Unavailable(_) => Status::Unavailable,
            Self::Dev(_) | Self::Io(_) => Status::Io,
            Self::Runtime(_) | Self::Software(_) => Status::Software,
            Self::Usage(_) => Status::Usage,
            Self::Data(_) => Status::Data,
            Self::NotAllowed(_) => Status::NotAllowed,
            Self::Several(errors) => errors.last().map_or(Status::Ok, Self::status),
            Self::Reported(s) => *s,
        }
    }
}

/// Print a command's failure (stderr) and give its exit code: the one place
/// where errors become exit codes.
pub fn exit(result: Result<(), CommandError>) -> ExitCode {
    match result {
        Ok(()) => Status::Ok.into(),
        Err(e) => {
            if !matches!(e, CommandError::Reported(_)) {
                eprintln!("{e}");
            }
            e.status().into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_the_exit_code_operators_and_systemd_expect() {
        let bind = StartError::Bind {
            addr: "127.0.0.1:1".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(CommandError::Start(bind).status().code(), 69);
        let audit = StartError::Audit(crate::audit::AuditError::Open {
            path: "/x".into(),
            reason: "gone".into(),
        });
        assert_eq!(CommandError::Start(audit).status().code(), 78);
        // A reload task that failed is a bug, not bad configuration.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let join = rt.block_on(async {
            let task = tokio::spawn(std::future::pending::<()>());
            task.abort();
            task.await.unwrap_err()
        });
        assert_eq!(
            CommandError::Start(StartError::from(join)).status().code(),
            70
        );
        assert_eq!(CommandError::Usage(String::new()).status().code(), 64);
        // A backend that cannot be reached is 69; one that refuses what
        // kms.properties names (certificate, key, policy) is 78.
        let down = crate::backend::BackendError::Unavailable {
            reason: String::new(),
            retry_after: std::time::Duration::from_secs(1),
        };
        assert_eq!(CommandError::Backend(down).status().code(), 69);
        for e in [
            crate::backend::BackendError::Misconfigured(String::new()),
            crate::backend::BackendError::PermissionDenied(String::new()),
            crate::backend::BackendError::KeyNotFound(String::new()),
            crate::backend::BackendError::KeyNotUsable(String::new()),
        ] {
            assert_eq!(CommandError::Backend(e).status().code(), 78);
        }
        assert_eq!(CommandError::Data(String::new()).status().code(), 65);
        assert_eq!(CommandError::Io(String::new()).status().code(), 74);
        assert_eq!(CommandError::NotAllowed(String::new()).status().code(), 77);
        assert_eq!(
            CommandError::Reported(Status::Incomplete).status().code(),
            1
        );
        let several = CommandError::Several(vec![
            CommandError::NotAllowed("a".into()),
            CommandError::Unavailable("b".into()),
        ]);
        assert_eq!(several.status().code(), 69);
        assert_eq!(several.to_string(), "a\nb");
        let problems =
            CommandError::Problems(vec!["k.properties: one".into(), "k.properties: two".into()]);
        assert_eq!(
            problems.to_string(),
            "k.properties: one\nk.properties: two\n2 problem(s) found"
        );
    }
}
