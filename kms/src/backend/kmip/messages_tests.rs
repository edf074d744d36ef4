//! Message tests against KMIP test-case vectors (see `test_vectors.rs`):
//! every request we build and every response we parse.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::backend::kmip::response::{self, parse_response};
use crate::backend::kmip::tags::{self as t, operation as op};
use crate::backend::kmip::test_vectors as v;
use crate::backend::kmip::ttlv::tests::hex;

fn assert_encodes(item: &Item, vector: &str) {
    let got = item.encode().expect("encode");
    let want = hex(vector);
    assert_eq!(
        got.as_slice(),
        want.as_slice(),
        "\nours: {item:?}\nspec: {:?}",
        Item::decode(&want)
    );
}

fn decode(vector: &str) -> Item {
    Item::decode(&hex(vector)).expect("vector decodes")
}

const SPEC_UID: &str = "fb4b5b9c-6188-4c63-8142-fe9c328129fc";

#[test]
fn create_request_message() {
    let payload = create_aes_key(None, 128, None);
    let msg = request_message(ProtocolVersion::new(1, 1), op::CREATE, payload);
    assert_encodes(&msg, v::SPEC_CREATE_REQUEST_MESSAGE);
}

#[test]
fn create_request_with_name_and_policy() {
    assert_encodes(
        &create_aes_key(Some("cmx-master"), 256, Some("shared")),
        v::PYKMIP_CREATE_NAMED,
    );
}

#[test]
fn create_response_message() {
    let resp = parse_response(&decode(v::SPEC_CREATE_RESPONSE_MESSAGE), op::CREATE).expect("parse");
    assert_eq!(resp.version, ProtocolVersion::new(1, 1));
    let payload = resp.result.expect("success");
    assert_eq!(
        response::unique_identifier(payload.as_ref(), "Create").expect("uid"),
        SPEC_UID
    );
}

#[test]
fn destroy_request_and_response_messages() {
    let msg = request_message(ProtocolVersion::new(1, 1), op::DESTROY, uid_only(SPEC_UID));
    assert_encodes(&msg, v::SPEC_DESTROY_REQUEST_MESSAGE);
    let resp =
        parse_response(&decode(v::SPEC_DESTROY_RESPONSE_MESSAGE), op::DESTROY).expect("parse");
    let payload = resp.result.expect("success");
    assert_eq!(
        response::unique_identifier(payload.as_ref(), "Destroy").expect("uid"),
        SPEC_UID
    );
}

#[test]
fn locate_request_and_response_messages() {
    // The spec's Locate filters on Object Type and Name; our Name attribute
    // must match its second attribute exactly.
    let spec = decode(v::SPEC_LOCATE_REQUEST_MESSAGE);
    let spec_name = spec
        .child(t::BATCH_ITEM)
        .and_then(|b| b.child(t::REQUEST_PAYLOAD))
        .map(|p| p.children_with(t::ATTRIBUTE).nth(1).cloned())
        .expect("spec payload")
        .expect("spec name attribute");
    assert_eq!(name_attribute("Key1"), spec_name);
    assert_encodes(&locate_by_name("cmx-master"), v::PYKMIP_LOCATE_NAME);

    let resp = parse_response(&decode(v::SPEC_LOCATE_RESPONSE_MESSAGE), op::LOCATE).expect("parse");
    let payload = resp.result.expect("success");
    assert_eq!(
        response::locate(payload.as_ref()).expect("uids"),
        vec!["49a1ca88-6bea-4fb2-b450-7e58802c3038".to_owned()]
    );
    assert_eq!(response::locate(None).expect("none"), Vec::<String>::new());
}

#[test]
fn failure_response_keeps_status_reason_and_message() {
    let resp =
        parse_response(&decode(v::SPEC_INVALID_MESSAGE_RESPONSE), op::LOCATE).expect("parse");
    let failure = resp.result.expect_err("failure");
    assert_eq!(failure.status, 1);
    assert_eq!(failure.reason, Some(t::reason::INVALID_MESSAGE));
    assert_eq!(
        failure.message,
        "Default response. No operations supported."
    );
    assert_eq!(
        failure.to_string(),
        "KMIP Locate failed: Invalid Message: Default response. No operations supported."
    );
}

