//! Master key versions at the HSM: find them by name, read their state,
//! pick the current one, create, activate, revoke and destroy them.

use super::failure::map_failure;
use super::messages;
use super::pool::{CallError, CallOptions, Client};
use super::response::{self, KeyAttributes};
use super::tags::{self, operation as op};
use crate::backend::BackendError;

/// Attributes we read from each key version.
const ATTRIBUTE_NAMES: [&str; 5] = [
    "State",
    "Initial Date",
    "Activation Date",
    "Cryptographic Algorithm",
    "Cryptographic Length",
];

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

    /// Whether the key is AES-256, the only master key cmx-kms wraps under.
    pub fn is_aes256(&self) -> bool {
        self.attributes.algorithm == Some(tags::CRYPTOGRAPHIC_ALGORITHM_AES)
            && self.attributes.length == Some(MASTER_KEY_BITS)
    }

    /// The key's algorithm and length in plain words, e.g. `AES-256`.
    pub fn kind_name(&self) -> String {
        let algorithm = self
            .attributes
            .algorithm
            .map_or_else(|| "unknown algorithm".to_owned(), tags::algorithm_name);
        let length = self
            .attributes
            .length
            .map_or_else(|| "unknown length".to_owned(), |l| l.to_string());
        format!("{algorithm}-{length}")
    }

    /// `uid (state, algorithm-length)`, for reports.
    pub fn describe(&self) -> String {
        format!("{} ({}, {})", self.uid, self.state_name(), self.kind_name())
    }
}

/// What an operator can do about a master key version in `state` that is not
/// active, for new wraps (`decrypt` false) or for blobs wrapped under it.
pub(crate) fn state_advice(uid: &str, state: Option<u32>, decrypt: bool) -> String {
    use tags::state::{COMPROMISED, DEACTIVATED, DESTROYED, DESTROYED_COMPROMISED, PRE_ACTIVE};
    match state {
        Some(PRE_ACTIVE) => format!(
            "version {uid} is pre-active at the HSM: activate it there (KMIP Activate), \
             then it can be used"
        ),
        Some(DEACTIVATED | COMPROMISED) if decrypt => format!(
            "version {uid} is {} at the HSM, and a deactivated KMIP key cannot be activated \
             again: blobs wrapped under it open only if the HSM allows Decrypt with deactivated \
             keys (or the key is restored in the active state from the HSM's backup); \
             `cmx-kms hsm rotate` only gives new wraps a new version",
            tags::state::name(state.unwrap_or_default())
        ),
        Some(DEACTIVATED | COMPROMISED) => format!(
            "version {uid} is {} at the HSM and cannot be activated again: run \
             `cmx-kms hsm rotate` to create a new active version for new wraps",
            tags::state::name(state.unwrap_or_default())
        ),
        Some(DESTROYED | DESTROYED_COMPROMISED) => format!(
            "version {uid} is destroyed at the HSM: blobs wrapped under it are lost; run \
             `cmx-kms hsm rotate` if no active version is left"
        ),
        _ => format!(
            "version {uid} is in an unknown state at the HSM: activate it there, or run \
             `cmx-kms hsm rotate` to create a new active version"
        ),
    }
}

