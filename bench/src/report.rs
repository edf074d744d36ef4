//! The hot-path part of the report (results of `load`, `startup`, `rss`
//! and handshake rounds): medians, the ratio to the baseline and each
//! figure against its target. Prints nothing when the results hold none of
//! those kinds.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::load::LoadResult;
use crate::results::{Results, verdict};
use crate::stats::median;

/// Resident memory of a server at one moment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RssResult {
    pub kind: String,
    pub label: String,
    pub when: String,
    pub kib: u64,
    /// Idle keep-alive connections open at the time (the idle probe).
    #[serde(default)]
    pub idle_connections: Option<usize>,
    /// Connections the idle probe tried to open.
    #[serde(default)]
    pub asked_connections: Option<usize>,
}

/// The targets of issue 3 item 8, raised by issue 15 (ratio 0.85, CPU per
/// request within 1.25x nginx's, handshakes 0.9x, 1 000 idle connections in
/// 64 MiB).
const MIN_RATIO: f64 = 0.85;
const MAX_CPU_RATIO: f64 = 1.25;
const MIN_HANDSHAKE_RATIO: f64 = 0.9;
const MAX_P99_US: f64 = 2000.0;
const MAX_START_MS: f64 = 100.0;
const MAX_RSS_KIB: f64 = 20.0 * 1024.0;
const MAX_IDLE_1000_KIB: f64 = 64.0 * 1024.0;

/// Medians of one label's rounds.
struct Medians {
    label: String,
    rounds: usize,
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    errors: u64,
    server_cpu: f64,
    offered: Option<f64>,
}

fn medians(loads: &[LoadResult]) -> Vec<Medians> {
    let mut labels: Vec<&str> = Vec::new();
    for l in loads {
        if !labels.contains(&l.label.as_str()) {
            labels.push(&l.label);
        }
    }
    labels
        .into_iter()
        .map(|label| {
            let rs: Vec<&LoadResult> = loads.iter().filter(|l| l.label == label).collect();
            let m = |f: &dyn Fn(&LoadResult) -> f64| {
                median(&mut rs.iter().map(|r| f(r)).collect::<Vec<f64>>())
            };
            Medians {
                label: label.to_owned(),
                rounds: rs.len(),
                rps: m(&|r| r.requests_per_s),
                p50: m(&|r| r.p50_us as f64),
                p90: m(&|r| r.p90_us as f64),
                p99: m(&|r| r.p99_us as f64),
                max: m(&|r| r.max_us as f64),
                errors: rs.iter().map(|r| r.errors + r.wrong_status).sum(),
                server_cpu: m(&|r| r.server_cpu_us_per_request),
                offered: rs.first().and_then(|r| r.offered_per_s),
            }
        })
        .collect()
}

/// The report as Markdown (it reads as plain text too).
pub fn render(r: &Results, baseline: &str, subject: &str) -> String {
    let mut o = String::new();
    if r.loads.is_empty() && r.startups.is_empty() && r.rss.is_empty() {
        handshakes(&mut o, &r.handshakes, baseline, subject);
        return o;
    }
    let _ = writeln!(o, "Every round:\n");
    let _ = writeln!(
        o,
        "| label | conns | offered/s | requests/s | p50 µs | p90 µs | p99 µs | max µs | errors | server CPU µs/req | load generator CPU µs/req | CPUs idle % | steal % |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let pct = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |p| format!("{p:.1}"));
    for l in &r.loads {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} |",
            l.label,
            l.connections,
            l.offered_per_s
                .map_or_else(|| "max".to_owned(), |r| format!("{r:.0}")),
            l.requests_per_s,
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.max_us,
            l.errors + l.wrong_status,
            l.server_cpu_us_per_request,
            l.client_cpu_us_per_request,
            pct(l.machine_idle_pct),
            pct(l.machine_steal_pct)
        );
    }
    let ms = medians(&r.loads);
    let _ = writeln!(o, "\nMedians over the rounds:\n");
    let _ = writeln!(
        o,
        "| label | rounds | requests/s | p50 µs | p90 µs | p99 µs | max µs | errors (all rounds) | server CPU µs/req |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    for m in &ms {
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.1} |",
            m.label, m.rounds, m.rps, m.p50, m.p90, m.p99, m.max, m.errors, m.server_cpu
        );
    }
    // The figures with a target; the heading only when there is one.
    let outer = o;
    let mut o = String::new();
    let base = ms.iter().find(|m| m.label == baseline);
    for m in ms.iter().filter(|m| m.offered.is_some()) {
        let _ = writeln!(
            o,
            "- {} paced at {:.0} req/s offered ({:.0} answered/s): p50 {:.2} ms, p99 {:.2} ms{}",
            m.label,
            m.offered.unwrap_or_default(),
            m.rps,
            m.p50 / 1000.0,
            m.p99 / 1000.0,
            if m.label.starts_with(subject) {
                format!(" (target < 2 ms: {})", verdict(m.p99 < MAX_P99_US))
            } else {
                String::new()
            }
        );
    }
    for m in ms
        .iter()
        .filter(|m| m.label.starts_with(subject) && m.offered.is_none())
    {
        // Compare with the baseline's rounds of the same kind, run beside it.
        let suffix = m.label.get(subject.len()..).unwrap_or_default();
        let pair = format!("{baseline}{suffix}");
        if let Some(b) = ms.iter().find(|b| b.label == pair && b.rps > 0.0) {
            rps_line(&mut o, m, b);
        }
        if let Some(b) = ms.iter().find(|b| b.label == pair && b.server_cpu > 0.0) {
            cpu_line(&mut o, "request", m, b);
        }
        // The other baselines: nginx writing an access log line per request,
        // as cmx-kms writes an audit record per request: buffered, then
        // with a write(2) per line.
        for log in [ACCESS_LOG, ACCESS_LOG_WRITES] {
            let logged = format!("{baseline}{suffix} {log}");
            if let Some(b) = ms.iter().find(|b| b.label == logged && b.rps > 0.0) {
                rps_line(&mut o, m, b);
                cpu_line(&mut o, "request", m, b);
            }
        }
        let _ = writeln!(
            o,
            "- {} p99 at full load: {:.2} ms (target < 2 ms: {})",
            m.label,
            m.p99 / 1000.0,
            verdict(m.p99 < MAX_P99_US)
        );
    }
    if let Some(b) = base {
        let _ = writeln!(
            o,
            "- {baseline} p99 at full load, for comparison: {:.2} ms",
            b.p99 / 1000.0
        );
    }
    for s in &r.startups {
        let _ = writeln!(
            o,
            "- {subject} start to listening: median {:.1} ms of {} starts, READY=1 at {:.1} ms (target < 100 ms: {}); SIGTERM to exit {:.1} ms",
            s.median_listen_ms,
            s.runs,
            s.median_ready_ms,
            verdict(s.median_listen_ms.max(s.median_ready_ms) < MAX_START_MS),
            s.median_stop_ms
        );
        let _ = writeln!(
            o,
            "- {subject} resident memory 0.3 s after start: median {:.1} MiB (target < 20 MiB: {})",
            s.median_rss_idle_kib / 1024.0,
            verdict(s.median_rss_idle_kib < MAX_RSS_KIB)
        );
    }
    for x in &r.rss {
        let mib = x.kib as f64 / 1024.0;
        let target = if let Some(n) = x.idle_connections {
            let asked = x.asked_connections.unwrap_or(n);
            let short = if n < asked {
                format!(", {} of {asked} asked could not be opened", asked - n)
            } else {
                String::new()
            };
            if x.label == subject && asked == 1000 {
                format!(
                    " (target ≤ 64 MiB: {}{short})",
                    verdict(n == asked && (x.kib as f64) <= MAX_IDLE_1000_KIB)
                )
            } else {
                short
            }
        } else if x.label == subject {
            format!(
                " (target < 20 MiB: {})",
                verdict((x.kib as f64) < MAX_RSS_KIB)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "- {} resident memory {}: {mib:.1} MiB{target}",
            x.label, x.when
        );
    }
    let mut out = outer;
    if !o.is_empty() {
        let _ = writeln!(out, "\nAgainst the targets:\n");
        out.push_str(&o);
    }
    handshakes(&mut out, &r.handshakes, baseline, subject);
    out
}

