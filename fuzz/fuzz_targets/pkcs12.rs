#![no_main]
// Format detection and the PKCS#12 path (outer DER checks, p12-keystore,
// Java-style linking of keys, chains and trusted certificates) must never
// panic, whatever the bytes; a store that opens is also listed.
use cmx_kms::keystore::{KeyStore, SecretString, list};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let password = SecretString::from("changeit");
    if let Ok(ks) = KeyStore::from_bytes(data, &password, None) {
        let _ = list::render(&ks, true);
        for cert in ks.certificates() {
            let _ = cmx_kms::keystore::certinfo::CertInfo::from_der(cert.cert());
        }
    }
});
