#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn modified_utf8() {
    assert_eq!(decode_modified_utf8(b"kmsserver").unwrap(), "kmsserver");
    // U+00E9 and U+20AC, and NUL as C0 80
    let s = [0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xc0, 0x80];
    assert_eq!(decode_modified_utf8(&s).unwrap(), "\u{e9}\u{20ac}\0");
    // a supplementary char as a surrogate pair (U+1F600)
    let pair = [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80];
    assert_eq!(decode_modified_utf8(&pair).unwrap(), "\u{1f600}");
    assert!(decode_modified_utf8(&[0xc3]).is_none());
    assert!(decode_modified_utf8(&[0xf0, 0x9f, 0x98, 0x80]).is_none());
}

#[test]
fn passwords_are_utf16be() {
    let pw = SecretString::from("a\u{e9}");
    assert_eq!(&*utf16be(&pw), &[0x00, 0x61, 0x00, 0xe9]);
}

/// Protects `plain` the way Sun's KeyProtector does (test only; also the
/// JKS writer of `keystore::tests`).
pub(in crate::keystore) fn protect(plain: &[u8], password: &[u8], salt: [u8; 20]) -> Vec<u8> {
    let mut data = salt.to_vec();
    let mut block = salt.to_vec();
    for chunk in plain.chunks(DIGEST_LEN) {
        block = Sha1::new()
            .chain_update(password)
            .chain_update(&block)
            .finalize()
            .to_vec();
        data.extend(chunk.iter().zip(&block).map(|(c, k)| c ^ k));
    }
    data.extend(
        Sha1::new()
            .chain_update(password)
            .chain_update(plain)
            .finalize(),
    );
    let oid = [
        0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x11, 0x01, 0x01,
    ];
    let mut body = vec![0x30, 14];
    body.extend(oid);
    body.extend([0x05, 0x00]);
    body.extend(der_long(0x04, data.len()));
    body.extend(data);
    let mut out = der_long(0x30, body.len());
    out.extend(body);
    out
}

/// A DER tag and its length in the long form: one length byte below 256,
/// two from there.
fn der_long(tag: u8, len: usize) -> Vec<u8> {
    match u8::try_from(len) {
        Ok(l) => vec![tag, 0x81, l],
        Err(_) => {
            let l = u16::try_from(len).unwrap().to_be_bytes();
            vec![tag, 0x82, l[0], l[1]]
        }
    }
}

#[test]
fn key_protector_round_trip() {
    let plain: Vec<u8> = [vec![0x30, 45], vec![7u8; 45]].concat();
    let pw = utf16be(&SecretString::from("changeit"));
    let protected = protect(&plain, &pw, [9; 20]);
    assert_eq!(&*recover_key(&protected, &pw).unwrap(), &plain[..]);
    let wrong = utf16be(&SecretString::from("changeme"));
    assert_eq!(
        recover_key(&protected, &wrong).unwrap_err(),
        KeyFailure::WrongPassword
    );
    for cut in 0..protected.len() {
        assert!(recover_key(&protected[..cut], &pw).is_err());
    }
}
