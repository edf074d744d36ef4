//! Vault's answers turned into [`BackendError`]s whose text tells the
//! operator what happened and what to do.

use std::time::Duration;

use hyper::StatusCode;

use crate::backend::BackendError;

/// How long a caller should wait after a failure that carried no `Retry-After`.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest Vault message quoted in our errors.
const MAX_MESSAGE_CHARS: usize = 300;

/// Vault's error messages from a `{"errors": [...]}` body, cleaned up
/// (Go's multierror framing removed) and bounded. Never key material: Vault
/// does not echo plaintext or ciphertext in its errors.
pub(crate) fn vault_message(body: &[u8]) -> String {
    let parsed: Option<Vec<String>> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors").and_then(|e| e.as_array()).map(|arr| {
                arr.iter()
                    .filter_map(|m| m.as_str())
                    .map(clean_multierror)
                    .filter(|m| !m.is_empty())
                    .collect()
            })
        });
    let joined = parsed.map(|v| v.join("; ")).unwrap_or_default();
    bounded(&joined)
}

/// `1 error occurred:\n\t* permission denied\n\n` becomes `permission denied`.
fn clean_multierror(m: &str) -> String {
    let parts: Vec<&str> = m
        .lines()
        .map(str::trim)
        .filter(|l| !is_multierror_header(l))
        .map(|l| l.trim_start_matches("* "))
        .collect();
    parts.join("; ")
}

fn is_multierror_header(l: &str) -> bool {
    l.is_empty() || (l.ends_with("occurred:") && l.contains("error"))
}

fn bounded(s: &str) -> String {
    let printable: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    printable.trim().to_owned()
}

/// Whether a transport error's text is a TLS certificate or handshake
/// problem (rustls' words): one that persists until an operator changes the
/// CA, a certificate or the address, not a Vault that is down.
pub(crate) fn is_tls_config_problem(why: &str) -> bool {
    let lower = why.to_ascii_lowercase();
    [
        "invalid peer certificate",
        "received fatal alert",
        "peer is incompatible",
        "no shared cipher",
        "certificate required",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// What we were doing, for the operator-facing text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Encrypt,
    Decrypt,
    Rewrap,
    ReadKey,
    CreateKey,
    RotateKey,
    Login,
    Renew,
    Lookup,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypt with",
            Self::Decrypt => "decrypt with",
            Self::Rewrap => "rewrap with",
            Self::ReadKey => "read",
            Self::CreateKey => "create",
            Self::RotateKey => "rotate",
            Self::Login => "log in for",
            Self::Renew => "renew the token for",
            Self::Lookup => "look up the token for",
        }
    }
}

/// Where the failing call went, for messages.
#[derive(Clone, Debug)]
pub(crate) struct Ctx<'a> {
    pub op: Op,
    /// API path without `/v1/`, e.g. `transit/encrypt/kms-kek`.
    pub path: &'a str,
    pub key: &'a str,
    pub mount: &'a str,
    pub namespace: Option<&'a str>,
}

impl Ctx<'_> {
    fn where_(&self) -> String {
        match self.namespace {
            Some(ns) => format!("{} in namespace '{ns}'", self.path),
            None => self.path.to_owned(),
        }
    }
}

