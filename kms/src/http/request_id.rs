//! Request ids: unique across nodes and restarts, no system call per request.

use hyper::header::{HeaderName, HeaderValue};

/// The response header that carries the request id (a constant: a custom
/// header name given as text is parsed and allocated on every insert).
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: a random prefix drawn once per process, then a counter, so
/// ids are unique across nodes and restarts without a system call per request.
pub struct RequestIds {
    /// 8 hex digits.
    prefix: [u8; 8],
    next: std::sync::atomic::AtomicU64,
}

impl RequestIds {
    pub fn new() -> Self {
        let mut b = [0u8; 4];
        // Without randomness the ids are still unique within this process.
        let _ = getrandom::fill(&mut b);
        let mut prefix = [0u8; 8];
        crate::hex::lower_into(&mut prefix, &b);
        Self {
            prefix,
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// The next id: 8 hex digits of prefix, 8 of counter.
    pub fn next(&self) -> RequestId {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut id = [0u8; 16];
        let (prefix, counter) = id.split_at_mut(8);
        prefix.copy_from_slice(&self.prefix);
        crate::hex::lower_into(counter, &(n as u32).to_be_bytes());
        // Hex digits only: always a valid header value.
        RequestId(HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("-")))
    }
}

/// One request's id, made as the `x-request-id` header value it is sent
/// in (one allocation, none to copy it into the response).
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    /// Sets the id's header on `resp`, the id's last use.
    pub fn into_header<B>(self, resp: &mut hyper::Response<B>) {
        resp.headers_mut().insert(X_REQUEST_ID, self.0);
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_hex_digits_and_differ() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        for id in [&a, &b] {
            let s = id.as_str();
            assert_eq!(s.len(), 16, "{s}");
            assert!(s.bytes().all(|c| c.is_ascii_hexdigit()), "{s}");
        }
        assert_eq!(a.as_str()[..8], b.as_str()[..8], "one prefix per process");
        assert_ne!(a.as_str(), b.as_str());
        let mut resp = hyper::Response::new(());
        let text = b.as_str().to_owned();
        b.into_header(&mut resp);
        assert_eq!(resp.headers()[X_REQUEST_ID], text.as_str());
    }
}
