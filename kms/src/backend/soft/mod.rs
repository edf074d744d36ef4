//! The development-only software master key (`kms.hsm.protocol=soft`).
//!
//! The master key is 32 random bytes sealed in a file next to the config
//! (`kms.hsm.soft.key.file`). Only `cmx-kms dev` and `cmx-kms hsm init` create
//! it ([`create_key_file`]): `serve` refuses a missing file, since a new key
//! would leave every key wrapped before unreadable. The sealing key is
//! derived from the keystore password with PBKDF2-HMAC-SHA256, so the file
//! alone does not reveal the master key. This is for development and demos:
//! the key lives in this process's memory, not in an HSM, and every start
//! says so.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::num::NonZeroU32;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub mod admin;

use async_trait::async_trait;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{
    Backend, BackendError, BackendKind, EndpointState, MasterWrap, ProbeReport, WrapAlgorithm,
};

const FILE_MAGIC: &[u8; 8] = b"CMXSOFT1";
const PBKDF2_ROUNDS: u32 = 200_000;
const TAG_LEN: usize = 16;
const CANARY: &[u8] = b"cmx-kms readiness canary";

/// Why the soft master key could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum SoftKeyError {
    #[error("cannot read the soft master key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the soft master key file {path} does not exist, and only `cmx-kms hsm init` or `cmx-kms dev` creates one \
         (a new key cannot unwrap the keys wrapped before): fix the path, put the existing key file there, \
         or make a new key with `cmx-kms hsm init -c /path/to/kms.properties`"
    )]
    Missing { path: PathBuf },
    #[error("cannot create the soft master key file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a cmx-kms soft master key file (or it is damaged); move it away to create a new key, which makes every key wrapped by the old one unreadable"
    )]
    Corrupt { path: PathBuf },
    #[error(
        "cannot unseal {path}: the keystore password (kms.keystore.password) is not the one the file was sealed with"
    )]
    WrongPassword { path: PathBuf },
    #[error("the operating system's random generator failed")]
    Rng,
}

/// The soft backend.
pub struct SoftBackend {
    key: LessSafeKey,
    key_id: String,
    /// Test switch: when set, every call fails as an unreachable backend would.
    unavailable: AtomicBool,
}

impl std::fmt::Debug for SoftBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftBackend")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SoftBackend {
    /// Open the sealed key at `path`; a missing file is [`SoftKeyError::Missing`]
    /// (what `serve` and `check-config` use: they never create a key).
    pub fn open(path: &Path, password: &SecretString) -> Result<Self, SoftKeyError> {
        match fs::read(path) {
            Ok(bytes) => Self::unseal(path, &bytes, password),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SoftKeyError::Missing {
                path: path.to_owned(),
            }),
            Err(source) => Err(SoftKeyError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Open the sealed key at `path`, creating it (mode 0600) if absent
    /// (`cmx-kms hsm init`). Returns the backend and whether the key was created now.
    pub fn open_or_create(
        path: &Path,
        password: &SecretString,
    ) -> Result<(Self, bool), SoftKeyError> {
        match Self::open(path, password) {
            Err(SoftKeyError::Missing { .. }) => Ok((Self::create(path, password)?, true)),
            other => other.map(|b| (b, false)),
        }
    }

    fn create(path: &Path, password: &SecretString) -> Result<Self, SoftKeyError> {
        let mut master = Zeroizing::new([0u8; 32]);
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        let mut id = [0u8; 8];
        for buf in [master.as_mut_slice(), &mut salt, &mut nonce, &mut id] {
            getrandom::fill(buf).map_err(|_| SoftKeyError::Rng)?;
        }
        let key_id = format!("soft-{}", hex(&id));
        let sealing = sealing_key(password, &salt)?;
        let mut sealed = master.to_vec();
        sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key_id.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SoftKeyError::Rng)?;
        let mut file = Vec::new();
        file.extend_from_slice(FILE_MAGIC);
        file.extend_from_slice(&id);
        file.extend_from_slice(&salt);
        file.extend_from_slice(&nonce);
        file.extend_from_slice(&sealed);
        let create_err = |source| SoftKeyError::Create {
            path: path.to_owned(),
            source,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(create_err)?;
        f.write_all(&file)
            .and_then(|()| f.sync_all())
            .map_err(create_err)?;
        Self::from_key(master.as_slice(), key_id)
    }

    fn unseal(path: &Path, bytes: &[u8], password: &SecretString) -> Result<Self, SoftKeyError> {
        let corrupt = || SoftKeyError::Corrupt {
            path: path.to_owned(),
        };
        let rest = bytes
            .strip_prefix(FILE_MAGIC.as_slice())
            .ok_or_else(corrupt)?;
        if rest.len() != 8 + 16 + 12 + 32 + TAG_LEN {
            return Err(corrupt());
        }
        let (id, rest) = rest.split_at(8);
        let (salt, rest) = rest.split_at(16);
        let (nonce, sealed) = rest.split_at(12);
        let key_id = format!("soft-{}", hex(id));
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let master = sealing_key(password, salt)?
            .open_in_place(nonce, Aad::from(key_id.as_bytes()), &mut buf)
            .map_err(|_| SoftKeyError::WrongPassword {
                path: path.to_owned(),
            })?;
        Self::from_key(master, key_id)
    }

    fn from_key(master: &[u8], key_id: String) -> Result<Self, SoftKeyError> {
        let unbound = UnboundKey::new(&AES_256_GCM, master).map_err(|_| SoftKeyError::Rng)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            key_id,
            unavailable: AtomicBool::new(false),
        })
    }

    /// The master key's id (not secret).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Make the backend behave as if it were unreachable (`true`) or back (`false`).
    /// Lets tests exercise readiness and `backend-unavailable` without a network peer.
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable.store(down, Ordering::SeqCst);
    }

    fn check_up(&self) -> Result<(), BackendError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable {
                reason: "the soft backend is switched off".into(),
                retry_after: Duration::from_secs(1),
            });
        }
        Ok(())
    }
}

