//! Metrics in the Prometheus text format, served at `/metrics` on a separate
//! plain-HTTP listener bound to loopback by default (`kms.metrics.address`,
//! `kms.metrics.port`): whoever can reach that port may read them, so they
//! hold no secrets, only counts, timings and certificate expiry.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

mod requests;

use crate::sync::lock;
use requests::{Histogram, Requests};
#[cfg(test)]
pub(crate) use requests::{OPERATIONS, ROLES};

/// Writes more lines into the metrics page.
pub type ExtraLines = Box<dyn Fn(&mut String) + Send + Sync>;

/// Every metric of a node.
#[derive(Default)]
pub struct Metrics {
    requests: Requests,
    backend_latency: Histogram,
    backend_errors: Mutex<BTreeMap<String, u64>>,
    handshake_failures: Mutex<BTreeMap<String, u64>>,
    invalid_wrapped_keys: Mutex<BTreeMap<String, u64>>,
    connections_closed: Mutex<BTreeMap<String, u64>>,
    /// Connections accepted whose client is not authenticated yet.
    pub pending_connections: AtomicI64,
    reloads: Mutex<BTreeMap<String, u64>>,
    cert_expiry_days: Mutex<BTreeMap<(String, String), i64>>,
    pub in_flight: AtomicI64,
    pub audit_failures: AtomicU64,
    pub rate_limited: AtomicU64,
    pub vault_token_ttl_seconds: AtomicI64,
    /// More lines for the page (the cluster's, when there is one).
    pub extra: std::sync::OnceLock<ExtraLines>,
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Count a request. Labels are static strings, so this allocates nothing;
    /// a request answered `ok` takes no lock (`requests::OPERATIONS`).
    pub fn request(
        &self,
        operation: &'static str,
        role: &'static str,
        outcome: &'static str,
        latency: Duration,
    ) {
        self.requests.count(operation, role, outcome, latency);
    }

    pub fn backend_call(&self, latency: Duration, error: Option<&str>) {
        self.backend_latency.observe(latency);
        if let Some(label) = error {
            *lock(&self.backend_errors).entry(label.into()).or_default() += 1;
        }
    }

    pub fn handshake_failure(&self, reason: &str) {
        *lock(&self.handshake_failures)
            .entry(reason.into())
            .or_default() += 1;
    }

    /// Count a refused wrapped key from client identity `alias` (a keystore
    /// alias, so the label set stays small).
    pub fn invalid_wrapped_key(&self, alias: &str) {
        let mut map = lock(&self.invalid_wrapped_keys);
        match map.get_mut(alias) {
            Some(n) => *n += 1,
            None => {
                map.insert(alias.to_owned(), 1);
            }
        }
    }

    /// Count a connection the server closed on purpose (`reason` is a stable label).
    pub fn connection_closed(&self, reason: &str) {
        *lock(&self.connections_closed)
            .entry(reason.into())
            .or_default() += 1;
    }

    pub fn reload(&self, ok: bool) {
        *lock(&self.reloads)
            .entry(if ok { "success" } else { "failure" }.into())
            .or_default() += 1;
    }

    /// Replace the certificate expiry gauges (alias, kind) → days left.
    pub fn set_cert_expiry(&self, certs: BTreeMap<(String, String), i64>) {
        *lock(&self.cert_expiry_days) = certs;
    }

    /// The whole page: this node's metrics, `cache` (hits, misses) and the
    /// readiness gauge given at scrape time, then the [`Metrics::extra`] lines.
    pub fn render(&self, cache: (u64, u64), ready_state: u8) -> String {
        let mut o = String::new();
        self.requests.render(&mut o);
        self.render_backend(&mut o);
        single(
            &mut o,
            "cmx_kms_cache_hits_total",
            "counter",
            "Customer-key cache hits.",
            cache.0,
        );
        single(
            &mut o,
            "cmx_kms_cache_misses_total",
            "counter",
            "Customer-key cache misses (backend unwraps).",
            cache.1,
        );
        single(
            &mut o,
            "cmx_kms_in_flight_requests",
            "gauge",
            "Requests being served now.",
            self.in_flight.load(Ordering::Relaxed),
        );
        self.render_connections(&mut o);
        self.render_health(&mut o, ready_state);
        if let Some(extra) = self.extra.get() {
            extra(&mut o);
        }
        o
    }

