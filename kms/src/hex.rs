//! Hex encoding without `format!` per byte (it shows up in the hot path's
//! profile: key ids, fingerprints and the audit chain are hex on every request).

const LOWER: &[u8; 16] = b"0123456789abcdef";
const UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push(out: &mut String, b: u8, table: &[u8; 16]) {
    out.push(char::from(table[usize::from(b >> 4)]));
    out.push(char::from(table[usize::from(b & 0x0f)]));
}

/// Lower-case hex, two digits per byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        push(&mut out, b, LOWER);
    }
    out
}

/// Lower-case hex of `bytes` written into `out`, two digits per byte, for
/// fixed-size buffers on the stack. `out` holds `2 * bytes.len()` bytes;
/// whatever does not fit is not written.
pub fn lower_into(out: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&[LOWER[usize::from(b >> 4)], LOWER[usize::from(b & 0x0f)]]);
    }
}

/// Upper-case hex with colons between bytes, as keytool prints fingerprints.
pub fn encode_colons(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, &b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        push(&mut out, b, UPPER);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn into_a_buffer_is_the_same_as_encode() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff, 0x10];
        let mut out = [b'-'; 12];
        super::lower_into(&mut out, &bytes);
        assert_eq!(&out[..10], super::encode(&bytes).as_bytes());
        assert_eq!(&out[10..], b"--", "nothing written past the digits");
    }

    #[test]
    fn both_forms() {
        assert_eq!(super::encode(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(
            super::encode_colons(&[0x00, 0x0f, 0xa5, 0xff]),
            "00:0F:A5:FF"
        );
        assert_eq!(super::encode(&[]), "");
        let all: Vec<u8> = (0..=255).collect();
        let want: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(super::encode(&all), want);
    }
}
