//! Fuzz the TTLV decoder and the KMIP response parser: no input may panic,
//! and whatever decodes must encode back to something that decodes equal.

#![no_main]

use cmx_kms::backend::kmip::response::{self, parse_response};
use cmx_kms::backend::kmip::tags::operation as op;
use cmx_kms::backend::kmip::ttlv::Item;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(item) = Item::decode(data) else {
        return;
    };
    let encoded = item.encode().expect("a decoded item encodes");
    assert_eq!(Item::decode(&encoded).as_ref(), Ok(&item));

    for operation in [op::DISCOVER_VERSIONS, op::LOCATE, op::GET_ATTRIBUTES, op::ENCRYPT, op::DECRYPT] {
        if let Ok(resp) = parse_response(&item, operation) {
            if let Ok(payload) = resp.result {
                let p = payload.as_ref();
                let _ = response::discover_versions(p);
                let _ = response::query(p);
                let _ = response::locate(p);
                let _ = response::unique_identifier(p, "fuzz");
                let _ = response::get_attributes(p);
                let _ = response::encrypt(p);
                let _ = response::decrypt(p);
            }
        }
    }
});
