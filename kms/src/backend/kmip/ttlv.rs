//! TTLV, the KMIP binary encoding: our own small codec.
//!
//! Every item is a 3-byte tag, a 1-byte type, a 4-byte big-endian length and
//! the value, padded with zeros to a multiple of 8 bytes. Structures nest.
//! The decoder never panics: lengths are checked against the input, nesting
//! depth is capped, and every malformed input is a [`TtlvError`].
//!
//! Byte strings can carry key material (the plaintext of an Encrypt, the
//! result of a Decrypt), so they live in [`Zeroizing`] buffers and the
//! `Debug` output of an item shows only their length.

use std::fmt;

use zeroize::Zeroizing;

/// Deepest structure nesting the decoder accepts. KMIP 1.x messages need about 8.
pub const MAX_DEPTH: usize = 16;

/// Size of an item header (tag, type, length).
pub const HEADER_LEN: usize = 8;

/// One TTLV item.
#[derive(Clone, PartialEq, Eq)]
pub struct Item {
    /// The full tag, e.g. `0x42_0078` (only the low 24 bits are encoded).
    pub tag: u32,
    pub value: Value,
}

/// The value of a TTLV item, one variant per KMIP item type.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Structure(Vec<Item>),
    Integer(i32),
    LongInteger(i64),
    /// Two's-complement big-endian, already padded to a multiple of 8 bytes.
    BigInteger(Vec<u8>),
    Enumeration(u32),
    Boolean(bool),
    TextString(String),
    ByteString(Zeroizing<Vec<u8>>),
    /// Seconds since the Unix epoch.
    DateTime(i64),
    /// Seconds.
    Interval(u32),
}

/// Why a TTLV byte string could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlvError {
    #[error("TTLV input ends early at offset {offset}")]
    Truncated { offset: usize },
    #[error("TTLV item at offset {offset} has unknown type 0x{item_type:02x}")]
    UnknownType { offset: usize, item_type: u8 },
    #[error("TTLV item at offset {offset} has length {len}, wrong for its type")]
    BadLength { offset: usize, len: u32 },
    #[error("TTLV boolean at offset {offset} is neither 0 nor 1")]
    BadBoolean { offset: usize },
    #[error("TTLV text string at offset {offset} is not UTF-8")]
    BadText { offset: usize },
    #[error("TTLV structures nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("{0} bytes follow the last TTLV item")]
    TrailingBytes(usize),
    #[error("TTLV item too long to encode")]
    TooLong,
}

const T_STRUCTURE: u8 = 0x01;
const T_INTEGER: u8 = 0x02;
const T_LONG: u8 = 0x03;
const T_BIG: u8 = 0x04;
const T_ENUM: u8 = 0x05;
const T_BOOL: u8 = 0x06;
const T_TEXT: u8 = 0x07;
const T_BYTES: u8 = 0x08;
const T_DATETIME: u8 = 0x09;
const T_INTERVAL: u8 = 0x0A;

impl Item {
    /// A new item.
    pub fn new(tag: u32, value: Value) -> Self {
        Self { tag, value }
    }

    /// A structure item.
    pub fn structure(tag: u32, items: Vec<Item>) -> Self {
        Self::new(tag, Value::Structure(items))
    }

    /// The children of a structure (empty for other types).
    pub fn children(&self) -> &[Item] {
        match &self.value {
            Value::Structure(items) => items,
            _ => &[],
        }
    }

    /// The first child with `tag`.
    pub fn child(&self, tag: u32) -> Option<&Item> {
        self.children().iter().find(|i| i.tag == tag)
    }

    /// Every child with `tag`, in order.
    pub fn children_with(&self, tag: u32) -> impl Iterator<Item = &Item> {
        self.children().iter().filter(move |i| i.tag == tag)
    }

    /// The value as an enumeration, if it is one.
    pub fn as_enum(&self) -> Option<u32> {
        match self.value {
            Value::Enumeration(v) => Some(v),
            _ => None,
        }
    }

