//! The JSON bodies of the key operations, and their base64 fields.
//!
//! Every field is a base64 string. It is taken from the body as the JSON
//! string's bytes, borrowed when it holds no escape (base64 never needs
//! one), without serde_json's UTF-8 check: base64 is ASCII, and the decoder
//! refuses any other byte, so the check only cost time (about 1 000
//! instructions per decrypt).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

use super::error::ApiError;

/// A base64 field of a request body: the JSON string's bytes, escapes
/// resolved (an escaped `/` is valid JSON a client may send).
pub(super) struct B64Field<'a>(Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for B64Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(B64FieldVisitor(PhantomData))
    }
}

struct B64FieldVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for B64FieldVisitor<'a> {
    type Value = B64Field<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        Ok(B64Field(Cow::Borrowed(v)))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(B64Field(Cow::Owned(v.to_vec())))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(B64Field(Cow::Borrowed(v.as_bytes())))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(B64Field(Cow::Owned(v.as_bytes().to_vec())))
    }
}

impl B64Field<'_> {
    /// The decoded bytes; `field` names the field in the error.
    pub(super) fn decode(&self, field: &'static str) -> Result<Vec<u8>, ApiError> {
        B64.decode(self.0.trim_ascii())
            .map_err(|_| ApiError::BadRequest(format!("{field} is not valid base64")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an empty JSON object")]
pub(super) struct Empty {}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a JSON object with wrapped_customer_key"
)]
pub(super) struct CustomerReq<'a> {
    #[serde(borrow)]
    pub wrapped_customer_key: B64Field<'a>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a JSON object with wrapped_customer_key and wrapped_user_key"
)]
pub(super) struct WorkspaceReq<'a> {
    #[serde(borrow)]
    pub wrapped_customer_key: B64Field<'a>,
    #[serde(borrow)]
    pub wrapped_user_key: B64Field<'a>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a JSON object with wrapped_customer_key, wrapped_user_key and wrapped_workspace_key"
)]
pub(super) struct DecryptReq<'a> {
    #[serde(borrow)]
    pub wrapped_customer_key: B64Field<'a>,
    #[serde(borrow)]
    pub wrapped_user_key: B64Field<'a>,
    #[serde(borrow)]
    pub wrapped_workspace_key: B64Field<'a>,
}

impl CustomerReq<'_> {
    /// The wrapped customer key, decoded.
    pub(super) fn decode(&self) -> Result<Vec<u8>, ApiError> {
        self.wrapped_customer_key.decode("wrapped_customer_key")
    }
}

impl WorkspaceReq<'_> {
    /// The wrapped customer and user keys, decoded.
    pub(super) fn decode(&self) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
        Ok((
            self.wrapped_customer_key.decode("wrapped_customer_key")?,
            self.wrapped_user_key.decode("wrapped_user_key")?,
        ))
    }
}

impl DecryptReq<'_> {
    /// The wrapped customer, user and workspace keys, decoded.
    pub(super) fn decode(&self) -> Result<[Vec<u8>; 3], ApiError> {
        Ok([
            self.wrapped_customer_key.decode("wrapped_customer_key")?,
            self.wrapped_user_key.decode("wrapped_user_key")?,
            self.wrapped_workspace_key.decode("wrapped_workspace_key")?,
        ])
    }
}

pub(super) fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    // Every body is an object: serde would also take a struct's fields as an
    // array of values (`[]` for `{}`).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadRequest(
            "the request body is not the expected JSON: it must be a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        // serde_json's messages name the field and position, never echo values.
        ApiError::BadRequest(format!("the request body is not the expected JSON: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_request(r: Result<impl Sized, ApiError>) -> String {
        match r {
            Err(ApiError::BadRequest(m)) => m,
            Err(e) => panic!("not a bad request: {e:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn only_an_object_is_a_body_and_no_type_name_is_shown() {
        for body in [&b"[]"[..], b" [\"a\",\"b\",\"c\"]", b"\"x\"", b"", b"null"] {
            let m = bad_request(parse::<Empty>(body));
            assert!(m.ends_with("it must be a JSON object"), "{m}");
        }
        assert!(parse::<Empty>(b" {} ").is_ok());
        let m = bad_request(parse::<DecryptReq>(br#"{"wrapped_customer_key":"AA=="}"#));
        assert!(!m.contains("struct"), "{m}");
        let m = bad_request(parse::<CustomerReq>(br#"{"x":{}}"#));
        assert!(!m.contains("struct"), "{m}");
    }

    #[test]
    fn fields_borrow_and_still_take_json_escapes() {
        // Plain base64 is borrowed from the body; an escaped `/` still
        // parses, into an owned copy.
        let r: DecryptReq = parse(
            br#"{"wrapped_customer_key":" q83v\n","wrapped_user_key":"AQ\/+","wrapped_workspace_key":"AA=="}"#,
        )
        .unwrap();
        assert!(matches!(r.wrapped_workspace_key.0, Cow::Borrowed(b"AA==")));
        assert!(matches!(r.wrapped_user_key.0, Cow::Owned(_)));
        assert_eq!(
            r.wrapped_customer_key.decode("c").unwrap(),
            [0xab, 0xcd, 0xef]
        );
        assert_eq!(r.wrapped_user_key.decode("u").unwrap(), [0x01, 0x0f, 0xfe]);
        assert_eq!(r.wrapped_workspace_key.decode("w").unwrap(), [0]);
        assert!(parse::<DecryptReq>(br#"{"wrapped_customer_key":"a"}"#).is_err());
    }

    #[test]
    fn what_is_not_base64_is_refused_with_the_field_named() {
        // Not ASCII (raw, and as a JSON escape), not the alphabet, not a string.
        for body in [
            &b"{\"wrapped_customer_key\":\"AA\xc3\xa9=\"}"[..],
            b"{\"wrapped_customer_key\":\"AA\xff=\"}",
            br#"{"wrapped_customer_key":"AA\u00e9="}"#,
            br#"{"wrapped_customer_key":"A*=="}"#,
        ] {
            let r: CustomerReq = parse(body).unwrap();
            let m = bad_request(r.wrapped_customer_key.decode("wrapped_customer_key"));
            assert_eq!(m, "wrapped_customer_key is not valid base64");
        }
        for body in [
            &br#"{"wrapped_customer_key":5}"#[..],
            br#"{"wrapped_customer_key":[65,65]}"#,
            br#"{"wrapped_customer_key":null}"#,
            br#"{"wrapped_customer_key":"AA==","x":1}"#,
        ] {
            let m = bad_request(parse::<CustomerReq>(body));
            assert!(
                m.starts_with("the request body is not the expected JSON: "),
                "{m}"
            );
        }
        let m = bad_request(parse::<CustomerReq>(br#"{"wrapped_customer_key":5}"#));
        assert!(m.contains("expected a base64 string"), "{m}");
        // Each request names the field that is not base64.
        let r: DecryptReq = parse(
            br#"{"wrapped_customer_key":"AA==","wrapped_user_key":"A*==","wrapped_workspace_key":"AA=="}"#,
        )
        .unwrap();
        assert_eq!(
            bad_request(r.decode()),
            "wrapped_user_key is not valid base64"
        );
        let r: WorkspaceReq =
            parse(br#"{"wrapped_customer_key":"AA==","wrapped_user_key":"%"}"#).unwrap();
        assert_eq!(
            bad_request(r.decode()),
            "wrapped_user_key is not valid base64"
        );
    }
}
