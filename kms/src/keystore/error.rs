//! Errors of the keystore reader. Messages say what is wrong and what to do;
//! they never contain passwords or key bytes.

use std::io;
use std::path::PathBuf;

use super::{EntryKind, KeystoreFormat};

/// Everything that can go wrong reading (or converting) a keystore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The file could not be read at all.
    #[error("cannot read keystore file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The bytes are not a keystore: empty, truncated, or an unknown magic.
    #[error("not a keystore: {reason}")]
    NotAKeystore { reason: String },

    /// The store password does not open the keystore (integrity check or MAC failed).
    #[error(
        "the keystore password is wrong: the {format} integrity check failed \
         (if the password is right, the file was altered or damaged)"
    )]
    WrongStorePassword { format: KeystoreFormat },

    /// The store password opened the keystore but not this private key.
    #[error(
        "the key password of alias '{alias}' is wrong: pass the key password it was stored with \
         (keytool -destkeypass), or make it equal to the keystore password with \
         keytool -keypasswd -alias {alias}"
    )]
    WrongKeyPassword { alias: String },

    /// A keystore format or algorithm this reader does not read.
    #[error("unsupported keystore: {what}; {todo}")]
    Unsupported { what: String, todo: String },

    /// The keystore opened, but an entry in it is malformed.
    #[error("corrupt keystore entry{}: {reason}", alias_suffix(alias.as_deref()))]
    CorruptEntry {
        alias: Option<String>,
        reason: String,
    },

    /// No entry has this alias (aliases compare case-insensitively).
    #[error("alias '{alias}' is not in the keystore; it contains: {present}")]
    AliasMissing { alias: String, present: String },

    /// The alias exists but holds the other kind of entry.
    #[error("alias '{alias}' is a {actual} but a {wanted} is needed")]
    WrongEntryType {
        alias: String,
        actual: EntryKind,
        wanted: EntryKind,
    },

    /// Writing a PKCS#12 file failed (conversion).
    #[error("cannot write the PKCS#12 keystore: {reason}")]
    Write { reason: String },
}

fn alias_suffix(alias: Option<&str>) -> String {
    alias.map(|a| format!(" '{a}'")).unwrap_or_default()
}

impl KeystoreError {
    pub(crate) fn truncated(what: &str) -> Self {
        Self::NotAKeystore {
            reason: format!("the file is truncated ({what})"),
        }
    }

    pub(crate) fn corrupt(alias: Option<&str>, reason: impl Into<String>) -> Self {
        Self::CorruptEntry {
            alias: alias.map(str::to_owned),
            reason: reason.into(),
        }
    }
}

/// A keystore problem and the keystore file it is about, as start-up, reloads
/// and the commands report it: `keystore PATH: problem`.
#[derive(Debug, thiserror::Error)]
#[error("keystore {}: {source}", path.display())]
pub struct KeystoreFileError {
    pub path: PathBuf,
    #[source]
    pub source: KeystoreError,
}

impl KeystoreFileError {
    /// Maps errors about the keystore at `path` (`map_err(KeystoreFileError::at(path))`).
    pub fn at(path: &std::path::Path) -> impl Fn(KeystoreError) -> Self + '_ {
        move |source| Self {
            path: path.to_owned(),
            source,
        }
    }
}