    /// Calls to the master-key backend: latency and errors.
    fn render_backend(&self, o: &mut String) {
        header(
            o,
            "cmx_kms_backend_duration_seconds",
            "histogram",
            "Latency of calls to the master-key backend.",
        );
        self.backend_latency
            .render(o, "cmx_kms_backend_duration_seconds", "");
        counter_map(
            o,
            "cmx_kms_backend_errors_total",
            "Backend errors by label.",
            "error",
            &lock(&self.backend_errors),
        );
    }

    /// Handshakes, refused wrapped keys, closed and pending connections.
    fn render_connections(&self, o: &mut String) {
        counter_map(
            o,
            "cmx_kms_tls_handshake_failures_total",
            "Refused or failed TLS handshakes by reason.",
            "reason",
            &lock(&self.handshake_failures),
        );
        counter_map(
            o,
            "cmx_kms_invalid_wrapped_keys_total",
            "Wrapped keys refused (malformed, tampered, forged or under another key) by client identity.",
            "client",
            &lock(&self.invalid_wrapped_keys),
        );
        counter_map(
            o,
            "cmx_kms_connections_closed_total",
            "Connections closed by the server on purpose, by reason.",
            "reason",
            &lock(&self.connections_closed),
        );
        single(
            o,
            "cmx_kms_pending_connections",
            "gauge",
            "Connections whose client is not authenticated yet.",
            self.pending_connections.load(Ordering::Relaxed),
        );
    }

    /// Reloads, certificate expiry, audit failures, rate limiting,
    /// readiness and the Vault token's time left.
    fn render_health(&self, o: &mut String, ready_state: u8) {
        counter_map(
            o,
            "cmx_kms_reloads_total",
            "Configuration reloads by result.",
            "result",
            &lock(&self.reloads),
        );
        header(
            o,
            "cmx_kms_certificate_expiry_days",
            "gauge",
            "Days until each keystore certificate expires.",
        );
        for ((alias, kind), days) in lock(&self.cert_expiry_days).iter() {
            let _ = writeln!(
                o,
                "cmx_kms_certificate_expiry_days{{alias=\"{}\",entry=\"{}\"}} {days}",
                esc(alias),
                esc(kind)
            );
        }
        single(
            o,
            "cmx_kms_audit_failures_total",
            "counter",
            "Audit records that could not be written (operations refused).",
            self.audit_failures.load(Ordering::Relaxed),
        );
        single(
            o,
            "cmx_kms_rate_limited_total",
            "counter",
            "Requests refused by a rate limit.",
            self.rate_limited.load(Ordering::Relaxed),
        );
        single(
            o,
            "cmx_kms_ready",
            "gauge",
            "Readiness: 2 ready, 1 degraded, 0 unavailable.",
            ready_state,
        );
        single(
            o,
            "cmx_kms_vault_token_ttl_seconds",
            "gauge",
            "Seconds left on the Vault token (-1: not using Vault).",
            self.vault_token_ttl_seconds.load(Ordering::Relaxed),
        );
    }
}

/// The `# HELP` and `# TYPE` lines of metric `name` of type `kind`.
pub(crate) fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// A metric without labels: its header and its one value.
pub(crate) fn single(o: &mut String, name: &str, kind: &str, help: &str, value: impl Display) {
    header(o, name, kind, help);
    let _ = writeln!(o, "{name} {value}");
}

/// A counter by one label: its header and a line per label value.
fn counter_map(o: &mut String, name: &str, help: &str, label: &str, m: &BTreeMap<String, u64>) {
    by_label(o, name, "counter", help, label, m);
}

/// A metric with one label: its header and a line per label value (escaped).
pub(crate) fn by_label<K: AsRef<str>>(
    o: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    label: &str,
    m: &BTreeMap<K, u64>,
) {
    header(o, name, kind, help);
    for (k, n) in m {
        let _ = writeln!(o, "{name}{{{label}=\"{}\"}} {n}", esc(k.as_ref()));
    }
}
