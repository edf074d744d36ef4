//! Every prefix of a valid header is refused as truncated, every malformed
//! variant is refused with its label, and nothing past the header is read.

use super::*;

fn run(bytes: &[u8]) -> (Result<Header, Malformed>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut r = bytes;
    let out = rt.block_on(read(&mut r));
    (out, bytes.len() - r.len())
}

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((a, port))
}

fn v2(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut h = V2_SIG.to_vec();
    h.push(cmd);
    h.push(fam);
    h.extend_from_slice(&u16::try_from(block.len()).unwrap_or(u16::MAX).to_be_bytes());
    h.extend_from_slice(block);
    h
}

fn v2_tcp4() -> Vec<u8> {
    v2(
        0x21,
        0x11,
        &[127, 0, 0, 9, 127, 0, 0, 1, 0x30, 0x39, 0x20, 0xfb],
    )
}

const V1: &[u8] = b"PROXY TCP4 127.0.0.9 127.0.0.1 12345 8443\r\n";
const PEER: &str = "127.0.0.10:4000";

#[test]
fn valid_headers_and_nothing_read_past_them() {
    let want = Header::Proxied {
        src: v4([127, 0, 0, 9], 12345),
        dst: v4([127, 0, 0, 1], 8443),
    };
    for h in [V1.to_vec(), v2_tcp4()] {
        let mut bytes = h.clone();
        bytes.extend_from_slice(b"\x16\x03\x01 the ClientHello");
        assert_eq!(run(&bytes), (Ok(want), h.len()));
    }
    let v6 = b"PROXY TCP6 2001:db8::9 ::1 1 65535\r\n";
    let (got, _) = run(v6);
    let peer: SocketAddr = PEER.parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.map(|h| h.client(peer)),
        Ok("[2001:db8::9]:1".parse().unwrap_or_else(|e| panic!("{e}")))
    );
    let mut block = vec![0u8; 36];
    block[15] = 9;
    block[31] = 1;
    block[32..].copy_from_slice(&[0, 80, 1, 187]);
    let (got, n) = run(&v2(0x21, 0x21, &block));
    assert_eq!(n, 52);
    assert!(
        matches!(got, Ok(Header::Proxied { src, .. }) if src.port() == 80 && src.ip() == "::9".parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}")))
    );
    // TLVs after the addresses are skipped when they tile the block.
    let mut with_tlv = v2_tcp4()[16..].to_vec();
    with_tlv.extend_from_slice(&[0x04, 0, 2, 0xaa, 0xbb, 0x05, 0, 0]);
    assert_eq!(run(&v2(0x21, 0x11, &with_tlv)).0, Ok(want));
}

#[test]
fn local_and_unknown_mean_the_tcp_peer() {
    let peer: SocketAddr = PEER.parse().unwrap_or_else(|e| panic!("{e}"));
    for h in [
        v2(0x20, 0x00, &[]),
        v2(0x20, 0x11, &[1, 2, 3]),
        v2(0x21, 0x00, &[]),
        v2(0x21, 0x31, &[0; 216]),
        b"PROXY UNKNOWN\r\n".to_vec(),
        b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
    ] {
        let (got, n) = run(&h);
        assert_eq!((got, n), (Ok(Header::Local), h.len()), "{h:?}");
        assert_eq!(Header::Local.client(peer), peer);
    }
}

#[test]
fn every_prefix_of_a_valid_header_is_truncated() {
    for h in [V1.to_vec(), v2_tcp4(), b"PROXY UNKNOWN\r\n".to_vec()] {
        for cut in 0..h.len() {
            let (got, _) = run(&h[..cut]);
            // A v1 prefix that already fails its grammar may say so sooner;
            // nothing is ever accepted.
            assert!(got.is_err(), "prefix {cut} of {h:?} accepted: {got:?}");
            if cut < 8 || h[0] != b'P' {
                assert_eq!(got, Err(Malformed::Truncated), "prefix {cut} of {h:?}");
            }
        }
    }
}

