//! `cmx-kms hsm init|check|rotate` for the development-only soft backend:
//! init and check open the key file and run the canary; there is one master
//! key version, so nothing to rotate.

use std::path::PathBuf;

use async_trait::async_trait;

use super::SoftBackend;
use crate::backend::{AdminError, AdminReport, Backend, MasterKeyAdmin};

/// The soft master key and the file it is sealed in (for the report).
#[derive(Debug)]
pub struct SoftAdmin {
    backend: SoftBackend,
    key_file: PathBuf,
}

impl SoftAdmin {
    /// Admin for `backend`, whose key is sealed in `key_file`.
    pub fn new(backend: SoftBackend, key_file: PathBuf) -> Self {
        Self { backend, key_file }
    }

    async fn works(&self) -> Result<AdminReport, AdminError> {
        self.backend.probe().await?;
        Ok(AdminReport::done(format!(
            "soft master key in {} works (development only)",
            self.key_file.display()
        )))
    }
}

#[async_trait]
impl MasterKeyAdmin for SoftAdmin {
    async fn init(&self) -> Result<AdminReport, AdminError> {
        self.works().await
    }

    async fn check(&self) -> Result<AdminReport, AdminError> {
        self.works().await
    }

    async fn rotate(&self) -> Result<AdminReport, AdminError> {
        Err(AdminError::NotSupported(
            "the soft backend has one master key version; it cannot rotate",
        ))
    }
}
