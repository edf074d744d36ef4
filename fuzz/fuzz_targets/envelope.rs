#![no_main]
// Envelope decoding must never panic, whatever the bytes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = cmx_kms::envelope::Envelope::decode(data);
});
