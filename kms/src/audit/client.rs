//! Who made a request, as its audit records name it, rendered once.
//!
//! Seven of a key-operation record's fields name the client and its
//! connection: alias, subject, serial, fingerprint, address, load balancer,
//! role. They are the same for every request of a connection and about 400
//! of a record's 640 bytes, so a connection renders them (escaped and
//! capped, exactly as field by field) when its first record is made, and
//! each record copies them whole. The record's bytes do not change.

use std::sync::LazyLock;

use super::FIELD_CAP;
use super::record::Fields;

/// The client's fields of a record, as [`Client::new`] takes them.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientFields<'a> {
    pub alias: &'a str,
    pub subject: &'a str,
    pub serial: &'a str,
    pub fingerprint: &'a str,
    /// The client's IP address (through a trusted load balancer: the one
    /// its PROXY header named).
    pub addr: &'a str,
    /// The load balancer's address when the client came through one; empty
    /// for a direct connection.
    pub proxy_addr: &'a str,
    pub role: &'a str,
}

/// A client's fields, rendered: `,"client_alias":"…"` … `,"role":"…"`.
#[derive(Clone, Debug)]
pub struct Client {
    rendered: Box<str>,
}

/// A client with every field empty (records made without a connection:
/// tests).
static NOBODY: LazyLock<Client> = LazyLock::new(|| Client::new(&ClientFields::default()));

impl Client {
    pub fn new(c: &ClientFields<'_>) -> Self {
        let mut out = String::with_capacity(512);
        Fields::after(&mut out)
            .str("client_alias", c.alias, FIELD_CAP)
            .str("client_subject", c.subject, FIELD_CAP)
            .str("client_serial", c.serial, FIELD_CAP)
            .str("client_fingerprint", c.fingerprint, FIELD_CAP)
            .str("client_addr", c.addr, FIELD_CAP)
            .str("proxy_addr", c.proxy_addr, FIELD_CAP)
            .str("role", c.role, FIELD_CAP);
        Self {
            rendered: out.into_boxed_str(),
        }
    }

    /// The client with every field empty.
    pub fn nobody() -> &'static Self {
        &NOBODY
    }

    /// The rendered fields, each with its leading comma.
    pub(super) fn rendered(&self) -> &str {
        &self.rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_once_as_field_by_field() {
        let long = "O".repeat(FIELD_CAP + 10);
        let hostile = format!("CN=a\"b\\c\u{7}\u{202e}, {long}");
        let c = ClientFields {
            alias: "cmxDevice",
            subject: &hostile,
            serial: "01:02",
            fingerprint: "AA:BB",
            addr: "192.0.2.7",
            proxy_addr: "",
            role: "device",
        };
        // What a record held before: each field pushed on its own.
        let mut want = String::new();
        let mut fields = Fields::after(&mut want);
        for (name, value) in [
            ("client_alias", c.alias),
            ("client_subject", c.subject),
            ("client_serial", c.serial),
            ("client_fingerprint", c.fingerprint),
            ("client_addr", c.addr),
            ("proxy_addr", c.proxy_addr),
            ("role", c.role),
        ] {
            fields.str(name, value, FIELD_CAP);
        }
        assert_eq!(Client::new(&c).rendered(), want);
        // Escaped and capped: the subject's quote, backslash, control and
        // bidi characters are escaped, and its tail is cut.
        let v: serde_json::Value =
            serde_json::from_str(&format!("{{\"x\":0{}}}", Client::new(&c).rendered())).unwrap();
        let subject = v["client_subject"].as_str().unwrap();
        assert!(subject.starts_with("CN=a\"b\\c"), "{subject}");
        assert!(subject.len() < hostile.len(), "{}", subject.len());
        assert!(!Client::new(&c).rendered().contains('\u{202e}'));
        assert_eq!(
            Client::nobody().rendered(),
            ",\"client_alias\":\"\",\"client_subject\":\"\",\"client_serial\":\"\",\
             \"client_fingerprint\":\"\",\"client_addr\":\"\",\"proxy_addr\":\"\",\"role\":\"\""
        );
    }
}
