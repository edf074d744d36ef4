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
    push_lower(&mut out, bytes);
    out
}

/// The two lower-case hex digits of `b`.
pub fn lower_pair(b: u8) -> [u8; 2] {
    [LOWER[usize::from(b >> 4)], LOWER[usize::from(b & 0x0f)]]
}

/// Lower-case hex of `bytes` appended to `out` (no allocation of its own).
pub fn push_lower(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        push(out, b, LOWER);
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
