#![no_main]
// The JKS reader must never panic, whatever follows the FEEDFEED magic. The
// whole structure (entries, aliases, chains, lengths) is parsed before the
// SHA-1 integrity check, so random bytes reach all of the parser; a store
// that opens is also listed.
use cmx_kms::keystore::{KeyStore, SecretString, list};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut bytes = vec![0xfe, 0xed, 0xfe, 0xed];
    bytes.extend_from_slice(data);
    let password = SecretString::from("changeit");
    if let Ok(ks) = KeyStore::from_bytes(&bytes, &password, Some(&password)) {
        let _ = list::render(&ks, true);
    }
    let _ = KeyStore::from_bytes(data, &password, None);
});
