//! The load: N keep-alive connections, each sending the same POST back to
//! back for a warm-up and then a measured window of fixed length.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cpu;
use crate::http::{Connection, Target};
use crate::stats::Latencies;
use crate::tls::ClientFiles;
use crate::{BenchError, read_body, target};

/// Options of `cmx-kms-bench load`.
#[derive(clap::Args)]
pub struct LoadArgs {
    #[arg(long)]
    label: String,
    #[arg(long)]
    addr: SocketAddr,
    #[command(flatten)]
    client: ClientFiles,
    #[arg(long, default_value = "/v1/workspace-keys/decrypt")]
    path: String,
    /// File holding the request body.
    #[arg(long)]
    body: PathBuf,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    #[arg(long, default_value_t = 200)]
    expect_status: u16,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Paced load: requests per second in all (latency from scheduled send time); default closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Server process ids whose CPU time to sample (repeat for several).
    #[arg(long = "server-pid")]
    server_pids: Vec<i32>,
    /// Handshake mode: each of the --connections clients connects, makes a
    /// full handshake (no resumption), sends one request and closes, again and again.
    #[arg(long)]
    pub handshakes: bool,
    #[arg(long)]
    pub out: PathBuf,
}

impl LoadArgs {
    /// What to run, from the options (values clamped to sane ranges).
    pub fn spec(self) -> Result<LoadSpec, BenchError> {
        Ok(LoadSpec {
            label: self.label,
            target: target(self.addr, &self.client)?,
            path: self.path,
            body: Bytes::from(read_body(&self.body)?),
            connections: self.connections.max(1),
            warmup: Duration::from_secs_f64(self.warmup_s.clamp(0.0, 60.0)),
            duration: Duration::from_secs_f64(self.duration_s.clamp(0.1, 600.0)),
            expect_status: self.expect_status,
            server_pids: self.server_pids,
            rate: self.rate.filter(|r| r.is_finite() && *r > 0.0),
        })
    }
}

/// The one-line summary `load` prints for a run.
pub fn line(r: &LoadResult) -> String {
    format!(
        "{:<16} {:>9.0} req/s  p50 {:>6} µs  p90 {:>6} µs  p99 {:>6} µs  max {:>7} µs  errors {}  server CPU {:.1} µs/req{}",
        r.label,
        r.requests_per_s,
        r.p50_us,
        r.p90_us,
        r.p99_us,
        r.max_us,
        r.errors + r.wrong_status,
        r.server_cpu_us_per_request,
        r.first_error
            .as_deref()
            .map(|e| format!("  first error: {e}"))
            .unwrap_or_default()
    )
}

/// What to send, how hard and for how long.
#[derive(Clone)]
pub struct LoadSpec {
    pub label: String,
    pub target: Target,
    pub path: String,
    pub body: Bytes,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub expect_status: u16,
    /// Server processes whose CPU time is sampled over the measured window.
    pub server_pids: Vec<i32>,
    /// Paced load: this many requests per second in all, spread evenly
    /// over the connections; a request that waited for the server's previous
    /// answer counts its latency from its scheduled time (so a stall is not
    /// hidden), one sent on time from its actual send. `None`: each connection sends its
    /// next request as soon as the previous answer is in (closed loop).
    pub rate: Option<f64>,
}

/// The outcome of one load run, as written to the results file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadResult {
    pub kind: String,
    pub label: String,
    pub connections: usize,
    /// Offered requests per second of a paced run; absent for a closed loop.
    #[serde(default)]
    pub offered_per_s: Option<f64>,
    pub duration_s: f64,
    /// Requests answered with the expected status inside the window.
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Answers with another status inside the window.
    pub wrong_status: u64,
    /// Failed connects and requests (each ends its connection; it reconnects).
    pub errors: u64,
    pub response_bytes: usize,
    /// Server CPU time (user + system) per request, over the window.
    pub server_cpu_us_per_request: f64,
    /// Load generator CPU time (user + system) per request, over the window.
    pub client_cpu_us_per_request: f64,
    /// Share of the machine's CPU time that was idle over the window, in
    /// percent (absent in results of earlier versions).
    #[serde(default)]
    pub machine_idle_pct: Option<f64>,
    /// Share of the machine's CPU time the hypervisor gave to other guests
    /// over the window, in percent: how quiet the host was.
    #[serde(default)]
    pub machine_steal_pct: Option<f64>,
    pub first_error: Option<String>,
}

#[derive(Default)]
struct ConnOutcome {
    latencies: Vec<u32>,
    wrong_status: u64,
    errors: u64,
    response_bytes: usize,
    first_error: Option<String>,
}