#[test]
fn malformed_v1_lines_are_refused() {
    let long = format!(
        "PROXY TCP6 {} {} 1 2\r\n",
        "ffff:".repeat(7) + "ffff",
        "ffff:".repeat(7) + "ffff0"
    );
    let cases: &[&[u8]] = &[
        b"PROXY TCP4 127.0.0.9 127.0.0.1 12345 8443\n",
        b"PROXY TCP4 127.0.0.9 127.0.0.1 12345 8443\r\r\n",
        b"PROXY TCP4 127.0.0.9  127.0.0.1 12345 8443\r\n",
        b"PROXY TCP4 127.0.0.9 127.0.0.1 12345\r\n",
        b"PROXY TCP4 127.0.0.9 127.0.0.1 12345 8443 9\r\n",
        b"PROXY TCP4 127.0.0.256 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 127.0.0.09 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 ::1 127.0.0.1 1 2\r\n",
        b"PROXY TCP6 127.0.0.1 ::1 1 2\r\n",
        b"PROXY TCP4 127.0.0.9 127.0.0.1 012 2\r\n",
        b"PROXY TCP4 127.0.0.9 127.0.0.1 65536 2\r\n",
        b"PROXY TCP4 127.0.0.9 127.0.0.1 +1 2\r\n",
        b"PROXY TCP4 127.0.0.9 127.0.0.1 -1 2\r\n",
        b"PROXY UDP4 127.0.0.9 127.0.0.1 1 2\r\n",
        b"PROXY tcp4 127.0.0.9 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 127.0.0.9 127.0.0.1 1 2\xff\r\n",
        b"PROXY \r\n",
        b"PROXY TCP4 127.0.0.9\x00127.0.0.1 1 2\r\n",
        b"PROXY UNKNOWNX\r\n",
    ];
    for c in cases {
        assert_eq!(
            run(c).0,
            Err(Malformed::V1Syntax),
            "{:?}",
            String::from_utf8_lossy(c)
        );
    }
    // Longer than 107 bytes: refused once the bound is reached, without
    // reading the rest.
    let mut too_long = b"PROXY UNKNOWN ".to_vec();
    too_long.extend(std::iter::repeat_n(b'a', 200));
    too_long.extend_from_slice(b"\r\n");
    assert_eq!(run(&too_long), (Err(Malformed::V1TooLong), V1_MAX));
    assert!(run(long.as_bytes()).0.is_err());
    assert_eq!(parse_v1(&too_long), Err(Malformed::V1TooLong));
}

#[test]
fn malformed_v2_headers_are_refused() {
    let good = v2_tcp4();
    let mut bad_sig = good.clone();
    bad_sig[10] ^= 1;
    let mut early_sig = good.clone();
    early_sig[3] ^= 1;
    let cases: Vec<(Vec<u8>, Malformed)> = vec![
        (bad_sig, Malformed::NoSignature),
        (early_sig, Malformed::NoSignature),
        (v2(0x11, 0x11, &good[16..]), Malformed::V2Command),
        (v2(0x22, 0x11, &good[16..]), Malformed::V2Command),
        (v2(0x2f, 0x11, &good[16..]), Malformed::V2Command),
        (v2(0x21, 0x11, &good[16..27]), Malformed::V2Addresses),
        (v2(0x21, 0x21, &[0; 35]), Malformed::V2Addresses),
        (v2(0x21, 0x41, &[0; 12]), Malformed::V2Addresses),
        (v2(0x21, 0x13, &[0; 12]), Malformed::V2Addresses),
        (
            v2(0x21, 0x11, &[&good[16..], &[1u8, 0][..]].concat()),
            Malformed::V2Addresses,
        ),
        (
            v2(0x21, 0x11, &[&good[16..], &[1u8, 0, 5, 1][..]].concat()),
            Malformed::V2Addresses,
        ),
        (v2(0x21, 0x11, &[0; V2_MAX_BODY + 1]), Malformed::V2TooLong),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), Malformed::NoSignature),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            Malformed::NoSignature,
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(run(&bytes).0, Err(want), "{bytes:?}");
    }
    // The length bound is checked before the block is read.
    let mut huge = V2_SIG.to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(run(&huge), (Err(Malformed::V2TooLong), 16));
}

#[test]
fn labels_are_stable() {
    assert_eq!(Malformed::NoSignature.label(), "proxy-missing");
    assert_eq!(Malformed::Truncated.label(), "proxy-truncated");
    assert_eq!(Malformed::V1Syntax.label(), "proxy-v1-malformed");
    assert_eq!(Malformed::V2TooLong.label(), "proxy-v2-malformed");
}
