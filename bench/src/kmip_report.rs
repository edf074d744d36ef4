//! Results of `kmip` and their part of the report: percentiles of each series, the ratio
//! of medians against the 1.1x target, PyKMIP's Decrypt count per series and
//! the CPU each process spent per request.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kmip_added;
use crate::kmip_worker::Sched;
use crate::results::{ms, verdict};
use crate::stats::Latencies;

/// Series labels, as written to the results file.
pub const DIRECT: &str = "direct KMIP";
pub const COLD: &str = "cmx-kms cold cache";
pub const WARM: &str = "cmx-kms warm cache";
pub const PROXY: &str = "direct KMIP through an nginx TLS proxy";

/// How far a series' HSM Decrypts may stray from one per cold request (none
/// per warm one). `scripts/bench-kmip` runs its nodes' readiness canary (one
/// Encrypt and one Decrypt) every hour, so only the one each node runs as it
/// starts can fall into the measured stretches; still running when measuring
/// begins, it can straddle an edge and count half: at most one per node, and
/// the run has two nodes. Any other HSM call the requests cause shows.
const STRAY_CANARIES: i64 = 2;

/// Issue 5 item 6: cold-cache decrypt through cmx-kms at most 1.1x the direct Decrypt.
const MAX_RATIO: f64 = 1.1;
/// Issue 15 item 5: what cmx-kms adds to a Decrypt at the median, at most.
const MAX_ADDED_US: f64 = 50.0;

/// One measured stretch of a series.
pub struct Phase {
    pub samples: Vec<u32>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub wall: Duration,
    /// The load generator's threads.
    pub client: Sched,
    /// The cmx-kms nodes' threads.
    pub kms: Sched,
    /// The TLS proxy's processes.
    pub proxy: Sched,
    /// PyKMIP's threads.
    pub hsm: Sched,
    pub hsm_decrypts: u64,
    pub hsm_encrypts: u64,
}

/// One series (all its rounds), as written to the results file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KmipResult {
    pub kind: String,
    pub label: String,
    /// Concurrent workers (1: sequential on one connection).
    pub concurrency: usize,
    pub rounds: usize,
    /// Requests answered correctly.
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub requests_per_s: f64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// The median of each round, in order.
    pub round_p50_us: Vec<u64>,
    /// `Processing operation: Decrypt` lines PyKMIP logged during the series.
    pub hsm_decrypts: u64,
    /// The same for Encrypt: each readiness canary of a node is one Encrypt
    /// and one Decrypt, so decrypts − encrypts is what the requests cost.
    pub hsm_encrypts: u64,
    pub client_cpu_us_per_request: f64,
    pub kms_cpu_us_per_request: f64,
    pub hsm_cpu_us_per_request: f64,
    /// Time PyKMIP's threads were runnable but waited for a CPU (other load
    /// on the machine, or our own processes), per request.
    #[serde(default)]
    pub hsm_wait_us_per_request: f64,
    /// The TLS proxy's CPU (nginx's processes), per request of this series.
    #[serde(default)]
    pub proxy_cpu_us_per_request: f64,
    /// Times the front of the series (cmx-kms's threads, or the proxy's
    /// processes) was put on a CPU, per request: its wake-ups.
    #[serde(default)]
    pub front_slices_per_request: f64,
}