/// Open every connection first, then run the warm-up and the window.
pub async fn run(spec: LoadSpec) -> LoadResult {
    // Connections are opened up front so handshakes are not measured.
    let mut opened = Vec::with_capacity(spec.connections);
    let mut outcome = ConnOutcome::default();
    for _ in 0..spec.connections {
        match Connection::open(&spec.target).await {
            Ok(c) => opened.push(Some(c)),
            Err(e) => {
                outcome.errors += 1;
                outcome.first_error.get_or_insert(e.to_string());
                opened.push(None);
            }
        }
    }
    let begin = Instant::now() + spec.warmup;
    let end = begin + spec.duration;
    let mut tasks = Vec::with_capacity(opened.len());
    let n = opened.len();
    for (i, conn) in opened.into_iter().enumerate() {
        let pace = spec.rate.filter(|r| *r > 0.0).map(|r| {
            // Each connection sends every n/r seconds, the connections offset evenly.
            let interval = Duration::from_secs_f64(n as f64 / r);
            Pace {
                interval,
                first: Instant::now() + interval.mul_f64(i as f64 / n as f64),
            }
        });
        tasks.push(tokio::spawn(drive(spec.clone(), conn, pace, begin, end)));
    }
    tokio::time::sleep_until(begin.into()).await;
    let server_before = cpu::processes_us(&spec.server_pids);
    let client_before = cpu::own_us();
    let machine_before = cpu::MachineTicks::now();
    tokio::time::sleep_until(end.into()).await;
    let server_used = cpu::processes_us(&spec.server_pids).saturating_sub(server_before);
    let client_used = cpu::own_us().saturating_sub(client_before);
    let machine = machine_before
        .zip(cpu::MachineTicks::now())
        .and_then(|(b, a)| b.shares_until(a));
    let mut all = Latencies::default();
    for t in tasks {
        let Ok(o) = t.await else {
            outcome.errors += 1;
            continue;
        };
        all.extend(&o.latencies);
        outcome.wrong_status += o.wrong_status;
        outcome.errors += o.errors;
        outcome.response_bytes = outcome.response_bytes.max(o.response_bytes);
        if outcome.first_error.is_none() {
            outcome.first_error = o.first_error;
        }
    }
    let requests = all.len() as u64;
    let per_request = |us: u64| {
        if requests == 0 {
            0.0
        } else {
            us as f64 / requests as f64
        }
    };
    let secs = spec.duration.as_secs_f64();
    let summary = all.summary();
    LoadResult {
        kind: "load".into(),
        label: spec.label,
        connections: spec.connections,
        offered_per_s: spec.rate,
        duration_s: secs,
        requests,
        requests_per_s: requests as f64 / secs,
        p50_us: summary.p50,
        p90_us: summary.p90,
        p99_us: summary.p99,
        max_us: summary.max,
        wrong_status: outcome.wrong_status,
        errors: outcome.errors,
        response_bytes: outcome.response_bytes,
        server_cpu_us_per_request: per_request(server_used),
        client_cpu_us_per_request: per_request(client_used),
        machine_idle_pct: machine.map(|m| m.0),
        machine_steal_pct: machine.map(|m| m.1),
        first_error: outcome.first_error,
    }
}

/// When a paced connection sends.
#[derive(Clone, Copy)]
struct Pace {
    interval: Duration,
    first: Instant,
}

fn note(out: &mut ConnOutcome, e: String) {
    out.errors += 1;
    out.first_error.get_or_insert(e);
}

/// One connection's loop; reconnects after an error, stops at `end`.
async fn drive(
    spec: LoadSpec,
    mut conn: Option<Connection>,
    pace: Option<Pace>,
    begin: Instant,
    end: Instant,
) -> ConnOutcome {
    let mut out = ConnOutcome {
        latencies: Vec::with_capacity(1 << 16),
        ..ConnOutcome::default()
    };
    let mut next = pace.map(|p| p.first);
    let mut last_answer = Instant::now();
    while Instant::now() < end {
        let Some(c) = conn.as_mut() else {
            // Bounded retry pace: at most 100 connects per second per task.
            tokio::time::sleep(Duration::from_millis(10)).await;
            match Connection::open(&spec.target).await {
                Ok(c) => conn = Some(c),
                Err(e) => note(&mut out, e.to_string()),
            }
            continue;
        };
        let t0 = match (next.as_mut(), pace) {
            (Some(at), Some(p)) => {
                let scheduled = *at;
                *at += p.interval;
                if scheduled >= end {
                    break;
                }
                if last_answer > scheduled {
                    // The server's previous answer came after this request's
                    // time: it waited on the server, count from the schedule.
                    scheduled
                } else {
                    // On time: the timer's own lateness (tokio rounds to 1 ms)
                    // is the load generator's, so count from the actual send.
                    tokio::time::sleep_until(scheduled.into()).await;
                    Instant::now()
                }
            }
            _ => Instant::now(),
        };
        let reply =
            tokio::time::timeout_at(end.into(), c.post(&spec.path, spec.body.clone())).await;
        let t1 = Instant::now();
        last_answer = t1;
        let in_window = t0 >= begin && t1 <= end;
        match reply {
            Err(_) => break, // the window closed mid-request
            Ok(Err(e)) => {
                if in_window {
                    note(&mut out, e.to_string());
                }
                conn = None;
            }
            Ok(Ok(r)) => {
                out.response_bytes = r.body.len();
                if !in_window {
                    continue;
                }
                if r.status == spec.expect_status {
                    let us = u32::try_from(t1.duration_since(t0).as_micros()).unwrap_or(u32::MAX);
                    out.latencies.push(us);
                } else {
                    out.wrong_status += 1;
                    out.first_error.get_or_insert_with(|| {
                        format!(
                            "status {} (expected {}): {}",
                            r.status,
                            spec.expect_status,
                            String::from_utf8_lossy(&r.body)
                        )
                    });
                }
            }
        }
    }
    out
}
