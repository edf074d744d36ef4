// Test ports, included (`include!`) by node.rs, pykmip.rs and openbao.rs, each
// with a block of its own, so that the three never hand out the same port in
// one test process.
//
// Why not port 0: a port the kernel picks for `bind(…:0)` comes from the
// ephemeral range (32768–60999 here), the range it also uses for the source
// ports of outgoing connections. Between the moment a test learns such a port
// and the moment the server binds it, a busy test process's own outgoing
// connections (clients, HSM pools) can take it, and the server then exits
// with "address in use". Ports below the ephemeral range are never taken that
// way; a per-process counter keeps tests in one process apart, and each port
// is checked free before it is handed out.

/// The first free port of `block` (below the ephemeral range), walking from
/// a per-process offset; `width` consecutive ports must all be free.
fn port_in_block(block: std::ops::Range<u16>, width: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(block.end - block.start - width);
    let offset = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(u32::from(width), Ordering::Relaxed);
        let port = block.start + u16::try_from((offset + n) % span).unwrap();
        if (port..port + width).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return port;
        }
    }
    panic!("no free port in {block:?} on 127.0.0.1");
}
