//! `OpenBao`'s HTTP API as a token sees it: one call, namespaces, Transit
//! keys, policies, tokens, AppRole and certificate auth. Part of
//! `openbao.rs` (its `api` module).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde_json::{Value, json};

use super::{OpenBao, ROOT};

impl OpenBao {
    /// One API call with the root token (or `token`), in namespace `ns`.
    pub async fn try_api(
        &self,
        method: Method,
        path: &str,
        ns: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        self.call_as(ROOT, method, path, ns, body).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        ns: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}/v1/{path}", self.addr()))
            .header("X-Vault-Token", token);
        if let Some(ns) = ns {
            b = b.header("X-Vault-Namespace", ns);
        }
        let payload = body.map(|v| Bytes::from(v.to_string())).unwrap_or_default();
        let req = b.body(Full::new(payload)).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Ok((status, v))
    }

    /// An API call that must succeed; returns the JSON body.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        ns: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (status, v) = self.try_api(method.clone(), path, ns, body).await.unwrap();
        assert!(
            (200..300).contains(&status),
            "{method} {path} (ns {ns:?}) -> {status}: {v}"
        );
        v
    }

    pub async fn create_namespace(&self, name: &str) {
        self.api(Method::POST, &format!("sys/namespaces/{name}"), None, None)
            .await;
    }

    pub async fn enable_transit(&self, ns: Option<&str>) {
        self.api(
            Method::POST,
            "sys/mounts/transit",
            ns,
            Some(json!({"type": "transit"})),
        )
        .await;
    }

    pub async fn create_key(&self, ns: Option<&str>, key: &str) {
        self.api(
            Method::POST,
            &format!("transit/keys/{key}"),
            ns,
            Some(json!({"type": "aes256-gcm96"})),
        )
        .await;
    }

    pub async fn rotate_key(&self, ns: Option<&str>, key: &str) {
        self.api(
            Method::POST,
            &format!("transit/keys/{key}/rotate"),
            ns,
            None,
        )
        .await;
    }

    pub async fn set_min_decryption_version(&self, ns: Option<&str>, key: &str, v: u32) {
        self.api(
            Method::POST,
            &format!("transit/keys/{key}/config"),
            ns,
            Some(json!({"min_decryption_version": v})),
        )
        .await;
    }

    pub async fn write_policy(&self, ns: Option<&str>, name: &str, hcl: &str) {
        self.api(
            Method::PUT,
            &format!("sys/policies/acl/{name}"),
            ns,
            Some(json!({"policy": hcl})),
        )
        .await;
    }

    /// `auth/token/create` with the given body; returns the client token.
    pub async fn create_token(&self, ns: Option<&str>, body: Value) -> String {
        let v = self
            .api(Method::POST, "auth/token/create", ns, Some(body))
            .await;
        v["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    pub async fn revoke_token(&self, token: &str) {
        self.api(
            Method::POST,
            "auth/token/revoke",
            None,
            Some(json!({"token": token})),
        )
        .await;
    }

    /// Enable AppRole with role `name`; returns `(role_id, secret_id)`.
    pub async fn approle(
        &self,
        ns: Option<&str>,
        name: &str,
        policies: &str,
        ttl: &str,
        max_ttl: &str,
    ) -> (String, String) {
        let _ = self
            .try_api(
                Method::POST,
                "sys/auth/approle",
                ns,
                Some(json!({"type": "approle"})),
            )
            .await;
        self.api(
            Method::POST,
            &format!("auth/approle/role/{name}"),
            ns,
            Some(json!({"token_policies": policies, "token_ttl": ttl, "token_max_ttl": max_ttl})),
        )
        .await;
        let r = self
            .api(
                Method::GET,
                &format!("auth/approle/role/{name}/role-id"),
                ns,
                None,
            )
            .await;
        let s = self
            .api(
                Method::POST,
                &format!("auth/approle/role/{name}/secret-id"),
                ns,
                None,
            )
            .await;
        (
            r["data"]["role_id"].as_str().unwrap().to_owned(),
            s["data"]["secret_id"].as_str().unwrap().to_owned(),
        )
    }

    /// Enable TLS certificate auth with one role trusting `ca_pem`.
    pub async fn cert_auth(
        &self,
        role: &str,
        ca_pem: &str,
        policies: &str,
        ttl: &str,
        max_ttl: &str,
    ) {
        let _ = self
            .try_api(
                Method::POST,
                "sys/auth/cert",
                None,
                Some(json!({"type": "cert"})),
            )
            .await;
        self.api(
            Method::POST,
            &format!("auth/cert/certs/{role}"),
            None,
            Some(json!({
                "certificate": ca_pem,
                "token_policies": policies,
                "token_ttl": ttl,
                "token_max_ttl": max_ttl,
            })),
        )
        .await;
    }

    /// Tokens whose accessors the server lists now (root namespace).
    pub async fn token_accessors(&self) -> Vec<String> {
        let v = self
            .api(
                Method::from_bytes(b"LIST").unwrap(),
                "auth/token/accessors",
                None,
                None,
            )
            .await;
        v["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}
