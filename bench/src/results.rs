//! The results file every subcommand appends to (one JSON object per line,
//! each with a `kind`) and the one reader behind `report`: it sorts the
//! lines by kind once, and each part of the report (`report.rs` for the
//! hot path, handshakes, start-up and memory; `kmip_report.rs`;
//! `cluster_report.rs`) prints the kinds it knows.

use std::io::Write as _;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::BenchError;
use crate::cluster_report::{HopCheck, HopSeries};
use crate::kmip_report::KmipResult;
use crate::load::LoadResult;
use crate::report::RssResult;
use crate::startup::StartupResult;

/// Every result in a file, by kind, in the order they were written.
#[derive(Default)]
pub struct Results {
    pub loads: Vec<LoadResult>,
    pub handshakes: Vec<LoadResult>,
    pub startups: Vec<StartupResult>,
    pub rss: Vec<RssResult>,
    pub kmip: Vec<KmipResult>,
    pub hops: Vec<HopSeries>,
    pub hop_checks: Vec<HopCheck>,
}

fn io_err(path: &Path) -> impl Fn(String) -> BenchError + '_ {
    move |reason| BenchError::Io {
        path: path.to_owned(),
        reason,
    }
}

/// Read `path`; lines of a kind no report knows are skipped.
pub fn read(path: &Path) -> Result<Results, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path)(e.to_string()))?;
    let mut r = Results::default();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |e: serde_json::Error| io_err(path)(format!("line {}: {e}", i + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(bad)?;
        fn push<T: DeserializeOwned>(
            to: &mut Vec<T>,
            v: serde_json::Value,
        ) -> Result<(), serde_json::Error> {
            to.push(serde_json::from_value(v)?);
            Ok(())
        }
        match v.get("kind").and_then(serde_json::Value::as_str) {
            Some("load") => push(&mut r.loads, v),
            Some("handshake") => push(&mut r.handshakes, v),
            Some("startup") => push(&mut r.startups, v),
            Some("rss") => push(&mut r.rss, v),
            Some("kmip") => push(&mut r.kmip, v),
            Some("hop") => push(&mut r.hops, v),
            Some("hop-check") => push(&mut r.hop_checks, v),
            _ => Ok(()),
        }
        .map_err(bad)?;
    }
    Ok(r)
}

/// Append one result to `out`.
pub fn append(out: &Path, value: &impl serde::Serialize) -> Result<(), BenchError> {
    let line = serde_json::to_string(value).map_err(|e| io_err(out)(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .map_err(|e| io_err(out)(e.to_string()))?;
    writeln!(f, "{line}").map_err(|e| io_err(out)(e.to_string()))
}

/// How every report words a target.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// Microseconds as milliseconds, two decimals.
pub fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

/// The whole report: each part prints only when the file holds its kinds.
pub fn render(path: &Path, baseline: &str, subject: &str) -> Result<String, BenchError> {
    let r = read(path)?;
    let mut o = crate::report::render(&r, baseline, subject);
    if !r.kmip.is_empty() {
        o.push_str(&crate::kmip_report::render(&r.kmip));
    }
    o.push_str(&crate::cluster_report::render(&r));
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, lines: &[serde_json::Value]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("cmx-kms-bench-{}-{name}", std::process::id()));
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn load(label: &str, rps: f64) -> serde_json::Value {
        serde_json::json!({"kind": "load", "label": label, "connections": 64, "duration_s": 10.0,
            "requests": 1, "requests_per_s": rps, "p50_us": 1, "p90_us": 1, "p99_us": 1,
            "max_us": 1, "wrong_status": 0, "errors": 0, "response_bytes": 64,
            "server_cpu_us_per_request": 10.0, "client_cpu_us_per_request": 5.0,
            "first_error": null})
    }

    #[test]
    fn each_part_prints_only_its_own_kinds() {
        let hot = file("hot", &[load("cmx-kms", 900.0), load("nginx", 1000.0)]);
        let text = render(&hot, "nginx", "cmx-kms").unwrap();
        assert!(
            text.contains("- cmx-kms / nginx requests per second: **0.90** (target ≥ 0.85: met)"),
            "{text}"
        );
        assert!(!text.contains("Cold customer keys") && !text.contains("| series |"));
        // A file of another script's kinds gets none of the hot-path headings.
        let other = file(
            "other",
            &[load("cache=none", 1000.0), load("cache=distributed", 990.0)],
        );
        let text = render(&other, "nginx", "cmx-kms").unwrap();
        assert!(!text.contains("Against the targets"), "{text}");
        assert!(text.contains("Hot path on one node"), "{text}");
        for p in [hot, other] {
            let _ = std::fs::remove_file(p);
        }
    }
}
