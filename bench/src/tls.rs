//! The client side of mutual TLS: trust the dev CA, present a client
//! certificate, TLS 1.3 only (what both servers under test negotiate).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::crypto::ring;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::BenchError;

/// PEM files for one client identity (also the `--ca`, `--cert`, `--key`
/// options of the subcommands that connect as one client).
#[derive(Clone, Debug, clap::Args)]
pub struct ClientFiles {
    #[arg(long)]
    pub ca: PathBuf,
    #[arg(long)]
    pub cert: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
}

/// Every certificate in the PEM file at `path`, in order.
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, BenchError> {
    CertificateDer::pem_file_iter(path)
        .map_err(BenchError::pem(path))?
        .collect::<Result<_, _>>()
        .map_err(BenchError::pem(path))
}

/// A rustls client configuration (ring provider) for `files`.
pub fn client_config(files: &ClientFiles) -> Result<Arc<ClientConfig>, BenchError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&files.ca)? {
        roots.add(ca).map_err(|e| BenchError::Tls(e.to_string()))?;
    }
    let chain = certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(BenchError::pem(&files.key))?;
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| BenchError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| BenchError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}
