//! Bodies: a response buffer that is wiped when dropped, and a bounded reader.

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use zeroize::Zeroizing;

use super::error::ApiError;

/// A response body buffer wiped from memory when dropped (responses may carry
/// a plaintext workspace key).
pub struct SecretBuf {
    data: Zeroizing<Vec<u8>>,
    pos: usize,
}

impl SecretBuf {
    pub fn new(data: Zeroizing<Vec<u8>>) -> Self {
        Self { data, pos: 0 }
    }
}

impl Buf for SecretBuf {
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
    fn chunk(&self) -> &[u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }
    fn advance(&mut self, cnt: usize) {
        self.pos = self.pos.saturating_add(cnt).min(self.data.len());
    }
}

pub type ResponseBody = Full<SecretBuf>;

pub fn body(data: Zeroizing<Vec<u8>>) -> ResponseBody {
    Full::new(SecretBuf::new(data))
}

/// Read a request body of at most `limit` bytes. A declared length over the
/// limit is refused before anything is read.
pub async fn read_limited(
    body: Incoming,
    declared: Option<u64>,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| ApiError::RequestTimeout)?;
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(_) => Err(ApiError::BadRequest(
            "the request body could not be read".into(),
        )),
    }
}
