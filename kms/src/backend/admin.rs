//! The operator's actions on the master key, whatever backend holds it:
//! `cmx-kms hsm init|check|rotate` call [`MasterKeyAdmin`], which the KMIP,
//! Vault and soft backends implement (each in its own `admin` module), and
//! print the one [`AdminReport`] it returns. A new backend implements it too,
//! and [`super::build::admin`] makes it from the configuration.

use async_trait::async_trait;

use super::BackendError;

/// What an admin action did or found, worded by the backend for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminReport {
    /// The report, one line per step or fact.
    pub text: String,
    /// Whether the action did what was asked (for `check`: every step passed).
    pub passed: bool,
    /// When it did not: whether the cause is configuration (certificates,
    /// CA, identity, policy, the master key itself) that an operator must
    /// fix, rather than a backend that cannot be reached. Sets the exit code.
    pub config_problem: bool,
}

impl AdminReport {
    /// A report of an action that succeeded.
    pub fn done(text: impl ToString) -> Self {
        Self {
            text: text.to_string(),
            passed: true,
            config_problem: false,
        }
    }
}

/// Why an admin action did not run.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The backend failed or refused (unreachable, permission, key state).
    #[error("{0}")]
    Backend(#[from] BackendError),
    /// This backend has no such action.
    #[error("{0}")]
    NotSupported(&'static str),
}

/// Operator actions on the master key.
#[async_trait]
pub trait MasterKeyAdmin: Send + Sync {
    /// Create and activate the master key unless a usable one exists.
    async fn init(&self) -> Result<AdminReport, AdminError>;

    /// Walk the whole path (reach, authenticate, find the key, wrap and
    /// unwrap once) and say what is wrong: a failed step is in the report
    /// (`passed` false); an error means the check could not run at all.
    async fn check(&self) -> Result<AdminReport, AdminError>;

    /// A new master key version for new wraps; older versions still unwrap.
    async fn rotate(&self) -> Result<AdminReport, AdminError>;
}
