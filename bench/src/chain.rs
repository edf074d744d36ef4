//! Prepare the benchmark's request: create a customer → user → workspace key
//! chain with the backend identity, check that the device identity can
//! decrypt it, and write the decrypt request body plus a static stand-in of
//! the answer (same length, no key material) for nginx to serve. Also many
//! chains at once, each with its own customer key (the cluster benchmark).

use std::path::Path;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::BenchError;
use crate::http::{Connection, Target};

fn field(reply_body: &[u8], name: &str) -> Result<String, BenchError> {
    let v: Value = serde_json::from_slice(reply_body)
        .map_err(|e| BenchError::Request(format!("answer is not JSON: {e}")))?;
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Request(format!("answer has no {name}")))
}

async fn call(
    conn: &mut Connection,
    path: &str,
    body: &Value,
    expect: u16,
) -> Result<Bytes, BenchError> {
    let r = conn.post(path, Bytes::from(body.to_string())).await?;
    if r.status != expect {
        return Err(BenchError::Request(format!(
            "{path} answered {} (expected {expect}): {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )));
    }
    Ok(r.body)
}

/// The files written and their sizes.
pub struct Prepared {
    pub request_bytes: usize,
    pub response_bytes: usize,
}

/// Create one customer → user → workspace key chain over `b` (a backend
/// connection); the decrypt-workspace-key request for it.
pub async fn create(b: &mut Connection) -> Result<Value, BenchError> {
    let c = field(
        &call(b, "/v1/customer-keys", &json!({}), 201).await?,
        "wrapped_customer_key",
    )?;
    let u = field(
        &call(b, "/v1/user-keys", &json!({"wrapped_customer_key": c}), 201).await?,
        "wrapped_user_key",
    )?;
    let w = field(
        &call(
            b,
            "/v1/workspace-keys",
            &json!({"wrapped_customer_key": c, "wrapped_user_key": u}),
            201,
        )
        .await?,
        "wrapped_workspace_key",
    )?;
    Ok(json!({
        "wrapped_customer_key": c,
        "wrapped_user_key": u,
        "wrapped_workspace_key": w,
    }))
}

/// Create `count` chains, each with its own customer key; write their
/// decrypt requests to `out`, one JSON object a line.
pub async fn many(backend: &Target, count: usize, out: &Path) -> Result<(), BenchError> {
    let mut b = Connection::open(backend).await?;
    let mut text = String::new();
    for _ in 0..count {
        text.push_str(&create(&mut b).await?.to_string());
        text.push('\n');
    }
    std::fs::write(out, text).map_err(BenchError::io(out))
}

/// Create the chain on the server and write `decrypt-request.json` and
/// `decrypt-response.json` into `out`.
pub async fn prepare(
    backend: &Target,
    device: &Target,
    out: &Path,
) -> Result<Prepared, BenchError> {
    let request = create(&mut Connection::open(backend).await?).await?;
    let mut d = Connection::open(device).await?;
    let answer = call(&mut d, "/v1/workspace-keys/decrypt", &request, 200).await?;
    let key = field(&answer, "workspace_key")?;
    // Same shape and length as the real answer, without the key.
    let stand_in = json!({"workspace_key": "A".repeat(key.len())}).to_string();
    if stand_in.len() != answer.len() {
        return Err(BenchError::Request(format!(
            "the answer is {} bytes but its stand-in {}: the answer's format changed",
            answer.len(),
            stand_in.len()
        )));
    }
    let request = request.to_string();
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| BenchError::Io {
            path,
            reason: e.to_string(),
        })
    };
    write("decrypt-request.json", &request)?;
    write("decrypt-response.json", &stand_in)?;
    Ok(Prepared {
        request_bytes: request.len(),
        response_bytes: answer.len(),
    })
}