#[test]
fn response_for_another_operation_is_rejected() {
    let err = parse_response(&decode(v::SPEC_CREATE_RESPONSE_MESSAGE), op::DECRYPT)
        .expect_err("wrong operation");
    assert!(
        err.0.contains("Decrypt") && err.0.contains("Create"),
        "{err}"
    );
    let err = parse_response(&decode(v::SPEC_CREATE_REQUEST_MESSAGE), op::CREATE)
        .expect_err("a request is not a response");
    assert!(err.0.contains("Response Message"), "{err}");
}

#[test]
fn discover_versions() {
    let ours = [ProtocolVersion::new(1, 1), ProtocolVersion::new(1, 0)];
    assert_encodes(
        &super::discover_versions(&ours),
        v::SPEC_DISCOVER_VERSIONS_REQUEST,
    );
    let offered = [
        ProtocolVersion::V1_4,
        ProtocolVersion::V1_3,
        ProtocolVersion::V1_2,
    ];
    assert_encodes(&super::discover_versions(&offered), v::PYKMIP_DISCOVER_OURS);
    let parsed = response::discover_versions(Some(&decode(v::SPEC_DISCOVER_VERSIONS_RESPONSE)))
        .expect("versions");
    assert_eq!(parsed, ours);
    let msg = request_message(
        ProtocolVersion::V1_2,
        op::DISCOVER_VERSIONS,
        super::discover_versions(&[]),
    );
    assert_encodes(&msg, v::TESTBED_DISCOVER_VERSIONS_REQUEST_MESSAGE);
}

#[test]
fn query() {
    assert_encodes(
        &super::query(&[t::QUERY_OPERATIONS, t::QUERY_OBJECTS]),
        v::SPEC_QUERY_REQUEST,
    );
    let info = response::query(Some(&decode(v::SPEC_QUERY_RESPONSE))).expect("query");
    assert_eq!(
        info.vendor.as_deref(),
        Some("IBM test server, not-TKLM 2.0.1.1 KMIP 2.0.0.1")
    );
    assert!(info.operations.contains(&op::CREATE) && info.operations.contains(&op::LOCATE));
}

#[test]
fn activate() {
    let id = "668eff89-3010-4258-bc0e-8c402309c746";
    assert_encodes(&uid_only(id), v::SPEC_ACTIVATE_REQUEST);
    let uid = response::unique_identifier(Some(&decode(v::SPEC_ACTIVATE_RESPONSE)), "Activate");
    assert_eq!(uid.expect("uid"), id);
}

#[test]
fn revoke() {
    let id = "668eff89-3010-4258-bc0e-8c402309c746";
    assert_encodes(&super::revoke(id, 2, None, Some(6)), v::SPEC_REVOKE_REQUEST);
    assert_encodes(
        &super::revoke(
            "2",
            t::REVOCATION_REASON_CESSATION_OF_OPERATION,
            Some("retired by cmx-kms"),
            None,
        ),
        v::PYKMIP_REVOKE_OURS,
    );
    let uid = response::unique_identifier(Some(&decode(v::SPEC_REVOKE_RESPONSE)), "Revoke");
    assert_eq!(uid.expect("uid"), id);
}

#[test]
fn get_attributes() {
    let names = [
        "Object Group",
        "Application Specific Information",
        "Contact Information",
        "x-Purpose",
    ];
    assert_encodes(
        &super::get_attributes("1703250b-4d40-4de2-93a0-c494a1d4ae40", &names),
        v::SPEC_GET_ATTRIBUTES_REQUEST,
    );
    // Attributes we do not ask for are skipped.
    let none = response::get_attributes(Some(&decode(v::SPEC_GET_ATTRIBUTES_RESPONSE)));
    assert_eq!(
        none.expect("attributes"),
        response::KeyAttributes::default()
    );
    let ours =
        response::get_attributes(Some(&decode(v::PYKMIP_GET_ATTRIBUTES_RESP))).expect("attributes");
    assert_eq!(ours.state, Some(t::state::ACTIVE));
    assert_eq!(ours.initial_date, Some(1_764_355_200));
    assert_eq!(ours.activation_date, Some(1_764_355_201));
}

