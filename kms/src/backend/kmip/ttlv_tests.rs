//! Codec tests: every item type, alignment, malformed input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::backend::kmip::test_vectors as v;

pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .map(|c| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not hex: {c}"),
        })
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd hex length");
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

fn roundtrip(item: Item, expect_hex: &str) {
    let bytes = item.encode().expect("encode");
    assert_eq!(bytes.as_slice(), hex(expect_hex).as_slice(), "{item:?}");
    assert_eq!(Item::decode(&bytes).expect("decode"), item);
}

// KMIP 1.4 specification, section 9.1.2 (examples of each item type).
#[test]
fn spec_examples_of_each_type() {
    roundtrip(
        Item::new(0x42_0020, Value::Integer(8)),
        "42002002000000040000000800000000",
    );
    roundtrip(
        Item::new(0x42_0020, Value::LongInteger(123_456_789_000_000_000)),
        "420020030000000801B69B4BA5749200",
    );
    roundtrip(
        Item::new(
            0x42_0020,
            Value::BigInteger(hex("0000000003FD35EB6BC2DF4618080000")),
        ),
        "42002004000000100000000003FD35EB6BC2DF4618080000",
    );
    roundtrip(
        Item::new(0x42_0020, Value::Enumeration(255)),
        "4200200500000004000000FF00000000",
    );
    roundtrip(
        Item::new(0x42_0020, Value::Boolean(true)),
        "42002006000000080000000000000001",
    );
    roundtrip(
        Item::new(0x42_0020, Value::TextString("Hello World".into())),
        "420020070000000B48656C6C6F20576F726C640000000000",
    );
    roundtrip(
        Item::new(0x42_0020, Value::ByteString(Zeroizing::new(vec![1, 2, 3]))),
        "42002008000000030102030000000000",
    );
    roundtrip(
        Item::new(0x42_0020, Value::DateTime(0x47DA_67F8)),
        "42002009000000080000000047DA67F8",
    );
    roundtrip(
        Item::new(0x42_0020, Value::Interval(864_000)),
        "4200200A00000004000D2F0000000000",
    );
    roundtrip(
        Item::structure(
            0x42_0020,
            vec![
                Item::new(0x42_0004, Value::Enumeration(254)),
                Item::new(0x42_0005, Value::Integer(255)),
            ],
        ),
        "42002001000000204200040500000004000000FE000000004200050200000004000000FF00000000",
    );
}

#[test]
fn every_vector_decodes_and_reencodes_identically() {
    for (name, h) in v::ALL {
        let bytes = hex(h);
        let item = Item::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            item.encode().expect("encode").as_slice(),
            bytes.as_slice(),
            "{name}"
        );
    }
}

#[test]
fn empty_values_and_alignment() {
    roundtrip(
        Item::new(0x42_0094, Value::TextString(String::new())),
        "4200940700000000",
    );
    roundtrip(
        Item::new(0x42_00C2, Value::ByteString(Zeroizing::new(vec![]))),
        "4200C20800000000",
    );
    roundtrip(Item::structure(0x42_0079, vec![]), "4200790100000000");
    let eight = Item::new(0x42_00C2, Value::ByteString(Zeroizing::new(vec![9; 8])));
    assert_eq!(eight.encode().expect("encode").len(), 16);
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let good = hex("42002002000000040000000800000000");
    for cut in 0..good.len() {
        assert!(Item::decode(&good[..cut]).is_err(), "cut at {cut}");
    }
    // Wrong lengths for fixed-size types.
    assert!(matches!(
        Item::decode(&hex("42002002000000080000000000000008")),
        Err(TtlvError::BadLength { .. })
    ));
    assert!(matches!(
        Item::decode(&hex("42002006000000040000000100000000")),
        Err(TtlvError::BadLength { .. })
    ));
    // Boolean other than 0/1, unknown type, bad UTF-8, trailing bytes.
    assert!(matches!(
        Item::decode(&hex("42002006000000080000000000000002")),
        Err(TtlvError::BadBoolean { .. })
    ));
    assert!(matches!(
        Item::decode(&hex("4200200B000000040000000100000000")),
        Err(TtlvError::UnknownType {
            item_type: 0x0B,
            ..
        })
    ));
    assert!(matches!(
        Item::decode(&hex("4200200700000002FFFE000000000000")),
        Err(TtlvError::BadText { .. })
    ));
    assert!(matches!(
        Item::decode(&hex("420079010000000000")),
        Err(TtlvError::TrailingBytes(1))
    ));
    // A structure whose length cuts a child in half.
    assert!(Item::decode(&hex("42007901000000084200200200000004")).is_err());
    // A length near u32::MAX.
    assert!(matches!(
        Item::decode(&hex("42002008FFFFFFF8")),
        Err(TtlvError::Truncated { .. })
    ));
    // Big integers must be a non-empty multiple of 8 bytes.
    assert!(Item::decode(&hex("420020040000000300000000000000")).is_err());
}

#[test]
fn nesting_is_capped() {
    let mut item = Item::new(0x42_0020, Value::Integer(1));
    for _ in 0..=MAX_DEPTH {
        item = Item::structure(0x42_0079, vec![item]);
    }
    let bytes = item.encode().expect("encode");
    assert_eq!(Item::decode(&bytes), Err(TtlvError::TooDeep));
    let mut ok = Item::new(0x42_0020, Value::Integer(1));
    for _ in 0..MAX_DEPTH {
        ok = Item::structure(0x42_0079, vec![ok]);
    }
    assert!(Item::decode(&ok.encode().expect("encode")).is_ok());
}

#[test]
fn debug_redacts_byte_strings() {
    let item = Item::new(
        0x42_00C2,
        Value::ByteString(Zeroizing::new(b"top secret".to_vec())),
    );
    let shown = format!("{item:?}");
    assert!(!shown.contains("top") && !shown.contains("116"), "{shown}");
    assert!(shown.contains("10 bytes redacted"), "{shown}");
}