/// Classify a final (non-2xx) answer.
pub(crate) fn classify(
    status: StatusCode,
    message: &str,
    retry_after: Option<Duration>,
    ctx: &Ctx<'_>,
) -> BackendError {
    let msg = if message.is_empty() {
        "(no message)"
    } else {
        message
    };
    let lower = msg.to_ascii_lowercase();
    let verb = ctx.op.verb();
    let key = ctx.key;
    let mount = ctx.mount;
    let at = ctx.where_();
    match status.as_u16() {
        403 => BackendError::PermissionDenied(format!(
            "Vault refused to {verb} {at}: {msg}; check that the token's policy grants this path \
             (the guide's policy: update on {mount}/encrypt/* and {mount}/decrypt/*; create, read, \
             update, list on {mount}/keys/*)"
        )),
        404 if lower.contains("no handler for route") || lower.contains("unsupported path") => {
            BackendError::Misconfigured(format!(
                "Vault has nothing at {at}: {msg}; is the Transit engine mounted at '{mount}' \
                 (kms.hsm.vault.mount) and is the namespace right?"
            ))
        }
        404 => BackendError::KeyNotFound(not_found_text(ctx)),
        400 if lower.contains("encryption key not found") || lower.contains("key not found") => {
            BackendError::KeyNotFound(not_found_text(ctx))
        }
        400 if lower.contains("disallowed by policy") || lower.contains("too old") => {
            BackendError::KeyNotUsable(format!(
                "the blob was wrapped with a version of Vault key '{key}' older than the key's \
                 min_decryption_version: {msg}; lower min_decryption_version on \
                 {mount}/keys/{key}/config to unwrap it, or restore it from backup"
            ))
        }
        400 if lower.contains("version is too new") => BackendError::InvalidCiphertext(format!(
            "the blob names a version of Vault key '{key}' that the key does not have \
             (was the key deleted and created again?): {msg}"
        )),
        400 if lower.contains("ciphertext")
            || lower.contains("message authentication failed")
            || lower.contains("invalid input") =>
        {
            BackendError::InvalidCiphertext(format!("Vault key '{key}' cannot decrypt it: {msg}"))
        }
        400 if lower.contains("unsupported") || lower.contains("does not support") => {
            BackendError::KeyNotUsable(format!(
                "Vault key '{key}' cannot be used to {verb} it: {msg}; the master key must be of \
                 type aes256-gcm96"
            ))
        }
        429 | 502 | 503 | 504 | 412 => BackendError::Unavailable {
            reason: format!("Vault answered {status} to {at}: {msg}"),
            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        },
        500..=599 => BackendError::Unavailable {
            reason: format!("Vault failed on {at} ({status}): {msg}"),
            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        },
        400 => BackendError::Protocol(format!("Vault rejected the request to {at}: {msg}")),
        _ => BackendError::Protocol(format!("Vault answered {status} to {at}: {msg}")),
    }
}

fn not_found_text(ctx: &Ctx<'_>) -> String {
    let ns = ctx
        .namespace
        .map(|n| format!(" in namespace '{n}'"))
        .unwrap_or_default();
    format!(
        "encryption key '{}' not found on the Transit mount '{}'{ns}: create it with \
         `cmx-kms hsm init`, or fix kms.hsm.key.name",
        ctx.key, ctx.mount
    )
}

/// Whether an answer with this status is worth another attempt.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    #[test]
    fn certificate_problems_are_configuration_and_outages_are_not() {
        use super::is_tls_config_problem as tls;
        assert!(tls(
            "cannot connect: client error (Connect): invalid peer certificate: UnknownIssuer"
        ));
        assert!(tls("received fatal alert: BadCertificate"));
        assert!(!tls("cannot connect: Connection refused (os error 111)"));
        assert!(!tls("no answer within 3s"));
    }

    use super::*;

    fn ctx(op: Op) -> Ctx<'static> {
        Ctx {
            op,
            path: "transit/decrypt/kek",
            key: "kek",
            mount: "transit",
            namespace: Some("eng"),
        }
    }

    #[test]
    fn messages_are_cleaned() {
        let body = br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#;
        assert_eq!(vault_message(body), "permission denied");
        assert_eq!(vault_message(br#"{"errors":[]}"#), "");
        assert_eq!(vault_message(b"not json"), "");
    }

    #[test]
    fn classes() {
        let c = |s: u16, m: &str| {
            classify(
                StatusCode::from_u16(s).unwrap_or_default(),
                m,
                None,
                &ctx(Op::Decrypt),
            )
        };
        assert!(matches!(
            c(400, "encryption key not found"),
            BackendError::KeyNotFound(_)
        ));
        assert!(matches!(
            c(
                400,
                "ciphertext or signature version is disallowed by policy (too old)"
            ),
            BackendError::KeyNotUsable(_)
        ));
        assert!(matches!(
            c(400, "invalid ciphertext length"),
            BackendError::InvalidCiphertext(_)
        ));
        assert!(matches!(
            c(403, "permission denied"),
            BackendError::PermissionDenied(_)
        ));
        assert!(matches!(
            c(503, "Vault is sealed"),
            BackendError::Unavailable { .. }
        ));
        assert!(matches!(c(404, ""), BackendError::KeyNotFound(_)));
        assert!(matches!(
            c(404, "no handler for route \"x\". route entry not found."),
            BackendError::Misconfigured(_)
        ));
        let text = c(400, "encryption key not found").to_string();
        assert!(text.contains("cmx-kms hsm init"), "{text}");
        assert!(text.contains("namespace 'eng'"), "{text}");
    }
}