fn spec_params() -> CryptoParams {
    CryptoParams {
        block_cipher_mode: Some(t::BLOCK_CIPHER_MODE_CBC),
        padding_method: Some(t::PADDING_METHOD_PKCS5),
        hashing_algorithm: Some(4),
        key_role_type: Some(11),
        digital_signature_algorithm: Some(5),
        cryptographic_algorithm: Some(t::CRYPTOGRAPHIC_ALGORITHM_AES),
        random_iv: Some(true),
        iv_length: Some(96),
        tag_length: Some(128),
        fixed_field_length: Some(32),
        invocation_field_length: Some(64),
        counter_length: Some(0),
        initial_counter_value: Some(1),
    }
}

#[test]
fn encrypt_and_decrypt_requests_as_in_the_spec() {
    let mut req = CipherRequest {
        uid: "b4faee10-aa2a-4446-8ad4-0881f3422959",
        params: spec_params(),
        data: &[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF],
        iv: Some(&[0x01]),
        aad: Some(&[0x01, 0x10, 0x80, 0xFF]),
        tag: None,
    };
    assert_encodes(&cipher(&req), v::SPEC_ENCRYPT_REQUEST);
    req.tag = Some(&[0x01, 0x90, 0xFE]);
    assert_encodes(&cipher(&req), v::SPEC_DECRYPT_REQUEST);
}

#[test]
fn encrypt_and_decrypt_requests_as_we_send_them() {
    let data = [7u8; 32];
    let iv12: Vec<u8> = (0..12).collect();
    let iv16: Vec<u8> = (0..16).collect();
    let tag: Vec<u8> = (0xA0..0xB0).collect();
    let mut gcm = CipherRequest {
        uid: "1",
        params: CryptoParams::AES_GCM,
        data: &data,
        iv: Some(&iv12),
        aad: Some(b"customer-1"),
        tag: None,
    };
    assert_encodes(&cipher(&gcm), v::PYKMIP_ENCRYPT_GCM);
    gcm.tag = Some(&tag);
    assert_encodes(&cipher(&gcm), v::PYKMIP_DECRYPT_GCM);
    let cbc = CipherRequest {
        uid: "1",
        params: CryptoParams::AES_CBC_PKCS5,
        data: &data,
        iv: Some(&iv16),
        aad: None,
        tag: None,
    };
    assert_encodes(&cipher(&cbc), v::PYKMIP_ENCRYPT_CBC);
}

#[test]
fn encrypt_and_decrypt_responses() {
    let spec = response::encrypt(Some(&decode(v::SPEC_ENCRYPT_RESPONSE))).expect("encrypt");
    assert_eq!(spec.data, [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]);
    assert_eq!(spec.iv.as_deref(), Some(&[0x01][..]));
    assert_eq!(spec.tag.as_deref(), Some(&[0x01, 0x90, 0xFE][..]));
    let gcm = response::encrypt(Some(&decode(v::PYKMIP_ENCRYPT_GCM_RESP))).expect("encrypt");
    assert_eq!(gcm.data, [9u8; 32]);
    assert_eq!(gcm.tag, Some((0xA0..0xB0).collect()));
    assert_eq!(gcm.iv, None);
    let plain = response::decrypt(Some(&decode(v::SPEC_DECRYPT_RESPONSE))).expect("decrypt");
    assert_eq!(
        plain.as_slice(),
        &[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]
    );
    assert!(response::decrypt(None).is_err());
    assert!(response::encrypt(Some(&decode(v::SPEC_ACTIVATE_RESPONSE))).is_err());
}
