//! Azure managed identity: the access token and the VM facts that Vault's
//! `azure` auth method wants, fetched from the Instance Metadata Service.
//!
//! Two GETs, both with `Metadata: true`:
//! `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=R` gives
//! the JWT; `/metadata/instance?api-version=2021-02-01` gives
//! `compute.subscriptionId`, `resourceGroupName`, `name` and `vmScaleSetName`.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request};
use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::http::{Http, HttpError, is_loopback};
use crate::backend::BackendError;

const TOKEN_API_VERSION: &str = "2018-02-01";
const INSTANCE_API_VERSION: &str = "2021-02-01";

/// What the login request needs from the metadata service.
pub(crate) struct AzureIdentity {
    pub jwt: SecretString,
    pub subscription_id: String,
    pub resource_group_name: String,
    /// Set for a standalone VM.
    pub vm_name: Option<String>,
    /// Set for a VM in a scale set (then `vm_name` is not sent).
    pub vmss_name: Option<String>,
}

/// A client of the metadata service at a configured base URL.
#[derive(Clone)]
pub(crate) struct Imds {
    http: Http,
    base: String,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct InstanceReply {
    compute: Option<Compute>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Compute {
    subscription_id: Option<String>,
    resource_group_name: Option<String>,
    name: Option<String>,
    vm_scale_set_name: Option<String>,
}

impl Imds {
    /// `base` is `http://169.254.169.254` in production. Plain http is
    /// accepted for link-local and loopback hosts only.
    pub fn new(http: Http, base: &str) -> Result<Self, String> {
        let uri: hyper::Uri = base
            .parse()
            .map_err(|e| format!("Azure metadata URL '{base}' is not a URL: {e}"))?;
        let host = uri.host().unwrap_or_default();
        let local = is_loopback(host)
            || host
                .parse::<IpAddr>()
                .map(|ip| matches!(ip, IpAddr::V4(v4) if v4.is_link_local()))
                .unwrap_or(false);
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if local => {}
            _ => {
                return Err(format!(
                    "Azure metadata URL '{base}' must be http://169.254.169.254 (or https://)"
                ));
            }
        }
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// Fetch a managed-identity token for `resource` and the VM's identity.
    pub async fn identity(&self, resource: &str) -> Result<AzureIdentity, BackendError> {
        let token_path = format!(
            "/metadata/identity/oauth2/token?api-version={TOKEN_API_VERSION}&resource={}",
            percent_encode(resource)
        );
        let body = Zeroizing::new(
            self.get(&token_path, "managed-identity token")
                .await?
                .to_vec(),
        );
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| {
            BackendError::Protocol(format!("the Azure metadata token answer is not JSON: {e}"))
        })?;
        let jwt = reply
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                BackendError::Protocol(
                    "the Azure metadata token answer has no access_token".to_owned(),
                )
            })?;
        let jwt = SecretString::from(jwt);

        let instance_path = format!("/metadata/instance?api-version={INSTANCE_API_VERSION}");
        let body = self.get(&instance_path, "instance metadata").await?;
        let reply: InstanceReply = serde_json::from_slice(&body).map_err(|e| {
            BackendError::Protocol(format!("the Azure instance metadata is not JSON: {e}"))
        })?;
        let compute = reply.compute.ok_or_else(|| {
            BackendError::Protocol(
                "the Azure instance metadata has no 'compute' section".to_owned(),
            )
        })?;
        let need = |v: Option<String>, what: &str| {
            v.filter(|s| !s.is_empty()).ok_or_else(|| {
                BackendError::Protocol(format!("the Azure instance metadata has no {what}"))
            })
        };
        let subscription_id = need(compute.subscription_id, "subscriptionId")?;
        let resource_group_name = need(compute.resource_group_name, "resourceGroupName")?;
        let vmss_name = compute.vm_scale_set_name.filter(|s| !s.is_empty());
        let vm_name = if vmss_name.is_some() {
            None
        } else {
            Some(need(compute.name, "VM name")?)
        };
        Ok(AzureIdentity {
            jwt,
            subscription_id,
            resource_group_name,
            vm_name,
            vmss_name,
        })
    }

    async fn get(&self, path_and_query: &str, what: &str) -> Result<Bytes, BackendError> {
        let url = format!("{}{path_and_query}", self.base);
        let req = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header("Metadata", "true")
            .body(Full::new(Bytes::new()))
            .map_err(|e| BackendError::Misconfigured(format!("Azure metadata request: {e}")))?;
        let resp = self.http.send(req).await.map_err(|e| match e {
            HttpError::TooLarge(_) => BackendError::Protocol(format!(
                "the Azure metadata service sent an oversized {what}"
            )),
            other => BackendError::Unavailable {
                reason: format!(
                    "the Azure metadata service at {} did not answer for the {what}: {other}",
                    self.base
                ),
                retry_after: super::error::DEFAULT_RETRY_AFTER,
            },
        })?;
        if resp.status.is_success() {
            return Ok(resp.body);
        }
        let detail = serde_json::from_slice::<serde_json::Value>(&resp.body)
            .ok()
            .and_then(|v| {
                v.get("error_description")
                    .or_else(|| v.get("error"))
                    .and_then(|m| m.as_str())
                    .map(|m| m.chars().take(200).collect::<String>())
            })
            .unwrap_or_default();
        let reason = format!(
            "the Azure metadata service answered {} for the {what}: {detail}",
            resp.status
        );
        match resp.status.as_u16() {
            400 | 403 | 404 => Err(BackendError::Misconfigured(format!(
                "{reason}; does this VM have a managed identity, and is \
                 kms.hsm.vault.auth.azure.resource right?"
            ))),
            _ => Err(BackendError::Unavailable {
                reason,
                retry_after: resp
                    .retry_after
                    .unwrap_or(super::error::DEFAULT_RETRY_AFTER),
            }),
        }
    }
}

/// Percent-encode a query value (RFC 3986 unreserved characters stay).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn encodes_resource() {
        assert_eq!(
            percent_encode("https://vault.hashicorp.com/"),
            "https%3A%2F%2Fvault.hashicorp.com%2F"
        );
    }
}
