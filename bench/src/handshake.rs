//! Handshake mode: N concurrent clients, each in a loop of connect → full
//! TLS 1.3 handshake with a client certificate → one request → close, as
//! agents that ask for one key and leave. Resumption is off on the client,
//! so every cycle is a full handshake whatever the server offers.
//!
//! Also the idle-connection probe: open N keep-alive connections, one
//! request on each, and read the server's resident memory while they sit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;

use crate::cpu;
use crate::http::{Connection, Target};
use crate::load::{LoadResult, LoadSpec};
use crate::stats::Latencies;

/// The same target with TLS session resumption off (no tickets kept, no
/// session ids): each connection is a full handshake.
pub fn without_resumption(t: &Target) -> Target {
    let mut cfg = (*t.tls).clone();
    cfg.resumption = Resumption::disabled();
    Target {
        addr: t.addr,
        server_name: t.server_name.clone(),
        tls: Arc::new(cfg),
    }
}

#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    wrong_status: u64,
    errors: u64,
    response_bytes: usize,
    first_error: Option<String>,
}

/// Run `spec.connections` clients cycling connect → handshake → request →
/// close for the warm-up and the window. `requests` in the result counts
/// whole cycles ended inside the window; the CPU figures are per cycle.
pub async fn run(spec: LoadSpec) -> LoadResult {
    let spec = LoadSpec {
        target: without_resumption(&spec.target),
        ..spec
    };
    let begin = Instant::now() + spec.warmup;
    let end = begin + spec.duration;
    let tasks: Vec<_> = (0..spec.connections)
        .map(|_| tokio::spawn(cycle(spec.clone(), begin, end)))
        .collect();
    tokio::time::sleep_until(begin.into()).await;
    let server_before = cpu::processes_us(&spec.server_pids);
    let client_before = cpu::own_us();
    tokio::time::sleep_until(end.into()).await;
    let server_used = cpu::processes_us(&spec.server_pids).saturating_sub(server_before);
    let client_used = cpu::own_us().saturating_sub(client_before);
    let mut all = Latencies::default();
    let mut t = Tally::default();
    for task in tasks {
        let Ok(o) = task.await else {
            t.errors += 1;
            continue;
        };
        all.extend(&o.latencies);
        t.wrong_status += o.wrong_status;
        t.errors += o.errors;
        t.response_bytes = t.response_bytes.max(o.response_bytes);
        if t.first_error.is_none() {
            t.first_error = o.first_error;
        }
    }
    let n = all.len() as u64;
    let per = |us: u64| if n == 0 { 0.0 } else { us as f64 / n as f64 };
    let secs = spec.duration.as_secs_f64();
    let s = all.summary();
    LoadResult {
        kind: "handshake".into(),
        label: spec.label,
        connections: spec.connections,
        offered_per_s: None,
        duration_s: secs,
        requests: n,
        requests_per_s: n as f64 / secs,
        p50_us: s.p50,
        p90_us: s.p90,
        p99_us: s.p99,
        max_us: s.max,
        wrong_status: t.wrong_status,
        errors: t.errors,
        response_bytes: t.response_bytes,
        server_cpu_us_per_request: per(server_used),
        client_cpu_us_per_request: per(client_used),
        machine_idle_pct: None,
        machine_steal_pct: None,
        first_error: t.first_error,
    }
}

async fn cycle(spec: LoadSpec, begin: Instant, end: Instant) -> Tally {
    let mut out = Tally {
        latencies: Vec::with_capacity(1 << 12),
        ..Tally::default()
    };
    while Instant::now() < end {
        let t0 = Instant::now();
        let one = async {
            let mut c = Connection::open(&spec.target).await?;
            c.post(&spec.path, spec.body.clone()).await
        };
        let reply = tokio::time::timeout_at(end.into(), one).await;
        let t1 = Instant::now();
        let in_window = t0 >= begin && t1 <= end;
        match reply {
            Err(_) => break,
            Ok(Err(e)) => {
                if in_window {
                    out.errors += 1;
                    out.first_error.get_or_insert(e.to_string());
                } else {
                    // Back off a little on a refused connect outside the window.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Ok(Ok(r)) => {
                out.response_bytes = r.body.len();
                if !in_window {
                    continue;
                }
                if r.status == spec.expect_status {
                    out.latencies
                        .push(u32::try_from(t1.duration_since(t0).as_micros()).unwrap_or(u32::MAX));
                } else {
                    out.wrong_status += 1;
                    out.first_error
                        .get_or_insert_with(|| format!("status {}", r.status));
                }
            }
        }
    }
    out
}

/// What the idle probe found.
pub struct Idle {
    pub opened: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub kib: u64,
}

/// Open `n` keep-alive connections, `parallel` at a time, one request on
/// each (so the server holds every connection as it would an agent's
/// between requests); then wait `settle`, read the summed resident memory
/// of `server_pids`, and close them all.
pub async fn idle(
    target: &Target,
    path: &str,
    body: bytes::Bytes,
    n: usize,
    parallel: usize,
    settle: Duration,
    server_pids: &[i32],
) -> Idle {
    let target = without_resumption(target);
    let mut held = Vec::with_capacity(n);
    let (mut failed, mut first_error) = (0usize, None);
    let mut set = tokio::task::JoinSet::new();
    let mut started = 0usize;
    while started < n || !set.is_empty() {
        while started < n && set.len() < parallel.max(1) {
            let (t, p, b) = (target.clone(), path.to_owned(), body.clone());
            set.spawn(async move {
                let mut c = Connection::open(&t).await?;
                let r = c.post(&p, b).await?;
                Ok::<_, crate::BenchError>((c, r.status))
            });
            started += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok((c, 200)))) => held.push(c),
            Some(Ok(Ok((_, status)))) => {
                failed += 1;
                first_error.get_or_insert(format!("status {status}"));
            }
            Some(Ok(Err(e))) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Some(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            None => break,
        }
    }
    tokio::time::sleep(settle).await;
    let kib = server_pids.iter().filter_map(|p| cpu::rss_kib(*p)).sum();
    let opened = held.len();
    drop(held);
    Idle {
        opened,
        failed,
        first_error,
        kib,
    }
}