/// Why a version of the wrong kind cannot be the master key, and what to do.
pub(crate) fn kind_problem(name: &str, k: &KeyInfo) -> String {
    format!(
        "version {} of master key {name:?} is {}, but cmx-kms wraps only under AES-256 keys: \
         run `cmx-kms hsm rotate` to add an AES-256 version under the same name (blobs under \
         the old version still unwrap; rewrap them, then revoke it), or set kms.hsm.key.name \
         to an AES-256 key",
        k.uid,
        k.kind_name()
    )
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
///
/// In a cluster the usual cause is another identity: the key exists, but
/// belongs to the `kmsClient` certificate of the node that ran `hsm init`.
/// Running `hsm init` here would create a second master key of that name
/// that the other nodes cannot open, so that advice comes last.
pub(crate) fn no_master_key(name: &str) -> BackendError {
    BackendError::KeyNotFound(format!(
        "the HSM has no key named {name:?} visible to the kmsClient identity. If other nodes \
         already use this key, this node must present the same kmsClient identity (the same \
         keystore entry) as they do, or the key's owner or operation policy at the HSM must \
         let this identity use it; do NOT run `cmx-kms hsm init` here, it would create a \
         second master key of that name that the other nodes cannot open. Otherwise check \
         kms.hsm.key.name; on the first node of a new installation create the key with \
         `cmx-kms hsm init`"
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
    if let Some(k) = keys
        .iter()
        .filter(|k| k.is_active() && k.is_aes256())
        .max_by(|a, b| age_key(a).cmp(&age_key(b)))
    {
        return Ok(k);
    }
    if let Some(k) = keys
        .iter()
        .filter(|k| k.is_active())
        .max_by(|a, b| age_key(a).cmp(&age_key(b)))
    {
        return Err(BackendError::KeyNotUsable(kind_problem(name, k)));
    }
    let states: Vec<String> = keys
        .iter()
        .map(|k| format!("{} is {}", k.uid, k.state_name()))
        .collect();
    let advice: Vec<String> = keys
        .iter()
        .map(|k| state_advice(&k.uid, k.attributes.state, false))
        .collect();
    Err(BackendError::KeyNotUsable(format!(
        "the HSM has keys named {name:?} but none is active ({}): {}",
        states.join(", "),
        advice.join("; ")
    )))
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
                algorithm: Some(tags::CRYPTOGRAPHIC_ALGORITHM_AES),
                length: Some(MASTER_KEY_BITS),
            },
        }
    }

    #[test]
    fn only_aes_256_versions_become_current() {
        use tags::state::ACTIVE;
        let mut aes128 = key("20", ACTIVE, Some(500));
        aes128.attributes.length = Some(128);
        let mut des3 = key("21", ACTIVE, Some(600));
        des3.attributes.algorithm = Some(2);
        des3.attributes.length = Some(192);
        let mut unknown = key("22", ACTIVE, Some(700));
        unknown.attributes.algorithm = None;
        let good = key("5", ACTIVE, Some(100));
        // The newer wrong-kind versions are passed over for the AES-256 one.
        let keys = [aes128.clone(), des3.clone(), unknown, good];
        assert_eq!(
            choose_current("m", &keys).map(|k| k.uid.as_str()).ok(),
            Some("5")
        );
        for (k, kind) in [(aes128, "AES-128"), (des3, "TRIPLE_DES-192")] {
            let err = choose_current("m", std::slice::from_ref(&k)).expect_err("wrong kind");
            assert!(matches!(err, BackendError::KeyNotUsable(_)), "{err:?}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("version {} of master key \"m\" is {kind}", k.uid))
                    && text.contains("only under AES-256")
                    && text.contains("hsm rotate"),
                "{text}"
            );
        }
    }

    #[test]
    fn advice_follows_the_state() {
        use tags::state::{DEACTIVATED, PRE_ACTIVE};
        let err = choose_current("m", &[key("7", PRE_ACTIVE, None)]).expect_err("pre-active");
        assert!(err.to_string().contains("activate it there"), "{err}");
        let err = choose_current("m", &[key("8", DEACTIVATED, None)]).expect_err("deactivated");
        let text = err.to_string();
        assert!(
            text.contains("cannot be activated again") && text.contains("hsm rotate"),
            "{text}"
        );
        assert!(!text.contains("activate it there"), "{text}");
        let unwrap = state_advice("8", Some(DEACTIVATED), true);
        assert!(
            unwrap.contains("open only if the HSM allows Decrypt")
                && unwrap.contains("only gives new wraps"),
            "{unwrap}"
        );
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
