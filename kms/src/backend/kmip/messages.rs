//! KMIP 1.x request and response messages for the operations we use.
//!
//! Requests are built as TTLV trees ([`Item`]) and responses are parsed from
//! them. Every request carries exactly one batch item. Field order follows
//! the KMIP 1.4 specification, which servers check.

use std::fmt;

use zeroize::Zeroizing;

use super::tags as t;
use super::ttlv::{Item, Value};

/// A KMIP protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion {
    pub major: u8,
    pub minor: u8,
}

impl ProtocolVersion {
    pub const V1_2: Self = Self::new(1, 2);
    pub const V1_3: Self = Self::new(1, 3);
    pub const V1_4: Self = Self::new(1, 4);

    /// A version from its two numbers.
    pub const fn new(major: u8, minor: u8) -> Self {
        Self { major, minor }
    }

    /// Whether Encrypt/Decrypt carry the AES-GCM tag and additional data (1.4 on).
    pub fn has_aead_fields(self) -> bool {
        self >= Self::V1_4
    }

    fn to_item(self) -> Item {
        Item::structure(
            t::PROTOCOL_VERSION,
            vec![
                int(t::PROTOCOL_VERSION_MAJOR, i32::from(self.major)),
                int(t::PROTOCOL_VERSION_MINOR, i32::from(self.minor)),
            ],
        )
    }