impl KmipResult {
    /// Pools the samples of every phase; CPU and counts are summed.
    pub fn from_phases(label: &str, concurrency: usize, phases: &[Phase]) -> Self {
        let mut all = Latencies::default();
        let mut round_p50_us = Vec::with_capacity(phases.len());
        let (mut errors, mut wall, mut sum) = (0, Duration::ZERO, 0u64);
        let (mut client, mut kms, mut hsm, mut wait, mut dec, mut enc) = (0, 0, 0, 0, 0, 0);
        let (mut proxy, mut slices) = (0, 0);
        let mut first_error = None;
        for p in phases {
            all.extend(&p.samples);
            let mut one = Latencies::default();
            one.extend(&p.samples);
            round_p50_us.push(one.summary().p50);
            sum += p.samples.iter().map(|s| u64::from(*s)).sum::<u64>();
            errors += p.errors;
            wall += p.wall;
            client += p.client.run_ns;
            kms += p.kms.run_ns;
            proxy += p.proxy.run_ns;
            slices += if label == PROXY {
                p.proxy.slices
            } else {
                p.kms.slices
            };
            hsm += p.hsm.run_ns;
            wait += p.hsm.wait_ns;
            dec += p.hsm_decrypts;
            enc += p.hsm_encrypts;
            if first_error.is_none() {
                first_error.clone_from(&p.first_error);
            }
        }
        let n = all.len() as u64;
        let per = |us: u64| if n == 0 { 0.0 } else { us as f64 / n as f64 };
        let per_ns = |ns: u64| per(ns) / 1000.0;
        let s = all.summary();
        Self {
            kind: "kmip".into(),
            label: label.to_owned(),
            concurrency,
            rounds: phases.len(),
            requests: n,
            errors,
            first_error,
            requests_per_s: if wall.is_zero() {
                0.0
            } else {
                n as f64 / wall.as_secs_f64()
            },
            mean_us: per(sum),
            p50_us: s.p50,
            p90_us: s.p90,
            p99_us: s.p99,
            max_us: s.max,
            round_p50_us,
            hsm_decrypts: dec,
            hsm_encrypts: enc,
            client_cpu_us_per_request: per_ns(client),
            kms_cpu_us_per_request: per_ns(kms),
            hsm_cpu_us_per_request: per_ns(hsm),
            hsm_wait_us_per_request: per_ns(wait),
            proxy_cpu_us_per_request: per_ns(proxy),
            front_slices_per_request: per(slices),
        }
    }

    /// HSM Decrypts the requests caused (canaries taken out).
    fn request_decrypts(&self) -> i64 {
        self.hsm_decrypts as i64 - self.hsm_encrypts as i64
    }
}

/// The KMIP part of the report.
pub fn render(results: &[KmipResult]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "| series | workers | requests | p50 µs | p90 µs | p99 µs | max µs | mean µs | requests/s | p50 of each round µs | errors | HSM Decrypts − canary Encrypts | client CPU µs/req | cmx-kms CPU µs/req | PyKMIP CPU µs/req | PyKMIP waiting for a CPU µs/req | nginx proxy CPU µs/req | times the front was put on a CPU per request |"
    );
    let _ = writeln!(
        o,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in results {
        let rounds: Vec<String> = r.round_p50_us.iter().map(u64::to_string).collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {} − {} = {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            r.label,
            r.concurrency,
            r.requests,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.max_us,
            r.mean_us,
            r.requests_per_s,
            listed(&rounds, " "),
            r.errors,
            r.hsm_decrypts,
            r.hsm_encrypts,
            r.request_decrypts(),
            r.client_cpu_us_per_request,
            r.kms_cpu_us_per_request,
            r.hsm_cpu_us_per_request,
            r.hsm_wait_us_per_request,
            if r.label == PROXY {
                format!("{:.1}", r.proxy_cpu_us_per_request)
            } else {
                "-".to_owned()
            },
            if r.label == DIRECT {
                "-".to_owned()
            } else {
                format!("{:.1}", r.front_slices_per_request)
            }
        );
    }
    let _ = writeln!(o);
    let find = |label: &str, c: usize| {
        results
            .iter()
            .find(|r| r.label == label && (c == 1) == (r.concurrency == 1))
    };
    for c in [1, 2] {
        let (Some(d), Some(k)) = (find(DIRECT, c), find(COLD, c)) else {
            continue;
        };
        let how = if c == 1 {
            "sequential, one connection each".to_owned()
        } else {
            format!("{} concurrent workers", k.concurrency)
        };
        let ratio = k.p50_us as f64 / (d.p50_us.max(1)) as f64;
        let ok = ratio <= MAX_RATIO;
        let _ = writeln!(
            o,
            "- cold-cache decrypt through cmx-kms / direct KMIP Decrypt, median latency ({how}): **{ratio:.2}** ({} vs {}; target ≤ {MAX_RATIO}: {})",
            ms(k.p50_us as f64),
            ms(d.p50_us as f64),
            verdict(ok)
        );
        if c == 1 {
            let per_round: Vec<String> = k
                .round_p50_us
                .iter()
                .zip(&d.round_p50_us)
                .map(|(a, b)| format!("{:.2}", *a as f64 / (*b).max(1) as f64))
                .collect();
            let _ = writeln!(
                o,
                "- the same ratio round by round: {}",
                listed(&per_round, ", ")
            );
            let _ = writeln!(
                o,
                "- p90 ratio {:.2}, p99 ratio {:.2}; cmx-kms adds {} at the median",
                k.p90_us as f64 / d.p90_us.max(1) as f64,
                k.p99_us as f64 / d.p99_us.max(1) as f64,
                ms(k.p50_us as f64 - d.p50_us as f64)
            );
            added(&mut o, d, k, find(PROXY, 1));
            if let Some(w) = find(WARM, 1) {
                let _ = writeln!(
                    o,
                    "- the front alone (warm-cache node, no HSM call): median {}, p99 {}",
                    ms(w.p50_us as f64),
                    ms(w.p99_us as f64)
                );
            }
        } else {
            let _ = writeln!(
                o,
                "- throughput with {} workers: direct {:.0} Decrypts/s, through cmx-kms {:.0} requests/s{}",
                k.concurrency,
                d.requests_per_s,
                k.requests_per_s,
                find(PROXY, c).map_or(String::new(), |p| format!(
                    ", through the nginx TLS proxy {:.0} Decrypts/s",
                    p.requests_per_s
                ))
            );
        }
    }
    for r in results {
        let expect = if r.label == WARM {
            0
        } else {
            r.requests as i64
        };
        let got = r.request_decrypts();
        let ok = (got - expect).abs() <= STRAY_CANARIES;
        let _ = writeln!(
            o,
            "- PyKMIP Decrypts during `{}` ({} worker(s)): {} logged, {} of them readiness canaries (one Encrypt + one Decrypt each): {got} for {} requests, expected {expect}: {}",
            r.label,
            r.concurrency,
            r.hsm_decrypts,
            r.hsm_encrypts,
            r.requests,
            if ok { "as expected" } else { "NOT as expected" }
        );
    }
    if let Some(e) = results.iter().find_map(|r| r.first_error.as_deref()) {
        let _ = writeln!(o, "- first error: {e}");
    }
    o
}

