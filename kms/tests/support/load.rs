//! Keep-alive load through a balancer, for the drain, restart and upgrade
//! tests: clients that behave as HTTP clients do (a response with
//! `Connection: close` makes them reconnect) and never retry a request that
//! got an error, which is counted.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::client::Client;

/// Load through HAProxy: `threads` keep-alive clients decrypting in a loop
/// until `stop`; a response with `Connection: close` makes its client
/// reconnect, as HTTP clients do; an error is counted and never retried.
pub struct Load {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub closes: AtomicU64,
    pub stop: AtomicBool,
    pub errors: std::sync::Mutex<Vec<String>>,
}

pub fn load(
    d: Client,
    body: serde_json::Value,
    threads: usize,
) -> (Arc<Load>, Vec<std::thread::JoinHandle<()>>) {
    paced(d, body, threads, Duration::ZERO)
}

/// As [`load`], each client pausing `pause` after every answer: a load that
/// leaves the machine idle time, for tests whose nodes share its CPUs with
/// the clients and must still answer a balancer's checks on time.
pub fn paced(
    d: Client,
    body: serde_json::Value,
    threads: usize,
    pause: Duration,
) -> (Arc<Load>, Vec<std::thread::JoinHandle<()>>) {
    let l = Arc::new(Load {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        closes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        errors: std::sync::Mutex::new(Vec::new()),
    });
    let handles = (0..threads)
        .map(|_| {
            let (l, d, body) = (Arc::clone(&l), d.clone(), body.clone());
            std::thread::spawn(move || {
                let fail = |e: String| {
                    l.failed.fetch_add(1, Ordering::SeqCst);
                    l.errors.lock().unwrap().push(e);
                };
                let deadline = Instant::now() + Duration::from_secs(600);
                let mut conn = None;
                while !l.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    if conn.is_none() {
                        match d.keep_alive() {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                fail(format!("connect: {e}"));
                                return;
                            }
                        }
                    }
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                    let Some(c) = conn.as_mut() else { return };
                    match c.post("/v1/workspace-keys/decrypt", &body) {
                        Ok(r) if r.status == 200 => {
                            l.ok.fetch_add(1, Ordering::SeqCst);
                            if r.header("connection")
                                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                            {
                                l.closes.fetch_add(1, Ordering::SeqCst);
                                conn = None;
                            }
                        }
                        Ok(r) => {
                            fail(format!(
                                "status {}: {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            ));
                            conn = None;
                        }
                        Err(e) => {
                            fail(e);
                            conn = None;
                        }
                    }
                }
            })
        })
        .collect();
    (l, handles)
}

/// What a load run counted.
#[derive(Debug)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    pub closes: u64,
    pub errors: Vec<String>,
}

impl Load {
    /// Stop the clients, wait for them, and count.
    pub fn finish(&self, threads: Vec<std::thread::JoinHandle<()>>) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        Tally {
            ok: self.ok.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            closes: self.closes.load(Ordering::SeqCst),
            errors: self.errors.lock().unwrap().clone(),
        }
    }
}
