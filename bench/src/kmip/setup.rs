//! The comparison's fixtures: the key chains each worker decrypts, the
//! node targets, and the long-lived KMIP clients (direct, and through the
//! proxy) built from the guide's PKI.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use cmx_kms::backend::MasterWrap;
use cmx_kms::backend::kmip::{KmipBackend, KmipSettings};
use cmx_kms::envelope::Envelope;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use super::{Bench, Chain, KmipArgs, MAX_WORKERS};
use crate::kmip_log::LogCounter;
use crate::tls::{ClientFiles, certs};
use crate::{BenchError, chain};

/// The customer-key envelope of the decrypt request: its backend half and
/// the associated data cmx-kms binds to it (the envelope header).
fn customer_wrap(request: &[u8]) -> Result<(MasterWrap, Vec<u8>), BenchError> {
    let bad = |why: String| BenchError::Request(format!("decrypt-request.json: {why}"));
    let v: serde_json::Value = serde_json::from_slice(request).map_err(|e| bad(e.to_string()))?;
    let text = v
        .get("wrapped_customer_key")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad("no wrapped_customer_key".into()))?;
    let blob = B64.decode(text).map_err(|e| bad(e.to_string()))?;
    let env = Envelope::decode_customer(&blob).map_err(|e| bad(e.to_string()))?;
    Ok((env.master, env.header.to_bytes()))
}

pub(super) async fn setup(a: &KmipArgs) -> Result<Bench, BenchError> {
    let files = |name: &str| ClientFiles {
        ca: a.pki.join("ca.crt"),
        cert: a.pki.join(format!("{name}.crt")),
        key: a.pki.join(format!("{name}.key")),
    };
    let cold = crate::target(a.kms, &files("cmxDevice"))?;
    let backend_id = crate::target(a.kms, &files("cmxBackend"))?;
    let mut chains = Vec::new();
    for i in 0..a.concurrency.clamp(1, MAX_WORKERS) {
        let dir = a.work.join(format!("chain-{i}"));
        std::fs::create_dir_all(&dir).map_err(BenchError::io(&dir))?;
        chain::prepare(&backend_id, &cold, &dir).await?;
        let path = dir.join("decrypt-request.json");
        let request = std::fs::read(&path).map_err(BenchError::io(&path))?;
        let (wrapped, aad) = customer_wrap(&request)?;
        chains.push(Chain {
            wrapped: Arc::new(wrapped),
            aad: Arc::new(aad),
            body: Bytes::from(request),
        });
    }
    let warm = match a.kms_warm {
        Some(addr) => Some(crate::target(addr, &files("cmxDevice"))?),
        None => None,
    };
    let proxied = match a.proxy {
        Some(addr) => Some(Arc::new(kmip_client(a, addr)?)),
        None => None,
    };
    Ok(Bench {
        backend: Arc::new(kmip_client(a, a.hsm)?),
        proxied,
        chains,
        cold,
        warm,
        cold_conns: Vec::new(),
        warm_conns: Vec::new(),
        kms_pids: a.kms_pids.clone(),
        proxy_pids: a.proxy_pids.clone(),
        hsm_pids: a.hsm_pids.clone(),
        hsm_log: LogCounter::new(&a.hsm_log),
    })
}

/// The server's own KMIP client with the node's certificate, talking to `addr`
/// (PyKMIP, or the proxy in front of it, which presents PyKMIP's certificate).
fn kmip_client(a: &KmipArgs, addr: SocketAddr) -> Result<KmipBackend, BenchError> {
    let key_path = a.pki.join("kmsClient.key");
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(BenchError::pem(&key_path))?;
    let settings = KmipSettings::new(addr.ip().to_string(), addr.port(), a.key_name.clone());
    KmipBackend::new(
        settings,
        certs(&a.pki.join("kmsClient.crt"))?,
        key,
        certs(&a.pki.join("kmipSigningCA.crt"))?,
    )
    .map_err(|e| BenchError::Request(format!("KMIP client for {addr}: {e}")))
}
