//! A PROXY header from an address `kms.server.proxy-protocol.trusted` does
//! not list: almost always a balancer whose address is missing from that
//! list (a typo, a new HAProxy host), whose every connection would otherwise
//! fail as a corrupt TLS record and be logged as one among many handshake
//! failures, while the balancer keeps sending traffic to the node.
//!
//! [`sniff`] looks at the first bytes of such a connection without consuming
//! them ([`tokio::net::TcpStream::peek`]): a TLS ClientHello starts with
//! `0x16`, so a real client is told apart by its first byte and its handshake
//! goes on with every byte still in the socket, after no other wait than the
//! one the handshake itself makes (the bytes must arrive either way; the
//! caller bounds both with the handshake deadline). Only bytes that could
//! still be a signature are waited for. [`Warnings`] lets one line through
//! per address per [`INTERVAL`], counting the ones held back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::V2_SIG;

/// The version 1 signature.
const V1_SIG: &[u8] = b"PROXY ";

/// Least time between two warnings about one address.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Addresses remembered at most; past it, addresses quiet for [`INTERVAL`]
/// are forgotten (with their count), and a new one is let through only
/// when that makes room.
const MAX_ADDRESSES: usize = 256;
/// Pause between two looks at an incomplete signature.
const REPEEK: Duration = Duration::from_millis(5);

/// What the first bytes of a connection are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Anything but a PROXY signature (a ClientHello, garbage, or the end of
    /// the connection): the TLS handshake decides.
    Other,
    /// A PROXY protocol header of this version (1 or 2).
    Proxy(u8),
}

/// What `got`, the bytes available so far, say; `None` while they are a
/// strict prefix of a signature (more are needed to tell).
pub fn classify(got: &[u8]) -> Option<Start> {
    if got.starts_with(V1_SIG) {
        return Some(Start::Proxy(1));
    }
    if got.starts_with(&V2_SIG) {
        return Some(Start::Proxy(2));
    }
    let prefix_of = |sig: &[u8]| !got.is_empty() && sig.starts_with(got);
    if prefix_of(V1_SIG) || prefix_of(&V2_SIG) {
        None
    } else {
        Some(Start::Other)
    }
}

/// The start of `tcp`, peeked: nothing is consumed. Waits for the first
/// bytes as a handshake would, and longer only while they may still be a
/// signature; the caller bounds it.
pub async fn sniff(tcp: &tokio::net::TcpStream) -> Start {
    let mut buf = [0u8; V2_SIG.len()];
    loop {
        let got = match tcp.peek(&mut buf).await {
            Ok(n) => &buf[..n],
            Err(_) => return Start::Other,
        };
        if got.is_empty() {
            return Start::Other;
        }
        if let Some(start) = classify(got) {
            return start;
        }
        // A split signature: the rest is on its way (or never comes, and the
        // deadline ends it). Peek returns at once while bytes are queued, so
        // pause rather than spin.
        tokio::time::sleep(REPEEK).await;
    }
}

/// One warning per address per [`INTERVAL`], with the number held back (one
/// per node, in its [`App`](crate::http::api::App)).
#[derive(Default)]
pub struct Warnings {
    seen: Mutex<HashMap<IpAddr, (Instant, u64)>>,
}

impl Warnings {
    /// `Some(lines held back since the last one)` when a line about `ip`
    /// may be written now; `None` (and one more held back) otherwise.
    pub fn open(&self, ip: IpAddr) -> Option<u64> {
        self.open_at(ip, Instant::now())
    }

    fn open_at(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((last, held)) = seen.get_mut(&ip) {
            if now.saturating_duration_since(*last) < INTERVAL {
                *held += 1;
                return None;
            }
            *last = now;
            return Some(std::mem::take(held));
        }
        if seen.len() >= MAX_ADDRESSES {
            seen.retain(|_, (last, _)| now.saturating_duration_since(*last) < INTERVAL);
            if seen.len() >= MAX_ADDRESSES {
                return None;
            }
        }
        seen.insert(ip, (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_hello_is_told_apart_by_its_first_byte() {
        assert_eq!(classify(b"\x16"), Some(Start::Other));
        assert_eq!(classify(b"\x16\x03\x01\x02\x00"), Some(Start::Other));
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Start::Other));
        assert_eq!(classify(b"PRI * HTTP/2"), Some(Start::Other));
        assert_eq!(classify(b""), Some(Start::Other));
    }

    #[test]
    fn signatures_and_their_prefixes() {
        assert_eq!(classify(b"PROXY TCP4 1.2.3.4"), Some(Start::Proxy(1)));
        assert_eq!(classify(b"PROXY "), Some(Start::Proxy(1)));
        assert_eq!(classify(&V2_SIG), Some(Start::Proxy(2)));
        for n in 1..V1_SIG.len() {
            assert_eq!(classify(&V1_SIG[..n]), None, "{n} bytes of v1");
        }
        for n in 1..V2_SIG.len() {
            assert_eq!(classify(&V2_SIG[..n]), None, "{n} bytes of v2");
        }
        assert_eq!(classify(b"PROXZ"), Some(Start::Other));
    }

    #[test]
    fn sniffing_consumes_nothing_and_waits_for_a_split_signature() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let mut client = tokio::net::TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let (mut server, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
            client
                .write_all(&V2_SIG[..5])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let writer = async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                client
                    .write_all(&V2_SIG[5..])
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            };
            let (start, ()) = tokio::join!(sniff(&server), writer);
            assert_eq!(start, Start::Proxy(2));
            let mut all = [0u8; 12];
            server
                .read_exact(&mut all)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(all, V2_SIG, "every byte is still in the socket");
        });
    }

    #[test]
    fn one_warning_per_address_per_interval_with_the_held_back_counted() {
        let w = Warnings::default();
        let (a, b): (IpAddr, IpAddr) = ([127, 0, 0, 10].into(), [127, 0, 0, 11].into());
        let t0 = Instant::now();
        assert_eq!(w.open_at(a, t0), Some(0));
        assert_eq!(w.open_at(a, t0 + Duration::from_secs(1)), None);
        assert_eq!(w.open_at(b, t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(w.open_at(a, t0 + Duration::from_secs(9)), None);
        assert_eq!(w.open_at(a, t0 + INTERVAL), Some(2));
        assert_eq!(w.open_at(a, t0 + INTERVAL), None);
        // The table is bounded: quiet addresses make room for new ones.
        for i in 0..MAX_ADDRESSES {
            let ip = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            let _ = w.open_at(ip, t0 + INTERVAL);
        }
        let late = t0 + INTERVAL * 3;
        assert_eq!(w.open_at([192, 0, 2, 1].into(), late), Some(0));
    }
}
