//! What a failed KMIP call means for the caller: each HSM answer (or
//! transport failure) mapped to a [`BackendError`] class that says whether
//! to retry and what the operator should do.

use super::backend::KmipBackend;
use super::master_key;
use super::messages;
use super::pool::CallError;
use super::response::Failure;
use super::tags::{self, operation as op, reason};
use crate::backend::BackendError;

impl KmipBackend {
    /// Maps a failed call on key `uid` to what the caller can do about it.
    pub(super) async fn classify_async(&self, error: CallError, uid: &str) -> BackendError {
        match error {
            CallError::Kmip(f)
                if f.reason == Some(reason::PERMISSION_DENIED)
                    && matches!(f.operation, op::ENCRYPT | op::DECRYPT) =>
            {
                // PyKMIP (and others) answer Permission Denied for a key that
                // is not active: look at the state before blaming the identity.
                match master_key::attributes(&self.client, uid).await {
                    Ok(a) if a.state.is_some_and(|s| s != tags::state::ACTIVE) => {
                        let decrypt = f.operation == op::DECRYPT;
                        let what = if decrypt { "an unwrap" } else { "a wrap" };
                        BackendError::KeyNotUsable(format!(
                            "the HSM refused {what}: master key {}",
                            master_key::state_advice(uid, a.state, decrypt)
                        ))
                    }
                    _ => self.classify(CallError::Kmip(f), uid),
                }
            }
            other => self.classify(other, uid),
        }
    }

    pub(super) fn classify(&self, error: CallError, uid: &str) -> BackendError {
        match error {
            CallError::Backend(e) => e,
            CallError::Kmip(f) => map_failure(&f, uid),
        }
    }
}

pub(super) fn protocol(e: messages::MessageError) -> BackendError {
    BackendError::Protocol(e.0)
}

/// Maps a KMIP failure on key `uid` to a backend error class.
pub(super) fn map_failure(f: &Failure, uid: &str) -> BackendError {
    match f.reason {
        Some(reason::ITEM_NOT_FOUND) => BackendError::KeyNotFound(format!(
            "the HSM has no master key with identifier {uid} ({f})"
        )),
        Some(reason::PERMISSION_DENIED | reason::AUTHENTICATION_NOT_SUCCESSFUL) => {
            BackendError::PermissionDenied(format!(
                "the HSM refused {} on master key {uid} for the kmsClient identity ({f}): the key \
                 must belong to this identity or carry an operation policy that allows it",
                op::name(f.operation)
            ))
        }
        Some(reason::CRYPTOGRAPHIC_FAILURE | reason::GENERAL_FAILURE)
            if f.operation == op::DECRYPT =>
        {
            BackendError::InvalidCiphertext(format!(
                "the HSM cannot decrypt this blob under master key {uid} ({f})"
            ))
        }
        Some(reason::OPERATION_NOT_SUPPORTED | reason::FEATURE_NOT_SUPPORTED) => {
            BackendError::Misconfigured(format!(
                "the HSM does not support what cmx-kms needs ({f}): check the KMIP version"
            ))
        }
        _ => BackendError::Protocol(f.to_string()),
    }
}
