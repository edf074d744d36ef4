//! The PROXY protocol (versions 1 and 2), read before the TLS handshake on a
//! connection from a trusted load balancer (`kms.server.proxy-protocol.trusted`).
//!
//! A load balancer that passes TLS through (HAProxy in TCP mode) hides the
//! client's address: the node sees the balancer's. With `send-proxy-v2` the
//! balancer first writes a header naming the client's address, and this
//! module reads it, strictly and within bounds:
//!
//! - only from a trusted address (anyone else could name any address); a
//!   connection from elsewhere is plain TLS; one that starts with a header
//!   anyway is refused with a warning naming its address ([`untrusted`]:
//!   most likely a balancer missing from the list);
//! - a trusted connection *must* start with a valid header: one without is
//!   closed, so a balancer misconfigured without `send-proxy-v2` is noticed
//!   at once rather than every client counted as the balancer;
//! - never reads past the header (the TLS bytes stay in the socket): version
//!   1 is read byte by byte up to its line end, at most [`V1_MAX`] bytes;
//!   version 2 reads its fixed 16 bytes, then exactly its announced length,
//!   at most [`V2_MAX_BODY`];
//! - `LOCAL` (v2) and `UNKNOWN` (v1), or an address family other than
//!   IPv4/IPv6, mean "no client address": the TCP peer is used.
//!
//! The caller bounds the time (the handshake timeout covers header and
//! handshake together).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest version 1 line, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// Largest version 2 address-and-TLV block accepted. IPv6 addresses take 36
/// bytes; the rest is room for the TLVs a balancer may add.
pub const V2_MAX_BODY: usize = 512;

/// The version 2 signature.
const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// What a valid header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// The balancer's own connection (health check) or an unknown family:
    /// use the TCP peer.
    Local,
    /// A client's connection, from `src` to `dst`.
    Proxied { src: SocketAddr, dst: SocketAddr },
}

impl Header {
    /// The client's address: the proxied source, or `peer` for [`Header::Local`].
    pub fn client(self, peer: SocketAddr) -> SocketAddr {
        match self {
            Header::Local => peer,
            Header::Proxied { src, .. } => src,
        }
    }
}

/// Why a header was refused. Labels are stable (logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the connection ended before a complete PROXY header")]
    Truncated,
    #[error("no PROXY protocol signature (a trusted balancer must send one)")]
    NoSignature,
    #[error("PROXY v1 line longer than 107 bytes or without CRLF")]
    V1TooLong,
    #[error("PROXY v1 line malformed")]
    V1Syntax,
    #[error("PROXY v2 version or command not supported")]
    V2Command,
    #[error("PROXY v2 header longer than the accepted bound")]
    V2TooLong,
    #[error("PROXY v2 address block malformed")]
    V2Addresses,
    #[error("cannot read the PROXY header")]
    Io,
}

impl Malformed {
    /// A stable label (`cmx_kms_connections_closed_total{reason="proxy-..."}`).
    pub fn label(self) -> &'static str {
        match self {
            Malformed::Truncated => "proxy-truncated",
            Malformed::NoSignature => "proxy-missing",
            Malformed::V1TooLong | Malformed::V1Syntax => "proxy-v1-malformed",
            Malformed::V2Command | Malformed::V2TooLong | Malformed::V2Addresses => {
                "proxy-v2-malformed"
            }
            Malformed::Io => "proxy-io",
        }
    }
}

fn eof(e: &std::io::Error) -> Malformed {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Malformed::Truncated
    } else {
        Malformed::Io
    }
}

/// Read one header from `r`, consuming exactly its bytes.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Header, Malformed> {
    let mut head = [0u8; 16];
    // Both versions are at least 8 bytes long: "PROXY " plus a protocol, or
    // the first 8 bytes of the v2 signature.
    r.read_exact(&mut head[..8]).await.map_err(|e| eof(&e))?;
    if head[..6] == *b"PROXY " {
        let mut line = Vec::with_capacity(V1_MAX);
        line.extend_from_slice(&head[..8]);
        while line.last() != Some(&b'\n') {
            if line.len() >= V1_MAX {
                return Err(Malformed::V1TooLong);
            }
            let b = r.read_u8().await.map_err(|e| eof(&e))?;
            line.push(b);
        }
        return parse_v1(&line);
    }
    if head[..8] != V2_SIG[..8] {
        return Err(Malformed::NoSignature);
    }
    r.read_exact(&mut head[8..]).await.map_err(|e| eof(&e))?;
    let len = v2_length(&head)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| eof(&e))?;
    parse_v2(&head, &body)
}

