//! Shared support for the integration tests (`mod support;`).
#![allow(dead_code)]

pub mod client;
pub mod guide_pki;
pub mod haproxy;
pub mod load;
pub mod node;
pub mod scratch;

use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// The guide's PKI with default options, in `dir/pki`.
pub fn pki(dir: &std::path::Path) -> guide_pki::GuidePki {
    let p = dir.join("pki");
    std::fs::create_dir_all(&p).unwrap();
    guide_pki::GuidePki::generate(&p, guide_pki::PkiOptions::default())
}

/// A child process killed (and reaped) when the test ends, however it ends:
/// no process outlives its test, even one that panics.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
