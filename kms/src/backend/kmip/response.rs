//! Parsing KMIP 1.x response messages and the payloads of our operations.

use std::fmt;

use zeroize::Zeroizing;

use super::messages::{MessageError, ProtocolVersion};
use super::tags::{self as t, operation as op, reason};
use super::ttlv::Item;

/// A decoded response message with its single batch item.
#[derive(Debug)]
pub struct Response {
    /// The protocol version the server answered in.
    pub version: ProtocolVersion,
    /// The payload of a successful operation (absent when the server sent none).
    pub result: Result<Option<Item>, Failure>,
}

/// A KMIP operation the server answered with a failure status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub operation: u32,
    pub status: u32,
    pub reason: Option<u32>,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KMIP {} failed", op::name(self.operation))?;
        if let Some(r) = self.reason {
            write!(f, ": {}", reason::name(r))?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

fn err(what: &str) -> MessageError {
    MessageError(what.to_owned())
}

/// Parse a response message to a request for `operation`.
pub fn parse_response(message: &Item, operation: u32) -> Result<Response, MessageError> {
    if message.tag != t::RESPONSE_MESSAGE {
        return Err(MessageError(format!(
            "expected a KMIP Response Message, got tag {:06X}",
            message.tag
        )));
    }
    let header = message
        .child(t::RESPONSE_HEADER)
        .ok_or_else(|| err("response has no Response Header"))?;
    let version = header
        .child(t::PROTOCOL_VERSION)
        .ok_or_else(|| err("response header has no Protocol Version"))
        .and_then(ProtocolVersion::from_item)?;
    let mut batch = message.children_with(t::BATCH_ITEM);
    let item = batch
        .next()
        .ok_or_else(|| err("response has no Batch Item"))?;
    if batch.next().is_some() {
        return Err(err("response has more than one Batch Item"));
    }
    if let Some(got) = item.child(t::OPERATION).and_then(Item::as_enum)
        && got != operation
    {
        return Err(MessageError(format!(
            "asked for {}, the response is for {}",
            op::name(operation),
            op::name(got)
        )));
    }
    let status = item
        .child(t::RESULT_STATUS)
        .and_then(Item::as_enum)
        .ok_or_else(|| err("batch item has no Result Status"))?;
    let result = if status == t::RESULT_STATUS_SUCCESS {
        Ok(item.child(t::RESPONSE_PAYLOAD).cloned())
    } else {
        Err(Failure {
            operation,
            status,
            reason: item.child(t::RESULT_REASON).and_then(Item::as_enum),
            message: item
                .child(t::RESULT_MESSAGE)
                .and_then(Item::as_text)
                .unwrap_or_default()
                .to_owned(),
        })
    };
    Ok(Response { version, result })
}

fn need<'a>(payload: Option<&'a Item>, what: &str) -> Result<&'a Item, MessageError> {
    payload.ok_or_else(|| MessageError(format!("{what} response has no payload")))
}

/// Discover Versions: the versions the server offers from ours, best first.
pub fn discover_versions(payload: Option<&Item>) -> Result<Vec<ProtocolVersion>, MessageError> {
    // An empty payload (or none) means "none of yours".
    payload.map_or(Ok(Vec::new()), |p| {
        p.children_with(t::PROTOCOL_VERSION)
            .map(ProtocolVersion::from_item)
            .collect()
    })
}

/// What a Query told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryInfo {
    pub operations: Vec<u32>,
    pub vendor: Option<String>,
}

/// Query: supported operations and the vendor identification.
pub fn query(payload: Option<&Item>) -> Result<QueryInfo, MessageError> {
    let Some(p) = payload else {
        return Ok(QueryInfo::default());
    };
    Ok(QueryInfo {
        operations: p
            .children_with(t::OPERATION)
            .filter_map(Item::as_enum)
            .collect(),
        vendor: p
            .child(t::VENDOR_IDENTIFICATION)
            .and_then(Item::as_text)
            .map(str::to_owned),
    })
}

/// Locate: the unique identifiers found (possibly none).
pub fn locate(payload: Option<&Item>) -> Result<Vec<String>, MessageError> {
    payload.map_or(Ok(Vec::new()), |p| {
        p.children_with(t::UNIQUE_IDENTIFIER)
            .map(|i| {
                i.as_text()
                    .map(str::to_owned)
                    .ok_or_else(|| err("bad Unique Identifier"))
            })
            .collect()
    })
}

/// Create, Activate, Revoke, Destroy: the Unique Identifier in the payload.
pub fn unique_identifier(payload: Option<&Item>, what: &str) -> Result<String, MessageError> {
    need(payload, what)?
        .child(t::UNIQUE_IDENTIFIER)
        .and_then(Item::as_text)
        .map(str::to_owned)
        .ok_or_else(|| MessageError(format!("{what} response has no Unique Identifier")))
}

/// The attributes of a key we ask for with Get Attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyAttributes {
    pub state: Option<u32>,
    pub initial_date: Option<i64>,
    pub activation_date: Option<i64>,
    /// Cryptographic Algorithm (enumeration; AES is 3).
    pub algorithm: Option<u32>,
    /// Cryptographic Length in bits.
    pub length: Option<i32>,
}

/// Get Attributes: State, Initial Date, Activation Date, Cryptographic
/// Algorithm and Cryptographic Length, where present.
pub fn get_attributes(payload: Option<&Item>) -> Result<KeyAttributes, MessageError> {
    let p = need(payload, "Get Attributes")?;
    let mut out = KeyAttributes::default();
    for attr in p.children_with(t::ATTRIBUTE) {
        let name = attr.child(t::ATTRIBUTE_NAME).and_then(Item::as_text);
        let value = attr.child(t::ATTRIBUTE_VALUE);
        match name {
            Some("State") => out.state = value.and_then(Item::as_enum),
            Some("Initial Date") => out.initial_date = value.and_then(Item::as_datetime),
            Some("Activation Date") => out.activation_date = value.and_then(Item::as_datetime),
            Some("Cryptographic Algorithm") => out.algorithm = value.and_then(Item::as_enum),
            Some("Cryptographic Length") => out.length = value.and_then(Item::as_int),
            _ => {}
        }
    }
    Ok(out)
}

/// The result of an Encrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    pub data: Vec<u8>,
    /// Set when the server generated the IV.
    pub iv: Option<Vec<u8>>,
    /// The AES-GCM tag (KMIP 1.4).
    pub tag: Option<Vec<u8>>,
}

/// Encrypt: data, and the IV and tag where present.
pub fn encrypt(payload: Option<&Item>) -> Result<Encrypted, MessageError> {
    let p = need(payload, "Encrypt")?;
    let get = |tag| p.child(tag).and_then(Item::as_bytes).map(<[u8]>::to_vec);
    Ok(Encrypted {
        data: get(t::DATA).ok_or_else(|| err("Encrypt response has no Data"))?,
        iv: get(t::IV_COUNTER_NONCE),
        tag: get(t::AUTHENTICATED_ENCRYPTION_TAG),
    })
}

/// Decrypt: the plaintext, in a zeroizing buffer.
pub fn decrypt(payload: Option<&Item>) -> Result<Zeroizing<Vec<u8>>, MessageError> {
    need(payload, "Decrypt")?
        .child(t::DATA)
        .and_then(Item::as_bytes)
        .map(|d| Zeroizing::new(d.to_vec()))
        .ok_or_else(|| err("Decrypt response has no Data"))
}
