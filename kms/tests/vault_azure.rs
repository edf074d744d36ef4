//! Azure managed-identity login. Azure cannot be reached here, so:
//! - the Instance Metadata Service is a stand-in on 127.0.0.1
//!   (`support/azure_imds.rs`, documented there);
//! - OpenBao cannot verify an Azure JWT offline, so Vault's login endpoint is
//!   a recording proxy in front of the real OpenBao: it records the login
//!   request exactly as sent and answers it with a real OpenBao token
//!   (minted with the root token), and forwards every other call to OpenBao.
//!   Everything after the login is real Transit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/azure_imds.rs"]
mod azure_imds;
#[path = "support/openbao.rs"]
mod openbao;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use azure_imds::{ImdsStandIn, VmFacts};
use bytes::Bytes;
use cmx_kms::backend::vault::{AzureAuth, VaultAuth, VaultBackend};
use cmx_kms::backend::{Backend, BackendError};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use openbao::{GUIDE_POLICY, OpenBao, test_settings};
use serde_json::{Value, json};

const KEY: &str = "kms-kek";
const RESOURCE: &str = "https://management.azure.com/";

/// One login request as the proxy received it.
#[derive(Clone, Debug)]
struct Login {
    path: String,
    namespace: Option<String>,
    had_token: bool,
    body: Value,
}

