//! Tomcat's `server.xml`: the HTTPS connector of the Java Connected-KMS.
//!
//! Two forms carry the keystore settings:
//! - the attribute form the guide edits, on the `<Connector>` itself:
//!   `keystoreFile`, `keystorePass`, `keyAlias` (and `keyPass`, `keystoreType`);
//! - Tomcat 8.5/9's `<Connector><SSLHostConfig><Certificate .../>` form:
//!   `certificateKeystoreFile`, `certificateKeystorePassword`,
//!   `certificateKeyAlias` (and `certificateKeyPassword`, `certificateKeystoreType`).

use zeroize::Zeroizing;

/// Which form the settings were found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectorForm {
    /// Attributes on `<Connector>`.
    Attributes,
    /// `<SSLHostConfig><Certificate>`.
    SslHostConfig,
}

/// The HTTPS connector's settings. Passwords are zeroized and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Connector {
    pub port: u16,
    pub address: Option<String>,
    pub keystore_file: Option<String>,
    pub keystore_pass: Option<Zeroizing<String>>,
    pub key_alias: Option<String>,
    pub key_pass: Option<Zeroizing<String>>,
    pub keystore_type: Option<String>,
    pub form: ConnectorForm,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("port", &self.port)
            .field("address", &self.address)
            .field("keystore_file", &self.keystore_file)
            .field(
                "keystore_pass",
                &self.keystore_pass.as_ref().map(|_| "<redacted>"),
            )
            .field("key_alias", &self.key_alias)
            .field("key_pass", &self.key_pass.as_ref().map(|_| "<redacted>"))
            .field("keystore_type", &self.keystore_type)
            .field("form", &self.form)
            .finish()
    }
}

/// The attributes that hold the keystore settings, in one form.
struct KeystoreNames {
    keystore_file: &'static str,
    keystore_pass: &'static str,
    key_alias: &'static str,
    key_pass: &'static str,
    keystore_type: &'static str,
}

/// On the `<Connector>` itself.
const CONNECTOR_NAMES: KeystoreNames = KeystoreNames {
    keystore_file: "keystoreFile",
    keystore_pass: "keystorePass",
    key_alias: "keyAlias",
    key_pass: "keyPass",
    keystore_type: "keystoreType",
};

/// On `<SSLHostConfig><Certificate>`.
const CERTIFICATE_NAMES: KeystoreNames = KeystoreNames {
    keystore_file: "certificateKeystoreFile",
    keystore_pass: "certificateKeystorePassword",
    key_alias: "certificateKeyAlias",
    key_pass: "certificateKeyPassword",
    keystore_type: "certificateKeystoreType",
};

/// Read the TLS connector from the text of `server.xml`: the `<Connector>`
/// with `SSLEnabled="true"` (or a keystore), preferring port 8443.
pub fn read(text: &str) -> Result<Connector, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| {
        format!("it is not well-formed XML ({e}); fix the file (or restore it from a backup) and run the installer again")
    })?;
    let mut found: Vec<Connector> = Vec::new();
    for c in doc.descendants().filter(|n| n.has_tag_name("Connector")) {
        let port = c.attribute("port").unwrap_or("");
        let ssl = c
            .attribute("SSLEnabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let cert = c.descendants().find(|n| {
            n.has_tag_name("Certificate")
                && n.parent().is_some_and(|p| p.has_tag_name("SSLHostConfig"))
        });
        let attr_form =
            c.attribute("keystoreFile").is_some() || c.attribute("keystorePass").is_some();
        if !ssl && cert.is_none() && !attr_form {
            continue;
        }
        let port: u16 = port.parse().map_err(|_| {
            format!(
                "the TLS <Connector> on line {} has no valid port attribute",
                doc.text_pos_at(c.range().start).row
            )
        })?;
        let own = |n: roxmltree::Node<'_, '_>, k: &str| n.attribute(k).map(str::to_owned);
        let (node, names, form) = match (cert, attr_form) {
            (Some(cert), false) => (cert, &CERTIFICATE_NAMES, ConnectorForm::SslHostConfig),
            _ => (c, &CONNECTOR_NAMES, ConnectorForm::Attributes),
        };
        let conn = Connector {
            port,
            address: own(c, "address"),
            keystore_file: own(node, names.keystore_file),
            keystore_pass: own(node, names.keystore_pass).map(Zeroizing::new),
            key_alias: own(node, names.key_alias),
            key_pass: own(node, names.key_pass).map(Zeroizing::new),
            keystore_type: own(node, names.keystore_type),
            form,
        };
        found.push(conn);
    }
    let pick = found.iter().position(|c| c.port == 8443).unwrap_or(0);
    if found.is_empty() {
        return Err("it has no TLS <Connector> (SSLEnabled=\"true\" with a keystore): nothing to take over from it".into());
    }
    Ok(found.swap_remove(pick))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_form() {
        let c = read(r#"<Server><Service name="Catalina">
            <Connector port="8080" protocol="HTTP/1.1"/>
            <!-- <Connector port="8443" keystorePass="old"/> -->
            <Connector port="8443" protocol="org.apache.coyote.http11.Http11NioProtocol" SSLEnabled="true"
                scheme="https" secure="true" clientAuth="true" sslProtocol="TLS"
                keystoreFile="/usr/share/kms/conf/kmsKeystore.jks" keystorePass="pa&amp;ss" keyAlias="kmsserver"/>
            </Service></Server>"#)
        .expect("read");
        assert_eq!(c.form, ConnectorForm::Attributes);
        assert_eq!(c.port, 8443);
        assert_eq!(
            c.keystore_file.as_deref(),
            Some("/usr/share/kms/conf/kmsKeystore.jks")
        );
        assert_eq!(c.keystore_pass.as_ref().map(|p| p.as_str()), Some("pa&ss"));
        assert_eq!(c.key_alias.as_deref(), Some("kmsserver"));
        assert!(!format!("{c:?}").contains("pa&ss"));
    }

    #[test]
    fn ssl_host_config_form() {
        let c = read(r#"<Server><Service name="Catalina">
            <Connector port="8443" protocol="org.apache.coyote.http11.Http11NioProtocol" SSLEnabled="true" maxThreads="150">
              <SSLHostConfig certificateVerification="required" protocols="TLSv1.2+TLSv1.3">
                <Certificate certificateKeystoreFile="conf/kmsKeystore.jks" certificateKeystorePassword="secret"
                   certificateKeyAlias="kmsServer" type="RSA"/>
              </SSLHostConfig>
            </Connector></Service></Server>"#)
        .expect("read");
        assert_eq!(c.form, ConnectorForm::SslHostConfig);
        assert_eq!(c.keystore_file.as_deref(), Some("conf/kmsKeystore.jks"));
        assert_eq!(c.key_alias.as_deref(), Some("kmsServer"));
    }

    #[test]
    fn corrupt_and_empty() {
        let e = read("<Server><Service><Connector port=\"8443\"").expect_err("corrupt");
        assert!(e.contains("not well-formed"), "{e}");
        let e = read("<Server><Service><Connector port=\"8080\"/></Service></Server>")
            .expect_err("none");
        assert!(e.contains("no TLS"), "{e}");
    }
}