/// The label suffix of the nginx baseline that writes a buffered access log.
pub const ACCESS_LOG: &str = "[access log 64k]";

/// The label suffix of the nginx baseline that writes each access log line
/// with its own `write(2)`.
pub const ACCESS_LOG_WRITES: &str = "[access log, a write per line]";

/// `m`'s requests per second over baseline `b`'s, against the target.
fn rps_line(o: &mut String, m: &Medians, b: &Medians) {
    let ratio = m.rps / b.rps;
    let _ = writeln!(
        o,
        "- {} / {} requests per second: **{ratio:.2}** (target ≥ {MIN_RATIO}: {})",
        m.label,
        b.label,
        verdict(ratio >= MIN_RATIO)
    );
}

fn cpu_line(o: &mut String, per: &str, m: &Medians, b: &Medians) {
    let r = m.server_cpu / b.server_cpu;
    let _ = writeln!(
        o,
        "- {} / {} server CPU per {per}: **{r:.2}** ({:.1} vs {:.1} µs; target ≤ {MAX_CPU_RATIO}: {})",
        m.label,
        b.label,
        m.server_cpu,
        b.server_cpu,
        verdict(r <= MAX_CPU_RATIO)
    );
}

/// The handshake rounds: every round, the medians, and the ratios.
fn handshakes(o: &mut String, hs: &[LoadResult], baseline: &str, subject: &str) {
    if hs.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\nHandshakes (each client: connect, full TLS 1.3 handshake with its certificate, one decrypt, close; no resumption), every round:\n"
    );
    let _ = writeln!(
        o,
        "| label | clients | handshakes/s | p50 µs | p90 µs | p99 µs | max µs | errors | server CPU µs/handshake | load generator CPU µs/handshake |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for l in hs {
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            l.label,
            l.connections,
            l.requests_per_s,
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.max_us,
            l.errors + l.wrong_status,
            l.server_cpu_us_per_request,
            l.client_cpu_us_per_request
        );
    }
    let ms = medians(hs);
    let _ = writeln!(o, "\nHandshake medians over the rounds:\n");
    let _ = writeln!(
        o,
        "| label | rounds | handshakes/s | p50 µs | p99 µs | errors (all rounds) | server CPU µs/handshake |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|");
    for m in &ms {
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {:.1} |",
            m.label, m.rounds, m.rps, m.p50, m.p99, m.errors, m.server_cpu
        );
    }
    let _ = writeln!(o);
    for m in ms.iter().filter(|m| m.label.starts_with(subject)) {
        let suffix = m.label.get(subject.len()..).unwrap_or_default();
        let pair = format!("{baseline}{suffix}");
        if let Some(b) = ms.iter().find(|b| b.label == pair && b.rps > 0.0) {
            let ratio = m.rps / b.rps;
            let _ = writeln!(
                o,
                "- {} / {} handshakes per second: **{ratio:.2}** (target ≥ {MIN_HANDSHAKE_RATIO}: {}); server CPU per handshake {:.0} µs vs {:.0} µs",
                m.label,
                b.label,
                verdict(ratio >= MIN_HANDSHAKE_RATIO),
                m.server_cpu,
                b.server_cpu
            );
        }
    }
}