/// A version 1 line, `PROXY ... \r\n` included.
pub fn parse_v1(line: &[u8]) -> Result<Header, Malformed> {
    if line.len() > V1_MAX {
        return Err(Malformed::V1TooLong);
    }
    let text = line
        .strip_suffix(b"\r\n")
        .and_then(|l| std::str::from_utf8(l).ok())
        .filter(|l| l.is_ascii())
        .ok_or(Malformed::V1Syntax)?;
    let rest = text.strip_prefix("PROXY ").ok_or(Malformed::V1Syntax)?;
    // `UNKNOWN` may be followed by anything; the receiver ignores it.
    if rest == "UNKNOWN" || rest.starts_with("UNKNOWN ") {
        return Ok(Header::Local);
    }
    let parts: Vec<&str> = rest.split(' ').collect();
    let [proto, src, dst, sport, dport] = parts.as_slice() else {
        return Err(Malformed::V1Syntax);
    };
    let (src, dst): (IpAddr, IpAddr) = match *proto {
        "TCP4" => (
            IpAddr::V4(src.parse::<Ipv4Addr>().map_err(|_| Malformed::V1Syntax)?),
            IpAddr::V4(dst.parse::<Ipv4Addr>().map_err(|_| Malformed::V1Syntax)?),
        ),
        // std's parser takes no zone id and no brackets.
        "TCP6" => (
            IpAddr::V6(src.parse::<Ipv6Addr>().map_err(|_| Malformed::V1Syntax)?),
            IpAddr::V6(dst.parse::<Ipv6Addr>().map_err(|_| Malformed::V1Syntax)?),
        ),
        _ => return Err(Malformed::V1Syntax),
    };
    Ok(Header::Proxied {
        src: SocketAddr::new(src, v1_port(sport)?),
        dst: SocketAddr::new(dst, v1_port(dport)?),
    })
}

/// A decimal port, 0-65535, without sign or leading zero.
fn v1_port(s: &str) -> Result<u16, Malformed> {
    let ok = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !ok {
        return Err(Malformed::V1Syntax);
    }
    s.parse().map_err(|_| Malformed::V1Syntax)
}

/// The announced length of a v2 header's block, checked against the bound.
pub fn v2_length(head: &[u8; 16]) -> Result<usize, Malformed> {
    if head[..12] != V2_SIG {
        return Err(Malformed::NoSignature);
    }
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > V2_MAX_BODY {
        return Err(Malformed::V2TooLong);
    }
    Ok(len)
}

/// A version 2 header: its 16 fixed bytes and its block.
pub fn parse_v2(head: &[u8; 16], body: &[u8]) -> Result<Header, Malformed> {
    if v2_length(head)? != body.len() {
        return Err(Malformed::V2Addresses);
    }
    let (version, command) = (head[12] >> 4, head[12] & 0x0f);
    if version != 2 {
        return Err(Malformed::V2Command);
    }
    let (family, transport) = (head[13] >> 4, head[13] & 0x0f);
    let addr_len = match command {
        // LOCAL: the balancer speaking for itself; the block is ignored.
        0 => return Ok(Header::Local),
        1 => match (family, transport) {
            (1, 1) => 12,
            (2, 1) => 36,
            // Unspecified, UNIX or datagram: no usable client address.
            (0..=3, 0..=2) => return Ok(Header::Local),
            _ => return Err(Malformed::V2Addresses),
        },
        _ => return Err(Malformed::V2Command),
    };
    if body.len() < addr_len {
        return Err(Malformed::V2Addresses);
    }
    check_tlvs(&body[addr_len..])?;
    let a = &body[..addr_len];
    let (src, dst, ports) = if addr_len == 12 {
        let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
        (ip(0), ip(4), &a[8..12])
    } else {
        let ip = |o: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&a[o..o + 16]);
            IpAddr::V6(Ipv6Addr::from(b))
        };
        (ip(0), ip(16), &a[32..36])
    };
    Ok(Header::Proxied {
        src: SocketAddr::new(src, u16::from_be_bytes([ports[0], ports[1]])),
        dst: SocketAddr::new(dst, u16::from_be_bytes([ports[2], ports[3]])),
    })
}

/// The TLVs after the addresses must tile the rest of the block exactly.
/// Their contents are not used.
fn check_tlvs(mut rest: &[u8]) -> Result<(), Malformed> {
    while !rest.is_empty() {
        if rest.len() < 3 {
            return Err(Malformed::V2Addresses);
        }
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        rest = rest.get(3 + len..).ok_or(Malformed::V2Addresses)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
pub mod untrusted;