/// Most rounds listed one by one in the report; more are only in the
/// results file (a run of many short rounds has hundreds).
const MAX_LISTED_ROUNDS: usize = 40;

/// The per-round figures joined by `sep`, or where to find them when there
/// are too many to read.
fn listed(items: &[String], sep: &str) -> String {
    if items.len() <= MAX_LISTED_ROUNDS {
        items.join(sep)
    } else {
        format!("{} rounds, each in the results file", items.len())
    }
}

/// What cmx-kms adds to a direct Decrypt at the median, against the target,
/// and beside it what a TLS-terminating proxy adds (`p`), round by round too.
fn added(o: &mut String, d: &KmipResult, k: &KmipResult, p: Option<&KmipResult>) {
    let plus = |s: &KmipResult| s.p50_us as f64 - d.p50_us as f64;
    let per_round = |s: &KmipResult| kmip_added::per_round(&s.round_p50_us, &d.round_p50_us);
    let rounds = |s: &KmipResult| {
        let v: Vec<String> = per_round(s)
            .iter()
            .map(|us| format!("{:+.2}", us / 1000.0))
            .collect();
        listed(&v, " ")
    };
    let _ = write!(
        o,
        "- added to a direct Decrypt at the median: cmx-kms {} (target ≤ {}: {})",
        ms(plus(k)),
        ms(MAX_ADDED_US),
        verdict(plus(k) <= MAX_ADDED_US)
    );
    match p {
        Some(p) => {
            let _ = writeln!(
                o,
                "; an nginx TLS proxy (stream module, TLS ended and opened again, the same certificates) {}, using {:.1} µs of its CPU per request against cmx-kms's {:.1}, put on a CPU {:.1} times per request against cmx-kms's {:.1}",
                ms(plus(p)),
                p.proxy_cpu_us_per_request,
                k.kms_cpu_us_per_request,
                p.front_slices_per_request,
                k.front_slices_per_request
            );
            let _ = writeln!(
                o,
                "- added per round, ms: cmx-kms {}; the nginx TLS proxy {}",
                rounds(k),
                rounds(p)
            );
        }
        None => {
            let _ = writeln!(o);
            let _ = writeln!(o, "- added per round, ms: cmx-kms {}", rounds(k));
        }
    }
    let through = p.map(per_round);
    kmip_added::resolution(o, MAX_ADDED_US, &per_round(k), through.as_deref());
}

#[cfg(test)]
#[path = "kmip_report_tests.rs"]
mod tests;