    /// The value as an integer, if it is one.
    pub fn as_int(&self) -> Option<i32> {
        match self.value {
            Value::Integer(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a text string, if it is one.
    pub fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::TextString(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a byte string, if it is one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.value {
            Value::ByteString(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a date-time (seconds since the epoch), if it is one.
    pub fn as_datetime(&self) -> Option<i64> {
        match self.value {
            Value::DateTime(v) => Some(v),
            _ => None,
        }
    }

    /// Encode into a new buffer (zeroized on drop: it may hold key material).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, TtlvError> {
        let mut out = Zeroizing::new(Vec::with_capacity(256));
        self.encode_into(&mut out)?;
        Ok(out)
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), TtlvError> {
        let tag = self.tag.to_be_bytes();
        out.extend_from_slice(&tag[1..]);
        match &self.value {
            Value::Structure(items) => {
                out.push(T_STRUCTURE);
                let len_at = out.len();
                out.extend_from_slice(&[0; 4]);
                let start = out.len();
                for item in items {
                    item.encode_into(out)?;
                }
                let len = u32::try_from(out.len() - start).map_err(|_| TtlvError::TooLong)?;
                if let Some(slot) = out.get_mut(len_at..len_at + 4) {
                    slot.copy_from_slice(&len.to_be_bytes());
                }
            }
            Value::Integer(v) => put_padded(out, T_INTEGER, &v.to_be_bytes())?,
            Value::LongInteger(v) => put_padded(out, T_LONG, &v.to_be_bytes())?,
            Value::BigInteger(v) => put_padded(out, T_BIG, v)?,
            Value::Enumeration(v) => put_padded(out, T_ENUM, &v.to_be_bytes())?,
            Value::Boolean(v) => put_padded(out, T_BOOL, &u64::from(*v).to_be_bytes())?,
            Value::TextString(v) => put_padded(out, T_TEXT, v.as_bytes())?,
            Value::ByteString(v) => put_padded(out, T_BYTES, v)?,
            Value::DateTime(v) => put_padded(out, T_DATETIME, &v.to_be_bytes())?,
            Value::Interval(v) => put_padded(out, T_INTERVAL, &v.to_be_bytes())?,
        }
        Ok(())
    }

    /// Decode exactly one item that spans all of `input`.
    pub fn decode(input: &[u8]) -> Result<Item, TtlvError> {
        let (item, used) = decode_at(input, 0, 0)?;
        if used != input.len() {
            return Err(TtlvError::TrailingBytes(input.len() - used));
        }
        Ok(item)
    }
}

fn put_padded(out: &mut Vec<u8>, item_type: u8, value: &[u8]) -> Result<(), TtlvError> {
    let len = u32::try_from(value.len()).map_err(|_| TtlvError::TooLong)?;
    out.push(item_type);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + padding(value.len()), 0);
    Ok(())
}

fn padding(len: usize) -> usize {
    (8 - len % 8) % 8
}

/// Reads the header at the start of `input`: (tag, type, length).
pub fn read_header(input: &[u8]) -> Option<(u32, u8, u32)> {
    let h = input.get(..HEADER_LEN)?;
    let (t0, t1, t2, ty) = (h.first()?, h.get(1)?, h.get(2)?, h.get(3)?);
    let tag = u32::from_be_bytes([0, *t0, *t1, *t2]);
    let len = u32::from_be_bytes(h.get(4..8)?.try_into().ok()?);
    Some((tag, *ty, len))
}

/// Decodes the item at `offset` (relative to the whole message, for errors)
/// from `input`, returning it and how many bytes it used with padding.
fn decode_at(input: &[u8], offset: usize, depth: usize) -> Result<(Item, usize), TtlvError> {
    if depth > MAX_DEPTH {
        return Err(TtlvError::TooDeep);
    }
    let (tag, item_type, len32) = read_header(input).ok_or(TtlvError::Truncated { offset })?;
    let len = usize::try_from(len32).map_err(|_| TtlvError::BadLength { offset, len: len32 })?;
    let bad_len = TtlvError::BadLength { offset, len: len32 };
    let padded = len.checked_add(padding(len)).ok_or(bad_len.clone())?;
    let total = HEADER_LEN.checked_add(padded).ok_or(bad_len.clone())?;
    let body = input
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or(TtlvError::Truncated { offset })?;
    if input.len() < total {
        return Err(TtlvError::Truncated { offset });
    }
    let fixed = |n: usize| -> Result<&[u8], TtlvError> {
        if len == n {
            Ok(body)
        } else {
            Err(bad_len.clone())
        }
    };
    let value = match item_type {
        T_STRUCTURE => {
            if len % 8 != 0 {
                return Err(bad_len);
            }
            let mut items = Vec::new();
            let mut pos = 0;
            while pos < len {
                let rest = body.get(pos..).ok_or(TtlvError::Truncated { offset })?;
                let (item, used) = decode_at(rest, offset + HEADER_LEN + pos, depth + 1)?;
                pos += used;
                items.push(item);
            }
            if pos != len {
                return Err(bad_len);
            }
            Value::Structure(items)
        }
        T_INTEGER => Value::Integer(i32::from_be_bytes(arr4(fixed(4)?, offset)?)),
        T_LONG => Value::LongInteger(i64::from_be_bytes(arr8(fixed(8)?, offset)?)),
        T_BIG => {
            if len == 0 || len % 8 != 0 {
                return Err(bad_len);
            }
            Value::BigInteger(body.to_vec())
        }
        T_ENUM => Value::Enumeration(u32::from_be_bytes(arr4(fixed(4)?, offset)?)),
        T_BOOL => match u64::from_be_bytes(arr8(fixed(8)?, offset)?) {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            _ => return Err(TtlvError::BadBoolean { offset }),
        },
        T_TEXT => Value::TextString(
            std::str::from_utf8(body)
                .map_err(|_| TtlvError::BadText { offset })?
                .to_owned(),
        ),
        T_BYTES => Value::ByteString(Zeroizing::new(body.to_vec())),
        T_DATETIME => Value::DateTime(i64::from_be_bytes(arr8(fixed(8)?, offset)?)),
        T_INTERVAL => Value::Interval(u32::from_be_bytes(arr4(fixed(4)?, offset)?)),
        other => {
            return Err(TtlvError::UnknownType {
                offset,
                item_type: other,
            });
        }
    };
    Ok((Item { tag, value }, total))
}

fn arr4(b: &[u8], offset: usize) -> Result<[u8; 4], TtlvError> {
    b.try_into().map_err(|_| TtlvError::Truncated { offset })
}

fn arr8(b: &[u8], offset: usize) -> Result<[u8; 8], TtlvError> {
    b.try_into().map_err(|_| TtlvError::Truncated { offset })
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06X} ", self.tag)?;
        self.value.fmt(f)
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Structure(items) => f.debug_list().entries(items).finish(),
            Self::Integer(v) => write!(f, "Integer({v})"),
            Self::LongInteger(v) => write!(f, "LongInteger({v})"),
            Self::BigInteger(v) => write!(f, "BigInteger(<{} bytes>)", v.len()),
            Self::Enumeration(v) => write!(f, "Enumeration(0x{v:08X})"),
            Self::Boolean(v) => write!(f, "Boolean({v})"),
            Self::TextString(v) => write!(f, "TextString({v:?})"),
            Self::ByteString(v) => write!(f, "ByteString(<{} bytes redacted>)", v.len()),
            Self::DateTime(v) => write!(f, "DateTime({v})"),
            Self::Interval(v) => write!(f, "Interval({v})"),
        }
    }
}

#[cfg(test)]
#[path = "ttlv_tests.rs"]
pub(crate) mod tests;