    pub(super) fn from_item(item: &Item) -> Result<Self, MessageError> {
        let major = item.child(t::PROTOCOL_VERSION_MAJOR).and_then(Item::as_int);
        let minor = item.child(t::PROTOCOL_VERSION_MINOR).and_then(Item::as_int);
        match (major.map(u8::try_from), minor.map(u8::try_from)) {
            (Some(Ok(major)), Some(Ok(minor))) => Ok(Self { major, minor }),
            _ => Err(MessageError("malformed Protocol Version".into())),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A response we could not make sense of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MessageError(pub String);

fn int(tag: u32, v: i32) -> Item {
    Item::new(tag, Value::Integer(v))
}
fn enumeration(tag: u32, v: u32) -> Item {
    Item::new(tag, Value::Enumeration(v))
}
fn text(tag: u32, v: &str) -> Item {
    Item::new(tag, Value::TextString(v.to_owned()))
}
fn bytes(tag: u32, v: &[u8]) -> Item {
    Item::new(tag, Value::ByteString(Zeroizing::new(v.to_vec())))
}
fn uid(v: &str) -> Item {
    text(t::UNIQUE_IDENTIFIER, v)
}

/// A request message with one batch item.
pub fn request_message(version: ProtocolVersion, operation: u32, payload: Item) -> Item {
    Item::structure(
        t::REQUEST_MESSAGE,
        vec![
            Item::structure(
                t::REQUEST_HEADER,
                vec![version.to_item(), int(t::BATCH_COUNT, 1)],
            ),
            Item::structure(
                t::BATCH_ITEM,
                vec![enumeration(t::OPERATION, operation), payload],
            ),
        ],
    )
}

fn payload(items: Vec<Item>) -> Item {
    Item::structure(t::REQUEST_PAYLOAD, items)
}

/// Discover Versions: the versions we speak, most preferred first.
pub fn discover_versions(ours: &[ProtocolVersion]) -> Item {
    payload(ours.iter().map(|v| v.to_item()).collect())
}

/// Query with the given Query Function values.
pub fn query(functions: &[u32]) -> Item {
    payload(
        functions
            .iter()
            .map(|f| enumeration(t::QUERY_FUNCTION, *f))
            .collect(),
    )
}

fn attribute(name: &str, value: Item) -> Item {
    Item::structure(
        t::ATTRIBUTE,
        vec![
            text(t::ATTRIBUTE_NAME, name),
            Item::new(t::ATTRIBUTE_VALUE, value.value),
        ],
    )
}

pub(super) fn name_attribute(name: &str) -> Item {
    attribute(
        "Name",
        Item::structure(
            t::ATTRIBUTE_VALUE,
            vec![
                text(t::NAME_VALUE, name),
                enumeration(t::NAME_TYPE, t::NAME_TYPE_UNINTERPRETED_TEXT_STRING),
            ],
        ),
    )
}

/// Locate the objects that carry the Name `name`.
pub fn locate_by_name(name: &str) -> Item {
    payload(vec![name_attribute(name)])
}

/// Create an AES key of `bits` bits for Encrypt and Decrypt, named `name`
/// (when given), optionally under an Operation Policy Name.
pub fn create_aes_key(name: Option<&str>, bits: i32, policy: Option<&str>) -> Item {
    let mut attributes = vec![
        attribute(
            "Cryptographic Algorithm",
            enumeration(0, t::CRYPTOGRAPHIC_ALGORITHM_AES),
        ),
        attribute("Cryptographic Length", int(0, bits)),
        attribute(
            "Cryptographic Usage Mask",
            int(0, t::USAGE_MASK_ENCRYPT | t::USAGE_MASK_DECRYPT),
        ),
    ];
    if let Some(name) = name {
        attributes.push(name_attribute(name));
    }
    if let Some(policy) = policy {
        attributes.push(attribute("Operation Policy Name", text(0, policy)));
    }
    payload(vec![
        enumeration(t::OBJECT_TYPE, t::OBJECT_TYPE_SYMMETRIC_KEY),
        Item::structure(t::TEMPLATE_ATTRIBUTE, attributes),
    ])
}

/// A payload that is only the Unique Identifier (Activate, Destroy).
pub fn uid_only(id: &str) -> Item {
    payload(vec![uid(id)])
}

/// Get Attributes of `id`, limited to the attribute names given.
pub fn get_attributes(id: &str, names: &[&str]) -> Item {
    let mut items = vec![uid(id)];
    items.extend(names.iter().map(|n| text(t::ATTRIBUTE_NAME, n)));
    payload(items)
}

/// Revoke `id` with a Revocation Reason Code, an optional message and, for
/// compromises, the Compromise Occurrence Date.
pub fn revoke(id: &str, code: u32, message: Option<&str>, compromise_date: Option<i64>) -> Item {
    let mut reason = vec![enumeration(t::REVOCATION_REASON_CODE, code)];
    if let Some(m) = message {
        reason.push(text(t::REVOCATION_MESSAGE, m));
    }
    let mut items = vec![uid(id), Item::structure(t::REVOCATION_REASON, reason)];
    if let Some(date) = compromise_date {
        items.push(Item::new(
            t::COMPROMISE_OCCURRENCE_DATE,
            Value::DateTime(date),
        ));
    }
    payload(items)
}

/// Cryptographic Parameters, every KMIP 1.4 field, in specification order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CryptoParams {
    pub block_cipher_mode: Option<u32>,
    pub padding_method: Option<u32>,
    pub hashing_algorithm: Option<u32>,
    pub key_role_type: Option<u32>,
    pub digital_signature_algorithm: Option<u32>,
    pub cryptographic_algorithm: Option<u32>,
    pub random_iv: Option<bool>,
    pub iv_length: Option<i32>,
    pub tag_length: Option<i32>,
    pub fixed_field_length: Option<i32>,
    pub invocation_field_length: Option<i32>,
    pub counter_length: Option<i32>,
    pub initial_counter_value: Option<i32>,
}

impl CryptoParams {
    const NONE: Self = Self {
        block_cipher_mode: None,
        padding_method: None,
        hashing_algorithm: None,
        key_role_type: None,
        digital_signature_algorithm: None,
        cryptographic_algorithm: None,
        random_iv: None,
        iv_length: None,
        tag_length: None,
        fixed_field_length: None,
        invocation_field_length: None,
        counter_length: None,
        initial_counter_value: None,
    };
    /// AES-GCM with a 16-byte tag.
    pub const AES_GCM: Self = Self {
        block_cipher_mode: Some(t::BLOCK_CIPHER_MODE_GCM),
        cryptographic_algorithm: Some(t::CRYPTOGRAPHIC_ALGORITHM_AES),
        tag_length: Some(16),
        ..Self::NONE
    };
    /// AES-CBC with PKCS#5 padding.
    pub const AES_CBC_PKCS5: Self = Self {
        block_cipher_mode: Some(t::BLOCK_CIPHER_MODE_CBC),
        padding_method: Some(t::PADDING_METHOD_PKCS5),
        cryptographic_algorithm: Some(t::CRYPTOGRAPHIC_ALGORITHM_AES),
        ..Self::NONE
    };

    fn to_item(self) -> Item {
        let enums = [
            (t::BLOCK_CIPHER_MODE, self.block_cipher_mode),
            (t::PADDING_METHOD, self.padding_method),
            (t::HASHING_ALGORITHM, self.hashing_algorithm),
            (t::KEY_ROLE_TYPE, self.key_role_type),
            (
                t::DIGITAL_SIGNATURE_ALGORITHM,
                self.digital_signature_algorithm,
            ),
            (t::CRYPTOGRAPHIC_ALGORITHM, self.cryptographic_algorithm),
        ];
        let ints = [
            (t::IV_LENGTH, self.iv_length),
            (t::TAG_LENGTH, self.tag_length),
            (t::FIXED_FIELD_LENGTH, self.fixed_field_length),
            (t::INVOCATION_FIELD_LENGTH, self.invocation_field_length),
            (t::COUNTER_LENGTH, self.counter_length),
            (t::INITIAL_COUNTER_VALUE, self.initial_counter_value),
        ];
        let mut items: Vec<Item> = enums
            .iter()
            .filter_map(|(tag, v)| v.map(|v| enumeration(*tag, v)))
            .collect();
        if let Some(v) = self.random_iv {
            items.push(Item::new(t::RANDOM_IV, Value::Boolean(v)));
        }
        items.extend(ints.iter().filter_map(|(tag, v)| v.map(|v| int(*tag, v))));
        Item::structure(t::CRYPTOGRAPHIC_PARAMETERS, items)
    }
}

/// The fields of an Encrypt or Decrypt request.
#[derive(Clone, Copy)]
pub struct CipherRequest<'a> {
    pub uid: &'a str,
    pub params: CryptoParams,
    pub data: &'a [u8],
    pub iv: Option<&'a [u8]>,
    /// Authenticated Encryption Additional Data (KMIP 1.4 on).
    pub aad: Option<&'a [u8]>,
    /// Authenticated Encryption Tag (Decrypt only, KMIP 1.4 on).
    pub tag: Option<&'a [u8]>,
}

/// Encrypt or Decrypt payload (the two share their layout).
pub fn cipher(req: &CipherRequest<'_>) -> Item {
    let mut items = vec![uid(req.uid), req.params.to_item(), bytes(t::DATA, req.data)];
    if let Some(iv) = req.iv {
        items.push(bytes(t::IV_COUNTER_NONCE, iv));
    }
    if let Some(aad) = req.aad {
        items.push(bytes(t::AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA, aad));
    }
    if let Some(tag) = req.tag {
        items.push(bytes(t::AUTHENTICATED_ENCRYPTION_TAG, tag));
    }
    payload(items)
}

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;