struct Proxy {
    addr: std::net::SocketAddr,
    logins: Arc<Mutex<Vec<Login>>>,
    minted: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start the recording proxy for `bao`; `login_path` is recorded and answered.
async fn proxy(bao: &OpenBao, login_path: &'static str) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let logins = Arc::new(Mutex::new(Vec::new()));
    let minted = Arc::new(Mutex::new(Vec::new()));
    let upstream = bao.addr();
    let (l2, m2) = (logins.clone(), minted.clone());
    let task = tokio::spawn(async move {
        let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(hyper_util::client::legacy::connect::HttpConnector::new());
        while let Ok((stream, _)) = listener.accept().await {
            let (l3, m3, c3, up3) = (l2.clone(), m2.clone(), client.clone(), upstream.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (l4, m4, c4, up4) = (l3.clone(), m3.clone(), c3.clone(), up3.clone());
                    async move { Ok::<_, Infallible>(serve(req, login_path, &l4, &m4, &c4, &up4).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Proxy {
        addr,
        logins,
        minted,
        task,
    }
}

async fn serve(
    req: Request<Incoming>,
    login_path: &str,
    logins: &Mutex<Vec<Login>>,
    minted: &Mutex<Vec<String>>,
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    upstream: &str,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let ns = req
        .headers()
        .get("X-Vault-Namespace")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let token = req.headers().get("X-Vault-Token").cloned();
    let body = req.into_body().collect().await.unwrap().to_bytes();

    let send = |m: Method,
                pq: String,
                tok: Option<hyper::header::HeaderValue>,
                ns: Option<String>,
                b: Bytes| {
        let mut r = Request::builder().method(m).uri(format!("{upstream}{pq}"));
        if let Some(t) = tok {
            r = r.header("X-Vault-Token", t);
        }
        if let Some(n) = ns {
            r = r.header("X-Vault-Namespace", n);
        }
        client.request(r.body(Full::new(b)).unwrap())
    };

    if method == Method::POST && path_q == login_path {
        logins.lock().unwrap().push(Login {
            path: path_q,
            namespace: ns.clone(),
            had_token: token.is_some(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        // Answer as Vault's azure auth would: a real token with the role's policy.
        let create = json!({"policies": ["kms-app"], "ttl": "1h", "renewable": true});
        let resp = send(
            Method::POST,
            "/v1/auth/token/create".into(),
            Some(hyper::header::HeaderValue::from_static(openbao::ROOT)),
            ns,
            Bytes::from(create.to_string()),
        )
        .await
        .unwrap();
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&b).unwrap();
        minted
            .lock()
            .unwrap()
            .push(v["auth"]["client_token"].as_str().unwrap().to_owned());
        return Response::new(Full::new(b));
    }
    match send(method, path_q, token, ns, body).await {
        Ok(resp) => {
            let status = resp.status();
            let b = resp.into_body().collect().await.unwrap().to_bytes();
            Response::builder()
                .status(status)
                .body(Full::new(b))
                .unwrap()
        }
        Err(_) => Response::builder()
            .status(502)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    }
}

async fn prepare(bao: &OpenBao, ns: Option<&str>) {
    bao.enable_transit(ns).await;
    bao.create_key(ns, KEY).await;
    bao.write_policy(ns, "kms-app", GUIDE_POLICY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_login_sends_exactly_what_vault_expects() {
    let bao = OpenBao::start().await;
    prepare(&bao, None).await;
    let imds = ImdsStandIn::start(VmFacts::default()).await;
    let px = proxy(&bao, "/v1/auth/azure/login").await;

    let mut az = AzureAuth::new("kms");
    az.resource = RESOURCE.into();
    az.imds_base_url = imds.base_url();
    let settings = test_settings(&format!("http://{}", px.addr), KEY, VaultAuth::Azure(az));
    let (backend, _) = VaultBackend::new(settings).unwrap();
    let w = backend.wrap(b"customer key", b"").await.unwrap();
    assert_eq!(
        backend.unwrap(&w, b"").await.unwrap().as_slice(),
        b"customer key"
    );

    let logins = px.logins.lock().unwrap().clone();
    assert_eq!(logins.len(), 1, "{logins:?}");
    let l = &logins[0];
    assert_eq!(l.path, "/v1/auth/azure/login");
    assert_eq!(l.namespace, None);
    assert!(!l.had_token, "a login carries no token");
    let f = &imds.facts;
    assert_eq!(
        l.body,
        json!({
            "role": "kms",
            "jwt": imds.token_for(RESOURCE),
            "subscription_id": f.subscription_id,
            "resource_group_name": f.resource_group_name,
            "vm_name": f.vm_name,
        })
    );

    // What the metadata service saw: the two documented GETs.
    let seen = imds.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].path, "/metadata/identity/oauth2/token");
    assert_eq!(
        seen[0].query,
        vec![
            ("api-version".to_owned(), "2018-02-01".to_owned()),
            ("resource".to_owned(), RESOURCE.to_owned())
        ]
    );
    assert_eq!(seen[1].path, "/metadata/instance");
    assert_eq!(
        seen[1].query,
        vec![("api-version".to_owned(), "2021-02-01".to_owned())]
    );
    assert!(
        seen.iter()
            .all(|s| s.metadata_header.as_deref() == Some("true"))
    );

    // The token is revoked: one new Azure login, and the call still succeeds.
    let first = px.minted.lock().unwrap()[0].clone();
    bao.revoke_token(&first).await;
    assert_eq!(
        backend.unwrap(&w, b"").await.unwrap().as_slice(),
        b"customer key"
    );
    assert_eq!(px.logins.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_scale_set_custom_path_and_namespace() {
    let bao = OpenBao::start().await;
    bao.create_namespace("eng").await;
    prepare(&bao, Some("eng")).await;
    let facts = VmFacts {
        vmss_name: "kms-vmss".into(),
        vm_name: "kms-vmss_0".into(),
        ..VmFacts::default()
    };
    let imds = ImdsStandIn::start(facts).await;
    let px = proxy(&bao, "/v1/auth/azure-prod/login").await;

    let mut az = AzureAuth::new("KMS_ADMIN");
    az.path = "/v1/auth/azure-prod/login".into();
    az.imds_base_url = imds.base_url();
    let mut settings = test_settings(&format!("http://{}", px.addr), KEY, VaultAuth::Azure(az));
    settings.namespace = Some("eng".into());
    let (backend, _) = VaultBackend::new(settings).unwrap();
    assert!(backend.check().await.passed());

    let logins = px.logins.lock().unwrap().clone();
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0].namespace.as_deref(), Some("eng"));
    let f = &imds.facts;
    assert_eq!(
        logins[0].body,
        json!({
            "role": "KMS_ADMIN",
            "jwt": imds.token_for("https://vault.hashicorp.com/"),
            "subscription_id": f.subscription_id,
            "resource_group_name": f.resource_group_name,
            "vmss_name": "kms-vmss",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_service_rules_and_outage() {
    let imds = ImdsStandIn::start(VmFacts::default()).await;
    // The stand-in refuses what IMDS refuses.
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let get = |uri: String, metadata: bool| {
        let mut r = Request::builder().uri(uri);
        if metadata {
            r = r.header("Metadata", "true");
        }
        client.request(r.body(Full::new(Bytes::new())).unwrap())
    };
    let base = imds.base_url();
    let r = get(
        format!("{base}/metadata/instance?api-version=2021-02-01"),
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let b = r.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&b).contains("Required metadata header not specified"));
    let r = get(
        format!("{base}/metadata/identity/oauth2/token?api-version=2018-02-01"),
        true,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);

    // No metadata service: unavailable, naming it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut az = AzureAuth::new("kms");
    az.imds_base_url = format!("http://{closed}");
    let (backend, _) = VaultBackend::new(test_settings(
        "http://127.0.0.1:1",
        KEY,
        VaultAuth::Azure(az),
    ))
    .unwrap();
    let err = backend.wrap(b"k", b"").await.unwrap_err();
    println!("{err}");
    assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("Azure metadata service"), "{err}");

    // The metadata URL may not be plain http to a routable host.
    let mut az = AzureAuth::new("kms");
    az.imds_base_url = "http://metadata.example".into();
    assert!(matches!(
        VaultBackend::new(test_settings(
            "http://127.0.0.1:1",
            KEY,
            VaultAuth::Azure(az)
        )),
        Err(BackendError::Misconfigured(_))
    ));
}