/// Create a new soft master key at `path` (mode 0600, never over an existing
/// file), sealed with `password`; returns its id. The one way a key file is
/// made: `cmx-kms dev` for its folder, `cmx-kms hsm init`, and the tests.
pub fn create_key_file(path: &Path, password: &SecretString) -> Result<String, SoftKeyError> {
    SoftBackend::create(path, password).map(|b| b.key_id)
}

fn sealing_key(password: &SecretString, salt: &[u8]) -> Result<LessSafeKey, SoftKeyError> {
    let mut k = Zeroizing::new([0u8; 32]);
    let rounds = NonZeroU32::new(PBKDF2_ROUNDS).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        password.expose_secret().as_bytes(),
        k.as_mut(),
    );
    let unbound = UnboundKey::new(&AES_256_GCM, k.as_slice()).map_err(|_| SoftKeyError::Rng)?;
    Ok(LessSafeKey::new(unbound))
}

fn hex(b: &[u8]) -> String {
    crate::hex::encode(b)
}

#[async_trait]
impl Backend for SoftBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Soft
    }

    async fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<MasterWrap, BackendError> {
        self.check_up()?;
        let mut iv = [0u8; 12];
        getrandom::fill(&mut iv).map_err(|_| {
            BackendError::Misconfigured("the system random generator failed".into())
        })?;
        let mut buf = plaintext.to_vec();
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
            .map_err(|_| BackendError::Protocol("soft wrap failed".into()))?;
        Ok(MasterWrap {
            backend: BackendKind::Soft,
            key_id: self.key_id.clone(),
            key_version: 1,
            algorithm: WrapAlgorithm::AesGcm,
            iv: iv.to_vec(),
            tag: tag.as_ref().to_vec(),
            ciphertext: buf,
        })
    }

    async fn unwrap(&self, w: &MasterWrap, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.check_up()?;
        if w.backend != BackendKind::Soft || w.algorithm != WrapAlgorithm::AesGcm {
            return Err(BackendError::InvalidCiphertext(format!(
                "wrapped by the {} backend, but this node runs the soft backend",
                w.backend.label()
            )));
        }
        if w.key_version != 1 {
            return Err(BackendError::InvalidCiphertext(format!(
                "soft master keys have one version, the blob names version {}",
                w.key_version
            )));
        }
        if w.key_id != self.key_id {
            // The blob is client material: naming another key is a bad blob.
            return Err(BackendError::InvalidCiphertext(format!(
                "wrapped under soft master key {}, but this node holds {}",
                w.key_id, self.key_id
            )));
        }
        let nonce = Nonce::try_assume_unique_for_key(&w.iv)
            .map_err(|_| BackendError::InvalidCiphertext("bad IV length".into()))?;
        let mut buf = Zeroizing::new(Vec::with_capacity(w.ciphertext.len() + w.tag.len()));
        buf.extend_from_slice(&w.ciphertext);
        buf.extend_from_slice(&w.tag);
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| BackendError::InvalidCiphertext("authentication failed".into()))?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }

    async fn probe(&self) -> Result<ProbeReport, BackendError> {
        let w = self.wrap(CANARY, b"canary").await?;
        let back = self.unwrap(&w, b"canary").await?;
        let up = back.as_slice() == CANARY;
        Ok(ProbeReport {
            endpoints: vec![EndpointState {
                endpoint: "soft".into(),
                up,
                detail: if up {
                    "canary ok".into()
                } else {
                    "canary mismatch".into()
                },
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_refuses_a_missing_file_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soft-master.key");
        let pw = SecretString::from("pw");
        let e = SoftBackend::open(&path, &pw).unwrap_err();
        assert!(matches!(e, SoftKeyError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("cmx-kms hsm init"), "{e}");
        assert!(!path.exists());
        let id = create_key_file(&path, &pw).unwrap();
        assert_eq!(SoftBackend::open(&path, &pw).unwrap().key_id(), id);
        // Never over an existing key.
        assert!(matches!(
            create_key_file(&path, &pw),
            Err(SoftKeyError::Create { .. })
        ));
        let (again, created) = SoftBackend::open_or_create(&path, &pw).unwrap();
        assert!(!created && again.key_id() == id);
    }
}
