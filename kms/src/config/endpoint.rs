//! `kms.hsm.server.url`: one or more HSM or Vault endpoints, tried in order (failover).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use super::hsm::Protocol;
use super::values;

/// One HSM or Vault endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HsmEndpoint {
    /// The scheme as written, lower-cased (`https`, `http`, `kmip`, ...), or `None` when the
    /// item had none. KMIP always uses TLS; Vault uses https unless `http` is written (which
    /// is accepted only for a loopback host).
    pub scheme: Option<String>,
    /// Host name or IP address; an IPv6 address without brackets.
    pub host: String,
    /// TCP port: the item's own, else `kms.hsm.server.port`, else the protocol's default.
    pub port: u16,
}

impl HsmEndpoint {
    /// `host:port`, with brackets around an IPv6 address: ready for a URL or a connect call.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether the host is `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for HsmEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scheme {
            Some(scheme) => write!(f, "{scheme}://{}", self.authority()),
            None => f.write_str(&self.authority()),
        }
    }
}

/// Parses a comma-separated endpoint list; items without a port get `default_port`.
/// Schemes are checked against `protocol` when it is given.
pub fn parse_list(
    text: &str,
    protocol: Option<Protocol>,
    default_port: u16,
) -> Result<Vec<HsmEndpoint>, String> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        let invalid =
            |why: String| format!("has an invalid item '{}': it {why}", item.escape_debug());
        let endpoint = parse_one(item, default_port).map_err(invalid)?;
        if let Some(protocol) = protocol {
            check_scheme(&endpoint, protocol).map_err(invalid)?;
        }
        out.push(endpoint);
    }
    Ok(out)
}

fn check_scheme(endpoint: &HsmEndpoint, protocol: Protocol) -> Result<(), String> {
    let scheme = endpoint.scheme.as_deref();
    match (protocol, scheme) {
        (_, None) => Ok(()),
        (Protocol::Vault, Some("https")) => Ok(()),
        (Protocol::Vault, Some("http")) if endpoint.is_loopback() => Ok(()),
        (Protocol::Vault, Some("http")) => Err(
            "uses http, which would send the Vault token unencrypted: use https (http is accepted only for localhost)"
                .into(),
        ),
        (Protocol::Vault, Some(_)) => Err("has a scheme other than https or http".into()),
        (_, Some("https" | "kmip" | "kmips" | "tls")) => Ok(()),
        (_, Some(_)) => {
            Err("has a scheme KMIP cannot use (KMIP always runs over TLS: write host:port, or https://host:port)".into())
        }
    }
}

fn parse_one(item: &str, default_port: u16) -> Result<HsmEndpoint, String> {
    if item.is_empty() {
        return Err("is empty (remove the extra comma)".into());
    }
    let (scheme, rest) = match item.split_once("://") {
        Some((scheme, rest)) => {
            let valid = scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if !valid {
                return Err("has an invalid scheme".into());
            }
            (Some(scheme.to_ascii_lowercase()), rest)
        }
        None => (None, item),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(at) => rest.split_at_checked(at).unwrap_or((rest, "")),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "/" {
        return Err(
            "has a path, query or fragment, which is not supported: give scheme://host:port only"
                .into(),
        );
    }
    if authority.contains('@') {
        return Err("contains user information (@), which is not supported: put credentials in their own keys".into());
    }
    let (host, port) = split_host_port(authority)?;
    let port = match port {
        Some(text) => {
            values::port(text).map_err(|_| "has a port that is not 1-65535".to_string())?
        }
        None => default_port,
    };
    Ok(HsmEndpoint { scheme, host, port })
}

fn split_host_port(authority: &str) -> Result<(String, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or("has '[' without ']'")?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| "has an invalid IPv6 address in brackets")?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("has text after ']' that is not :port")?,
            ),
        };
        return Ok((ip.to_string(), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((_, port)) if port.contains(':') => {
            return Err(
                "looks like an IPv6 address: put it in brackets, e.g. [2001:db8::1]:5696".into(),
            );
        }
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    if !valid_host {
        return Err("does not have a valid host name or IP address".into());
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str, protocol: Protocol) -> HsmEndpoint {
        let list = parse_list(text, Some(protocol), 5696).unwrap();
        assert_eq!(list.len(), 1);
        list.into_iter().next().unwrap()
    }

    #[test]
    fn item_forms() {
        let kmip = Protocol::Kmip1;
        assert_eq!(
            one("hsm.example.com", kmip).to_string(),
            "hsm.example.com:5696"
        );
        assert_eq!(
            one("hsm.example.com:5697", kmip).to_string(),
            "hsm.example.com:5697"
        );
        assert_eq!(one("10.0.0.1:1", kmip).to_string(), "10.0.0.1:1");
        assert_eq!(one("[2001:db8::1]:5696", kmip).host, "2001:db8::1");
        assert_eq!(one("[::1]", kmip).to_string(), "[::1]:5696");
        assert_eq!(
            one("https://kmshsm.myCorp.com", kmip).to_string(),
            "https://kmshsm.mycorp.com:5696"
        );
        assert_eq!(one("HTTPS://h:99/", kmip).scheme.as_deref(), Some("https"));
        assert_eq!(one("kmips://[::1]:5696", kmip).authority(), "[::1]:5696");
    }

    #[test]
    fn failover_lists() {
        let list = parse_list("a:1, b ,https://c:3", Some(Protocol::Kmip1), 7).unwrap();
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["a:1", "b:7", "https://c:3"]);
    }

    #[test]
    fn bad_items() {
        for bad in [
            "",
            "a,,b",
            "host:84x3",
            "host:0",
            "host:65536",
            "2001:db8::1",
            "[::1",
            "[zz]:1",
            "[::1]x",
            "https://h/v1/x",
            "https://user:pw@h",
            "h?x",
            "host name",
            "://h",
            "1a://h",
            "h:",
        ] {
            assert!(
                parse_list(bad, Some(Protocol::Kmip1), 5696).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn schemes_per_protocol() {
        assert!(parse_list("http://h", Some(Protocol::Kmip1), 1).is_err());
        assert!(parse_list("ftp://h", Some(Protocol::Kmip1), 1).is_err());
        assert!(parse_list("http://vault.example.com", Some(Protocol::Vault), 1).is_err());
        assert!(parse_list("kmip://vault", Some(Protocol::Vault), 1).is_err());
        assert!(parse_list("http://127.0.0.1:8200", Some(Protocol::Vault), 1).is_ok());
        assert!(parse_list("http://localhost", Some(Protocol::Vault), 1).is_ok());
        assert!(parse_list("http://[::1]:8200", Some(Protocol::Vault), 1).is_ok());
        assert!(parse_list("https://vault.example.com", Some(Protocol::Vault), 1).is_ok());
    }
}
