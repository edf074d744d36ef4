//! Master key versions at the HSM: find them by name, read their state,
//! pick the current one, create, activate, revoke and destroy them.

use super::failure::map_failure;
use super::messages;
use super::pool::{CallError, CallOptions, Client};
use super::response::{self, KeyAttributes};
use super::tags::{self, operation as op};
use crate::backend::BackendError;

/// Attributes we read from each key version.
const ATTRIBUTE_NAMES: [&str; 3] = ["State", "Initial Date", "Activation Date"];

/// Key length of the master keys we create.
pub const MASTER_KEY_BITS: i32 = 256;

/// One master key version at the HSM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The HSM's Unique Identifier.
    pub uid: String,
    pub attributes: KeyAttributes,
}

impl KeyInfo {
    /// Whether the key can be used for new wraps.
    pub fn is_active(&self) -> bool {
        self.attributes.state == Some(tags::state::ACTIVE)
    }

    /// The key's state in plain words.
    pub fn state_name(&self) -> &'static str {
        self.attributes
            .state
            .map_or("in an unknown state", tags::state::name)
    }
}

fn to_backend(e: CallError, what: &str) -> BackendError {
    match e {
        CallError::Backend(e) => e,
        CallError::Kmip(f) => map_failure(&f, what),
    }
}

fn protocol(e: messages::MessageError) -> BackendError {
    BackendError::Protocol(e.0)
}

/// Locates every object named `name` and reads its state and dates.
pub(crate) async fn find(client: &Client, name: &str) -> Result<Vec<KeyInfo>, BackendError> {
    let answer = client
        .call(op::LOCATE, CallOptions::DEFAULT, |_| {
            messages::locate_by_name(name)
        })
        .await
        .map_err(|e| to_backend(e, name))?;
    let uids = response::locate(answer.payload.as_ref()).map_err(protocol)?;
    let mut found = Vec::with_capacity(uids.len());
    for uid in uids {
        let attributes = attributes(client, &uid).await?;
        found.push(KeyInfo { uid, attributes });
    }
    Ok(found)
}

/// Reads state and dates of one object.
pub(crate) async fn attributes(client: &Client, uid: &str) -> Result<KeyAttributes, BackendError> {
    let answer = client
        .call(op::GET_ATTRIBUTES, CallOptions::DEFAULT, |_| {
            messages::get_attributes(uid, &ATTRIBUTE_NAMES)
        })
        .await
        .map_err(|e| to_backend(e, uid))?;
    response::get_attributes(answer.payload.as_ref()).map_err(protocol)
}

/// Sort key for "newest": activation (or creation) date, then the identifier
/// (numerically where both are numbers, as PyKMIP's are).
fn age_key(k: &KeyInfo) -> (i64, u64, &str) {
    let date = k
        .attributes
        .activation_date
        .or(k.attributes.initial_date)
        .unwrap_or(i64::MIN);
    (date, k.uid.parse::<u64>().unwrap_or(0), k.uid.as_str())
}

/// The error for a name under which the identity sees no key at all.
pub(crate) fn no_master_key(name: &str) -> BackendError {
    BackendError::KeyNotFound(format!(
        "the HSM has no key named {name:?} visible to the kmsClient identity: create it \
         with `cmx-kms hsm init`, or check kms.hsm.key.name and the key's owner or policy"
    ))
}

/// The newest active version, or an error saying in plain words what is wrong.
pub(crate) fn choose_current<'a>(
    name: &str,
    keys: &'a [KeyInfo],
) -> Result<&'a KeyInfo, BackendError> {
    if keys.is_empty() {
        return Err(no_master_key(name));
    }
    keys.iter()
        .filter(|k| k.is_active())
        .max_by(|a, b| age_key(a).cmp(&age_key(b)))
        .ok_or_else(|| {
            let states: Vec<String> = keys
                .iter()
                .map(|k| format!("{} is {}", k.uid, k.state_name()))
                .collect();
            BackendError::KeyNotUsable(format!(
                "the HSM has keys named {name:?} but none is active ({}): activate one, or run \
                 `cmx-kms hsm rotate` to create a new active version",
                states.join(", ")
            ))
        })
}

/// Creates a new AES-256 key version named `name` and activates it.
pub(crate) async fn create_active(
    client: &Client,
    name: &str,
    policy: Option<&str>,
) -> Result<String, BackendError> {
    // Create is not idempotent: never retried on a connection that may have delivered it.
    let options = CallOptions {
        version: None,
        idempotent: false,
    };
    let answer = client
        .call(op::CREATE, options, |_| {
            messages::create_aes_key(Some(name), MASTER_KEY_BITS, policy)
        })
        .await
        .map_err(|e| to_backend(e, name))?;
    let uid = response::unique_identifier(answer.payload.as_ref(), "Create").map_err(protocol)?;
    activate(client, &uid).await?;
    Ok(uid)
}

/// Activates `uid`.
pub(crate) async fn activate(client: &Client, uid: &str) -> Result<(), BackendError> {
    uid_only(client, op::ACTIVATE, uid).await
}

/// Revokes `uid` (reason: cessation of operation). It can no longer encrypt or decrypt.
pub(crate) async fn revoke(client: &Client, uid: &str) -> Result<(), BackendError> {
    client
        .call(op::REVOKE, CallOptions::DEFAULT, |_| {
            messages::revoke(
                uid,
                tags::REVOCATION_REASON_CESSATION_OF_OPERATION,
                Some("retired by cmx-kms"),
                None,
            )
        })
        .await
        .map_err(|e| to_backend(e, uid))?;
    Ok(())
}

/// Destroys `uid` (it must not be active). Blobs wrapped under it are lost.
pub(crate) async fn destroy(client: &Client, uid: &str) -> Result<(), BackendError> {
    uid_only(client, op::DESTROY, uid).await
}

/// An operation whose request names `uid` and nothing else.
async fn uid_only(client: &Client, operation: u32, uid: &str) -> Result<(), BackendError> {
    client
        .call(operation, CallOptions::DEFAULT, |_| messages::uid_only(uid))
        .await
        .map_err(|e| to_backend(e, uid))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn key(uid: &str, state: u32, activated: Option<i64>) -> KeyInfo {
        KeyInfo {
            uid: uid.into(),
            attributes: KeyAttributes {
                state: Some(state),
                initial_date: Some(100),
                activation_date: activated,
            },
        }
    }

    #[test]
    fn current_is_the_newest_active_version() {
        use tags::state::{ACTIVE, DEACTIVATED, PRE_ACTIVE};
        let keys = [
            key("9", ACTIVE, Some(200)),
            key("10", ACTIVE, Some(200)),
            key("11", PRE_ACTIVE, None),
            key("12", DEACTIVATED, Some(300)),
            key("3", ACTIVE, Some(150)),
        ];
        // Same activation second: the numerically larger identifier wins.
        assert_eq!(
            choose_current("m", &keys).map(|k| k.uid.as_str()).ok(),
            Some("10")
        );
        let err = choose_current("m", &keys[2..4]).expect_err("none active");
        assert!(matches!(err, BackendError::KeyNotUsable(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("11 is pre-active, 12 is deactivated"),
            "{err}"
        );
        let err = choose_current("m", &[]).expect_err("none");
        assert!(matches!(err, BackendError::KeyNotFound(_)), "{err:?}");
    }
}
