//! Authentication of AES-CBC wraps (encrypt-then-MAC), so that the HSM never
//! decrypts CBC material a client made up.
//!
//! KMIP 1.2 and 1.3 have no AEAD fields, so a 1.2-only HSM wraps customer keys
//! with AES-CBC/PKCS#5, which authenticates nothing: an HSM that decrypts a
//! forged CBC blob and a server that tells bad padding from a good-padding,
//! wrong-length result are together a padding oracle that gives away the
//! customer key (see `docs/design/kmip.md`, "CBC wraps are authenticated").
//!
//! Every CBC wrap therefore carries an HMAC-SHA256 tag over the envelope
//! header, the master key's identifier, the IV and the ciphertext. The tag key
//! is derived from the master key version itself, by the HSM: the AES-CBC
//! encryption, with an all-zero IV, of a fixed 32-byte label that no wrap ever
//! encrypts (wraps encrypt fresh random keys under fresh random IVs). That is a
//! CBC-MAC of a fixed-length message, a pseudo-random function of the master
//! key, hashed once more into a 256-bit HMAC key. It costs one Encrypt per
//! master key version per process, holds no state outside the HSM, and is the
//! same on every node of a cluster whatever KMIP version each negotiated.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// What the HSM encrypts to derive a version's tag key. Exactly two blocks.
pub(super) const DERIVATION_LABEL: &[u8; 32] = b"cmx-kms CBC wrap-auth key v1 \0\0\0";

/// The fixed IV of the derivation (and only of the derivation).
pub(super) const DERIVATION_IV: [u8; 16] = [0u8; 16];

/// Length of the derivation's ciphertext: the label plus one PKCS#5 padding block.
pub(super) const DERIVATION_OUTPUT_LEN: usize = 48;

/// Domain separation for the tag input and the key hash.
const TAG_DOMAIN: &[u8] = b"cmx-kms cbc-hmac-sha256 v1";
const KEY_DOMAIN: &[u8] = b"cmx-kms wrap-auth key v1";

/// The tag key of one master key version. Never leaves memory; wiped on drop.
/// The HMAC state built from it lives only for one tag computation.
pub(super) struct AuthKey {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthKey([redacted])")
    }
}

impl AuthKey {
    /// Builds the tag key from the HSM's encryption of [`DERIVATION_LABEL`].
    /// `None` if the HSM's answer has an unexpected length.
    pub(super) fn from_derivation(hsm_output: &[u8]) -> Option<Self> {
        if hsm_output.len() != DERIVATION_OUTPUT_LEN {
            return None;
        }
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        h.update(hsm_output);
        Some(Self {
            key: Zeroizing::new(h.finalize().into()),
        })
    }

    fn context(&self, aad: &[u8], uid: &str, iv: &[u8], ciphertext: &[u8]) -> HmacSha256 {
        // A 32-byte key is always a valid HMAC key: the fallback never runs.
        let mut ctx = <HmacSha256 as KeyInit>::new_from_slice(self.key.as_ref())
            .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
        ctx.update(TAG_DOMAIN);
        // Lengths first, so no two field splits give the same input.
        for part in [aad, uid.as_bytes(), iv, ciphertext] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx
    }

    /// The tag of a wrap.
    pub(super) fn tag(&self, aad: &[u8], uid: &str, iv: &[u8], ciphertext: &[u8]) -> Vec<u8> {
        self.context(aad, uid, iv, ciphertext)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Whether `tag` is the tag of this wrap, compared in constant time.
    pub(super) fn verify(
        &self,
        aad: &[u8],
        uid: &str,
        iv: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
    ) -> bool {
        // verify_slice compares in constant time; a tag of another length fails.
        self.context(aad, uid, iv, ciphertext)
            .verify_slice(tag)
            .is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(seed: u8) -> AuthKey {
        AuthKey::from_derivation(&[seed; DERIVATION_OUTPUT_LEN]).unwrap()
    }

    #[test]
    fn label_is_two_blocks() {
        assert_eq!(DERIVATION_LABEL.len(), 32);
    }

    #[test]
    fn tags_bind_every_field_and_the_key() {
        let k = key(1);
        let (aad, uid, iv, ct) = (b"header".as_slice(), "42", [3u8; 16], [4u8; 48]);
        let tag = k.tag(aad, uid, &iv, &ct);
        assert_eq!(tag.len(), 32);
        assert!(k.verify(aad, uid, &iv, &ct, &tag));
        assert!(
            !key(2).verify(aad, uid, &iv, &ct, &tag),
            "another version's key"
        );
        assert!(!k.verify(b"headeR", uid, &iv, &ct, &tag));
        assert!(!k.verify(aad, "43", &iv, &ct, &tag));
        let mut iv2 = iv;
        iv2[15] ^= 1;
        assert!(!k.verify(aad, uid, &iv2, &ct, &tag));
        for i in 0..ct.len() {
            let mut c = ct;
            c[i] ^= 0x80;
            assert!(!k.verify(aad, uid, &iv, &c, &tag), "ciphertext byte {i}");
        }
        for i in 0..tag.len() {
            let mut t = tag.clone();
            t[i] ^= 1;
            assert!(!k.verify(aad, uid, &iv, &ct, &t), "tag byte {i}");
        }
        assert!(!k.verify(aad, uid, &iv, &ct, &tag[..31]), "short tag");
        assert!(!k.verify(aad, uid, &iv, &ct, &[]), "no tag");
        // Moving bytes between fields changes the tag (lengths are bound).
        assert!(!k.verify(b"heade", "r42", &iv, &ct, &tag));
    }

    #[test]
    fn derivation_output_must_have_the_expected_length() {
        assert!(AuthKey::from_derivation(&[0u8; 32]).is_none());
        assert!(AuthKey::from_derivation(&[0u8; 64]).is_none());
    }

    #[test]
    fn debug_shows_no_key() {
        assert_eq!(format!("{:?}", key(9)), "AuthKey([redacted])");
    }
}
