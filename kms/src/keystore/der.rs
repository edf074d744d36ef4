//! A minimal, bounds-checked DER TLV reader: enough to check the outer shape of
//! a PKCS#12 file and to take apart the `EncryptedPrivateKeyInfo` of a JKS key.

/// DER tags used here.
pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_NULL: u8 = 0x05;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;

/// Why a TLV could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DerError {
    /// The input ends before the header or the value does.
    Truncated,
    /// Not DER we accept (high tag numbers, indefinite or over-long lengths).
    Malformed,
}

/// One tag-length-value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) value: &'a [u8],
}

/// Reads one TLV from the start of `input`; returns it and the rest.
pub(crate) fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or(DerError::Truncated)?;
    if tag & 0x1f == 0x1f {
        return Err(DerError::Malformed);
    }
    let (&first, mut rest) = rest.split_first().ok_or(DerError::Truncated)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        // 0x80 is BER's indefinite length; more than 4 length bytes is absurd here.
        if count == 0 || count > 4 {
            return Err(DerError::Malformed);
        }
        let (bytes, after) = rest.split_at_checked(count).ok_or(DerError::Truncated)?;
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (value, rest) = rest.split_at_checked(len).ok_or(DerError::Truncated)?;
    Ok((Tlv { tag, value }, rest))
}

/// Reads one TLV that must have tag `tag`.
pub(crate) fn expect_tlv(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), DerError> {
    let (tlv, rest) = read_tlv(input)?;
    if tlv.tag != tag {
        return Err(DerError::Malformed);
    }
    Ok((tlv.value, rest))
}

/// True when `input` is exactly one DER SEQUENCE with nothing after it.
pub(crate) fn is_single_sequence(input: &[u8]) -> bool {
    matches!(expect_tlv(input, TAG_SEQUENCE), Ok((_, rest)) if rest.is_empty())
}

/// Appends one DER TLV (definite length) to `out`.
pub(crate) fn write_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.extend(u8::try_from(len));
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let used = bytes.get(skip..).unwrap_or_default();
        out.extend(u8::try_from(used.len()).map(|n| 0x80 | n));
        out.extend_from_slice(used);
    }
    out.extend_from_slice(value);
}

/// The DER content bytes of an OID in dotted form (`1.3.6.1...`), for comparisons.
pub(crate) fn oid_to_string(content: &[u8]) -> Option<String> {
    let (&first, rest) = content.split_first()?;
    let arc0 = u64::from(first / 40).min(2);
    let mut parts = vec![arc0, u64::from(first) - arc0 * 40];
    let mut acc: u64 = 0;
    for &b in rest {
        acc = acc.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            parts.push(acc);
            acc = 0;
        }
    }
    if content.last().is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    Some(
        parts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn short_and_long_lengths() {
        let (t, rest) = read_tlv(&[0x04, 0x02, 0xaa, 0xbb, 0x00]).unwrap();
        assert_eq!(
            (t.tag, t.value, rest),
            (0x04, &[0xaa, 0xbb][..], &[0x00][..])
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        assert_eq!(read_tlv(&long).unwrap().0.value.len(), 0x80);
        assert_eq!(read_tlv(&long[..50]).unwrap_err(), DerError::Truncated);
        assert_eq!(read_tlv(&[0x30, 0x80]).unwrap_err(), DerError::Malformed);
        assert_eq!(read_tlv(&[0x30]).unwrap_err(), DerError::Truncated);
        assert_eq!(
            read_tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).unwrap_err(),
            DerError::Malformed
        );
    }

    #[test]
    fn writes_what_it_reads() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let value = vec![0x42; len];
            let mut out = Vec::new();
            write_tlv(&mut out, TAG_OCTET_STRING, &value);
            let (tlv, rest) = read_tlv(&out).unwrap();
            assert_eq!(
                (tlv.tag, tlv.value, rest.len()),
                (TAG_OCTET_STRING, &value[..], 0)
            );
        }
    }

    #[test]
    fn oids() {
        // 1.3.6.1.4.1.42.2.17.1.1 (Sun KeyProtector)
        let sun = [0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x11, 0x01, 0x01];
        assert_eq!(oid_to_string(&sun).unwrap(), "1.3.6.1.4.1.42.2.17.1.1");
        // 2.16.840.1.113894.746875.1.1 (Oracle trusted key usage)
        let ora = [
            0x60, 0x86, 0x48, 0x01, 0x86, 0xf9, 0x66, 0xad, 0xca, 0x7b, 0x01, 0x01,
        ];
        assert_eq!(oid_to_string(&ora).unwrap(), "2.16.840.1.113894.746875.1.1");
        assert!(oid_to_string(&[0x2b, 0x86]).is_none());
        assert!(oid_to_string(&[]).is_none());
    }
}
