//! KMIP 1.x tags and enumeration values we use (KMIP 1.4 specification,
//! section 9.1.3). Only what our messages need; names follow the spec.

#![allow(missing_docs)]

pub const ACTIVATION_DATE: u32 = 0x42_0001;
pub const ATTRIBUTE: u32 = 0x42_0008;
pub const ATTRIBUTE_INDEX: u32 = 0x42_0009;
pub const ATTRIBUTE_NAME: u32 = 0x42_000A;
pub const ATTRIBUTE_VALUE: u32 = 0x42_000B;
pub const BATCH_COUNT: u32 = 0x42_000D;
pub const BATCH_ITEM: u32 = 0x42_000F;
pub const BLOCK_CIPHER_MODE: u32 = 0x42_0011;
pub const COMPROMISE_OCCURRENCE_DATE: u32 = 0x42_0021;
pub const CRYPTOGRAPHIC_ALGORITHM: u32 = 0x42_0028;
pub const CRYPTOGRAPHIC_LENGTH: u32 = 0x42_002A;
pub const CRYPTOGRAPHIC_PARAMETERS: u32 = 0x42_002B;
pub const CRYPTOGRAPHIC_USAGE_MASK: u32 = 0x42_002C;
pub const HASHING_ALGORITHM: u32 = 0x42_0038;
pub const IV_COUNTER_NONCE: u32 = 0x42_003D;
pub const MAXIMUM_ITEMS: u32 = 0x42_004F;
pub const KEY_ROLE_TYPE: u32 = 0x42_0083;
pub const NAME: u32 = 0x42_0053;
pub const NAME_TYPE: u32 = 0x42_0054;
pub const NAME_VALUE: u32 = 0x42_0055;
pub const OBJECT_TYPE: u32 = 0x42_0057;
pub const OPERATION: u32 = 0x42_005C;
pub const PADDING_METHOD: u32 = 0x42_005F;
pub const PROTOCOL_VERSION: u32 = 0x42_0069;
pub const PROTOCOL_VERSION_MAJOR: u32 = 0x42_006A;
pub const PROTOCOL_VERSION_MINOR: u32 = 0x42_006B;
pub const QUERY_FUNCTION: u32 = 0x42_0074;
pub const REQUEST_HEADER: u32 = 0x42_0077;
pub const REQUEST_MESSAGE: u32 = 0x42_0078;
pub const REQUEST_PAYLOAD: u32 = 0x42_0079;
pub const RESPONSE_HEADER: u32 = 0x42_007A;
pub const RESPONSE_MESSAGE: u32 = 0x42_007B;
pub const RESPONSE_PAYLOAD: u32 = 0x42_007C;
pub const RESULT_MESSAGE: u32 = 0x42_007D;
pub const RESULT_REASON: u32 = 0x42_007E;
pub const RESULT_STATUS: u32 = 0x42_007F;
pub const REVOCATION_MESSAGE: u32 = 0x42_0080;
pub const REVOCATION_REASON: u32 = 0x42_0081;
pub const REVOCATION_REASON_CODE: u32 = 0x42_0082;
pub const STATE: u32 = 0x42_008D;
pub const TEMPLATE_ATTRIBUTE: u32 = 0x42_0091;
pub const TIME_STAMP: u32 = 0x42_0092;
pub const UNIQUE_IDENTIFIER: u32 = 0x42_0094;
pub const VENDOR_IDENTIFICATION: u32 = 0x42_009D;
pub const DATA: u32 = 0x42_00C2;
pub const RANDOM_IV: u32 = 0x42_00C5;
pub const DIGITAL_SIGNATURE_ALGORITHM: u32 = 0x42_00AE;
pub const IV_LENGTH: u32 = 0x42_00CD;
pub const TAG_LENGTH: u32 = 0x42_00CE;
pub const FIXED_FIELD_LENGTH: u32 = 0x42_00CF;
pub const COUNTER_LENGTH: u32 = 0x42_00D0;
pub const INITIAL_COUNTER_VALUE: u32 = 0x42_00D1;
pub const INVOCATION_FIELD_LENGTH: u32 = 0x42_00D2;
pub const AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA: u32 = 0x42_00FE;
pub const AUTHENTICATED_ENCRYPTION_TAG: u32 = 0x42_00FF;

/// Operation enumeration.
pub mod operation {
    pub const CREATE: u32 = 0x01;
    pub const LOCATE: u32 = 0x08;
    pub const GET_ATTRIBUTES: u32 = 0x0B;
    pub const ACTIVATE: u32 = 0x12;
    pub const REVOKE: u32 = 0x13;
    pub const DESTROY: u32 = 0x14;
    pub const QUERY: u32 = 0x18;
    pub const DISCOVER_VERSIONS: u32 = 0x1E;
    pub const ENCRYPT: u32 = 0x1F;
    pub const DECRYPT: u32 = 0x20;

