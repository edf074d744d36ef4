//! The login requests: AppRole, TLS certificate and Azure managed identity
//! all build a path and a JSON body here and go through the same POST in
//! `auth.rs`, so max-TTL and revocation recovery is one code path.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::azure::Imds;
use super::settings::{VaultAuth, normalise_api_path};
use crate::backend::BackendError;

/// The API path (without `/v1/`) and body of a login for `method`.
pub(crate) async fn request(
    method: &VaultAuth,
    imds: Option<&Imds>,
) -> Result<(String, serde_json::Value), BackendError> {
    let (path, body) = match method {
        VaultAuth::Token(_) => {
            return Err(BackendError::Misconfigured(
                "token authentication has no login".to_owned(),
            ));
        }
        VaultAuth::AppRole {
            path,
            role_id,
            secret_id_file,
        } => {
            // Read at each login: secret ids can be rotated on disk.
            let secret_id = read_secret_file(secret_id_file, "AppRole secret id")?;
            (
                path,
                json!({ "role_id": role_id, "secret_id": secret_id.expose_secret() }),
            )
        }
        VaultAuth::Cert { path, role } => (
            path,
            match role {
                Some(r) => json!({ "name": r }),
                None => json!({}),
            },
        ),
        VaultAuth::Azure(az) => {
            let imds = imds.ok_or_else(|| {
                BackendError::Misconfigured(
                    "Azure authentication without a metadata client".to_owned(),
                )
            })?;
            let id = imds.identity(&az.resource).await?;
            let mut body = json!({
                "role": az.role,
                "jwt": id.jwt.expose_secret(),
                "subscription_id": id.subscription_id,
                "resource_group_name": id.resource_group_name,
            });
            if let Some(map) = body.as_object_mut() {
                // Vault's azure auth wants vmss_name for a scale-set VM,
                // vm_name otherwise.
                if let Some(v) = id.vmss_name {
                    map.insert("vmss_name".to_owned(), json!(v));
                } else if let Some(v) = id.vm_name {
                    map.insert("vm_name".to_owned(), json!(v));
                }
            }
            (&az.path, body)
        }
    };
    Ok((normalise_api_path(path).to_owned(), body))
}

/// Read a one-line secret file (surrounding whitespace removed).
///
/// The configuration refuses such a file that other users can read when the
/// node starts or reloads; a file rewritten since (a rotated secret id, a
/// token renewed by an agent) is warned about here, at each read.
pub(crate) fn read_secret_file(path: &Path, what: &str) -> Result<SecretString, BackendError> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            tracing::warn!(
                "the {what} file {} is readable by other users (mode {mode:03o}); run chmod 600 on it",
                path.display()
            );
        }
    }
    let raw = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        BackendError::Misconfigured(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })?);
    let s = raw.trim();
    if s.is_empty() {
        return Err(BackendError::Misconfigured(format!(
            "the {what} file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(s.to_owned()))
}
