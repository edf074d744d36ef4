//! A stand-in for the Azure Instance Metadata Service (IMDS), because Azure
//! cannot be reached from the test machines. It is *not* Azure: it serves
//! the two endpoints cmx-kms uses, with the documented request rules and
//! answer shapes, on 127.0.0.1, and records every request.
//!
//! - `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R`
//!   with `Metadata: true` → a managed-identity access token (a JWT-shaped
//!   string whose `aud` is R; IMDS returns the numbers as strings).
//! - `GET /metadata/instance?api-version=2021-02-01` with `Metadata: true` →
//!   the instance document (`compute.subscriptionId`, `resourceGroupName`,
//!   `name`, `vmScaleSetName`, ...).
//! - Like IMDS: no `Metadata: true` → 400 `invalid_request` "Required
//!   metadata header not specified"; an `X-Forwarded-For` header → 400; no
//!   `api-version` → 400; no `resource` on the token endpoint → 400.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

/// The VM the stand-in pretends to be.
#[derive(Clone, Debug)]
pub struct VmFacts {
    pub subscription_id: String,
    pub resource_group_name: String,
    pub vm_name: String,
    /// Non-empty for a VM in a scale set.
    pub vmss_name: String,
}

impl Default for VmFacts {
    fn default() -> Self {
        Self {
            subscription_id: "3f2c9a4e-1b7d-4c55-9e0a-6d8b2f1c7a90".into(),
            resource_group_name: "rg-cmx-kms".into(),
            vm_name: "kms-node-1".into(),
            vmss_name: String::new(),
        }
    }
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub query: Vec<(String, String)>,
    pub metadata_header: Option<String>,
}

/// A running stand-in.
pub struct ImdsStandIn {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub facts: VmFacts,
    task: tokio::task::JoinHandle<()>,
}

impl ImdsStandIn {
    pub async fn start(facts: VmFacts) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s2, f2) = (seen.clone(), facts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s3, f3) = (s2.clone(), f2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (s4, f4) = (s3.clone(), f3.clone());
                        async move { Ok::<_, Infallible>(handle(req, &s4, &f4)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            facts,
            task,
        }
    }

    /// The base URL to give cmx-kms instead of `http://169.254.169.254`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The access token the stand-in issues for `resource`.
    pub fn token_for(&self, resource: &str) -> String {
        fake_jwt(&self.facts, resource)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ImdsStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fake_jwt(f: &VmFacts, resource: &str) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "cmx-kms-standin"});
    let mirid = format!(
        "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
        f.subscription_id, f.resource_group_name, f.vm_name
    );
    let claims = json!({
        "aud": resource,
        "iss": "https://sts.windows.net/00000000-0000-0000-0000-00000000c0de/",
        "oid": "11111111-2222-3333-4444-555555555555",
        "xms_mirid": mirid,
        "iat": 1_700_000_000u64,
        "nbf": 1_700_000_000u64,
        "exp": 1_700_086_400u64,
    });
    let b = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        b(&header),
        b(&claims),
        URL_SAFE_NO_PAD.encode(b"not-a-real-signature")
    )
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn bad(desc: &str) -> Response<Full<Bytes>> {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid_request", "error_description": desc}),
    )
}

fn handle(req: Request<Incoming>, seen: &Mutex<Vec<Seen>>, f: &VmFacts) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let metadata_header = req
        .headers()
        .get("Metadata")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        query: query.clone(),
        metadata_header: metadata_header.clone(),
    });

    if req.headers().contains_key("X-Forwarded-For") {
        return bad("Request contains X-Forwarded-For header");
    }
    if !metadata_header
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return bad("Required metadata header not specified");
    }
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(api_version) = get("api-version") else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "Bad request. api-version was not specified in the request. For more information refer to aka.ms/azureimds", "newest-versions": ["2021-02-01"]}),
        );
    };
    match path.as_str() {
        "/metadata/identity/oauth2/token" => {
            if api_version != "2018-02-01" {
                return bad("Unsupported api-version for this stand-in");
            }
            let Some(resource) = get("resource").filter(|r| !r.is_empty()) else {
                return bad("Required audience parameter not specified");
            };
            reply(
                StatusCode::OK,
                json!({
                    "access_token": fake_jwt(f, &resource),
                    "client_id": "66666666-7777-8888-9999-000000000000",
                    "expires_in": "86399",
                    "expires_on": "1700086400",
                    "ext_expires_in": "86399",
                    "not_before": "1700000000",
                    "resource": resource,
                    "token_type": "Bearer",
                }),
            )
        }
        "/metadata/instance" => {
            if api_version != "2021-02-01" {
                return bad("Unsupported api-version for this stand-in");
            }
            let resource_id = if f.vmss_name.is_empty() {
                format!(
                    "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
                    f.subscription_id, f.resource_group_name, f.vm_name
                )
            } else {
                format!(
                    "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachineScaleSets/{}/virtualMachines/0",
                    f.subscription_id, f.resource_group_name, f.vmss_name
                )
            };
            reply(
                StatusCode::OK,
                json!({
                    "compute": {
                        "azEnvironment": "AzurePublicCloud",
                        "location": "westeurope",
                        "name": f.vm_name,
                        "osType": "Linux",
                        "resourceGroupName": f.resource_group_name,
                        "resourceId": resource_id,
                        "subscriptionId": f.subscription_id,
                        "vmId": "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
                        "vmScaleSetName": f.vmss_name,
                        "vmSize": "Standard_D2s_v5",
                        "zone": "1",
                    },
                    "network": {"interface": []},
                }),
            )
        }
        _ => reply(StatusCode::NOT_FOUND, json!({"error": "Not found"})),
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
