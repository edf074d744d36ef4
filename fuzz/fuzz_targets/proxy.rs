#![no_main]
// A PROXY protocol header arrives from the network before TLS: parsing it
// must never panic, whatever the bytes. The first bytes are tried as a v1
// line; a v2 header is its 16 fixed bytes plus its block (the rest, cut to
// the announced length when there is one, as the reader does).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use cmx_kms::http::proxy;
    let _ = proxy::parse_v1(data);
    if let Some((head, rest)) = data.split_first_chunk::<16>() {
        let _ = proxy::parse_v2(head, rest);
        if let Ok(len) = proxy::v2_length(head) {
            let _ = proxy::parse_v2(head, rest.get(..len).unwrap_or(rest));
        }
    }
});