    /// The operation's name as the specification spells it, for messages.
    pub fn name(op: u32) -> &'static str {
        match op {
            CREATE => "Create",
            LOCATE => "Locate",
            GET_ATTRIBUTES => "Get Attributes",
            ACTIVATE => "Activate",
            REVOKE => "Revoke",
            DESTROY => "Destroy",
            QUERY => "Query",
            DISCOVER_VERSIONS => "Discover Versions",
            ENCRYPT => "Encrypt",
            DECRYPT => "Decrypt",
            _ => "unknown operation",
        }
    }
}

pub const OBJECT_TYPE_SYMMETRIC_KEY: u32 = 0x02;
pub const CRYPTOGRAPHIC_ALGORITHM_AES: u32 = 0x03;

/// The name of a Cryptographic Algorithm enumeration value.
pub fn algorithm_name(algorithm: u32) -> String {
    match algorithm {
        0x01 => "DES".into(),
        0x02 => "TRIPLE_DES".into(),
        CRYPTOGRAPHIC_ALGORITHM_AES => "AES".into(),
        0x04 => "RSA".into(),
        0x05 => "DSA".into(),
        0x06 => "ECDSA".into(),
        0x07..=0x0C => "HMAC".into(),
        0x12 => "BLOWFISH".into(),
        0x13 => "CAMELLIA".into(),
        0x15 => "IDEA".into(),
        other => format!("algorithm 0x{other:02X}"),
    }
}
pub const BLOCK_CIPHER_MODE_CBC: u32 = 0x01;
pub const BLOCK_CIPHER_MODE_GCM: u32 = 0x09;
pub const PADDING_METHOD_NONE: u32 = 0x01;
pub const PADDING_METHOD_PKCS5: u32 = 0x03;
pub const NAME_TYPE_UNINTERPRETED_TEXT_STRING: u32 = 0x01;
pub const USAGE_MASK_ENCRYPT: i32 = 0x04;
pub const USAGE_MASK_DECRYPT: i32 = 0x08;
pub const REVOCATION_REASON_CESSATION_OF_OPERATION: u32 = 0x06;

/// Query Function enumeration.
pub const QUERY_OPERATIONS: u32 = 0x01;
pub const QUERY_OBJECTS: u32 = 0x02;
pub const QUERY_SERVER_INFORMATION: u32 = 0x03;

/// State enumeration.
pub mod state {
    pub const PRE_ACTIVE: u32 = 0x01;
    pub const ACTIVE: u32 = 0x02;
    pub const DEACTIVATED: u32 = 0x03;
    pub const COMPROMISED: u32 = 0x04;
    pub const DESTROYED: u32 = 0x05;
    pub const DESTROYED_COMPROMISED: u32 = 0x06;

    /// The state's name in plain words.
    pub fn name(state: u32) -> &'static str {
        match state {
            PRE_ACTIVE => "pre-active",
            ACTIVE => "active",
            DEACTIVATED => "deactivated",
            COMPROMISED => "compromised",
            DESTROYED => "destroyed",
            DESTROYED_COMPROMISED => "destroyed (compromised)",
            _ => "in an unknown state",
        }
    }
}

/// Result Status enumeration.
pub const RESULT_STATUS_SUCCESS: u32 = 0x00;

/// Result Reason enumeration.
pub mod reason {
    pub const ITEM_NOT_FOUND: u32 = 0x01;
    pub const RESPONSE_TOO_LARGE: u32 = 0x02;
    pub const AUTHENTICATION_NOT_SUCCESSFUL: u32 = 0x03;
    pub const INVALID_MESSAGE: u32 = 0x04;
    pub const OPERATION_NOT_SUPPORTED: u32 = 0x05;
    pub const MISSING_DATA: u32 = 0x06;
    pub const INVALID_FIELD: u32 = 0x07;
    pub const FEATURE_NOT_SUPPORTED: u32 = 0x08;
    pub const CRYPTOGRAPHIC_FAILURE: u32 = 0x0A;
    pub const ILLEGAL_OPERATION: u32 = 0x0B;
    pub const PERMISSION_DENIED: u32 = 0x0C;
    pub const OBJECT_ARCHIVED: u32 = 0x0D;
    pub const GENERAL_FAILURE: u32 = 0x100;

    /// The reason's name as the specification spells it.
    pub fn name(reason: u32) -> &'static str {
        match reason {
            ITEM_NOT_FOUND => "Item Not Found",
            RESPONSE_TOO_LARGE => "Response Too Large",
            AUTHENTICATION_NOT_SUCCESSFUL => "Authentication Not Successful",
            INVALID_MESSAGE => "Invalid Message",
            OPERATION_NOT_SUPPORTED => "Operation Not Supported",
            MISSING_DATA => "Missing Data",
            INVALID_FIELD => "Invalid Field",
            FEATURE_NOT_SUPPORTED => "Feature Not Supported",
            CRYPTOGRAPHIC_FAILURE => "Cryptographic Failure",
            ILLEGAL_OPERATION => "Illegal Operation",
            PERMISSION_DENIED => "Permission Denied",
            OBJECT_ARCHIVED => "Object Archived",
            GENERAL_FAILURE => "General Failure",
            _ => "Other",
        }
    }
}
