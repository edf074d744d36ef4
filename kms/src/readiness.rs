//! Deep readiness: a periodic canary through the backend.
//!
//! `/v1/ready` reports the last canary's outcome: `ready`, `degraded` (slow,
//! or some endpoints down) or `unavailable`. A down backend never blocks
//! start-up: the node starts `unavailable` and recovers by itself.
//!
//! Apart from the canary, a node that was told to stop, or to drain
//! (`cmx-kms drain`), is *draining* ([`Readiness::set_stopping`],
//! [`Readiness::set_draining`]): every `/v1/ready`, the load balancers'
//! check listener (`crate::http::health`) first, answers 503 `draining` from
//! then on, whatever the canary says, so balancers take the node out while
//! it still serves. A requested drain can be ended
//! ([`Readiness::resume`]); a stop cannot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::backend::{Backend, EndpointState};

/// Readiness states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ready,
    Degraded,
    Unavailable,
}

impl State {
    /// The state as the `cmx_kms_ready` gauge shows it: 2 ready, 1 degraded, 0
    /// unavailable.
    pub fn gauge(self) -> u8 {
        match self {
            Self::Ready => 2,
            Self::Degraded => 1,
            Self::Unavailable => 0,
        }
    }
}

/// The last canary's result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub state: State,
    pub backend: &'static str,
    /// Canary latency in milliseconds (absent when it failed).
    pub latency_ms: Option<u64>,
    pub detail: String,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    pub endpoint: String,
    pub up: bool,
    pub detail: String,
}

impl From<&EndpointState> for Endpoint {
    fn from(e: &EndpointState) -> Self {
        Self {
            endpoint: e.endpoint.clone(),
            up: e.up,
            detail: e.detail.clone(),
        }
    }
}

/// Canary settings.
#[derive(Clone, Copy, Debug)]
pub struct ProbeSettings {
    /// How often the canary runs.
    pub interval: Duration,
    /// How long a canary may take before it counts as failed.
    pub timeout: Duration,
    /// A canary slower than this makes the node `degraded`.
    pub slow: Duration,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            slow: Duration::from_secs(1),
        }
    }
}

/// Shared readiness state.
pub struct Readiness {
    current: ArcSwap<Report>,
    draining: std::sync::atomic::AtomicBool,
    /// Set on a stop: a drain that ends in an exit cannot be resumed.
    stopping: std::sync::atomic::AtomicBool,
    /// The audit trail, checked with the canary: key operations need it.
    audit: Option<Arc<crate::audit::AuditLog>>,
}

impl Readiness {
    /// `unavailable` until the first canary, for the backend labelled `backend`.
    pub fn new(backend: &'static str) -> Self {
        Self {
            current: ArcSwap::from_pointee(Report {
                state: State::Unavailable,
                backend,
                latency_ms: None,
                detail: "no canary has run yet".into(),
                endpoints: Vec::new(),
            }),
            draining: std::sync::atomic::AtomicBool::new(false),
            stopping: std::sync::atomic::AtomicBool::new(false),
            audit: None,
        }
    }

    /// Also check `audit` with every canary: while it cannot take records,
    /// every key operation gets 503 `audit-unavailable`, so the node reports
    /// `unavailable` and balancers send clients to other nodes.
    pub fn with_audit(mut self, audit: Option<Arc<crate::audit::AuditLog>>) -> Self {
        self.audit = audit;
        self
    }

    /// The last canary's report.
    pub fn current(&self) -> Arc<Report> {
        self.current.load_full()
    }

    /// The node is draining (told by `cmx-kms drain`): report it to load
    /// balancers from now on, until [`Readiness::resume`].
    pub fn set_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The node is stopping: draining for good.
    pub fn set_stopping(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.set_draining();
    }

    /// End a requested drain (`cmx-kms drain --resume`); false, and still
    /// draining, when the node is stopping.
    pub fn resume(&self) -> bool {
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        self.draining
            .store(false, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Whether the node is stopping.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Run one canary now and publish its result.
    pub async fn check(&self, backend: &dyn Backend, settings: &ProbeSettings) -> Arc<Report> {
        let start = Instant::now();
        let label = backend.kind().label();
        let report = match tokio::time::timeout(settings.timeout, backend.probe()).await {
            Ok(Ok(p)) => {
                let elapsed = start.elapsed();
                let any_down = p.endpoints.iter().any(|e| !e.up);
                let all_down = !p.endpoints.is_empty() && p.endpoints.iter().all(|e| !e.up);
                let (state, detail) = if all_down {
                    (State::Unavailable, "every endpoint is down".to_string())
                } else if any_down {
                    (State::Degraded, "some endpoints are down".to_string())
                } else if elapsed > settings.slow {
                    (
                        State::Degraded,
                        format!("canary took {} ms", elapsed.as_millis()),
                    )
                } else {
                    (State::Ready, "canary ok".to_string())
                };
                Report {
                    state,
                    backend: label,
                    latency_ms: Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
                    detail,
                    endpoints: p.endpoints.iter().map(Endpoint::from).collect(),
                }
            }
            // The endpoints as last seen: their detail is what an operator
            // needs most when the canary fails.
            Ok(Err(e)) => Report {
                state: State::Unavailable,
                backend: label,
                latency_ms: None,
                detail: e.to_string(),
                endpoints: backend
                    .endpoint_states()
                    .iter()
                    .map(Endpoint::from)
                    .collect(),
            },
            Err(_) => Report {
                state: State::Unavailable,
                backend: label,
                latency_ms: None,
                detail: format!("canary timed out after {} ms", settings.timeout.as_millis()),
                endpoints: backend
                    .endpoint_states()
                    .iter()
                    .map(Endpoint::from)
                    .collect(),
            },
        };
        let report = self.with_audit_state(report).await;
        let prev = self.current.swap(Arc::new(report));
        let now = self.current.load_full();
        if prev.state != now.state {
            tracing::info!(from = ?prev.state, to = ?now.state, detail = %now.detail, "readiness changed");
        }
        now
    }

    /// `report`, made `unavailable` if the audit trail cannot take records.
    async fn with_audit_state(&self, mut report: Report) -> Report {
        let Some(audit) = &self.audit else {
            return report;
        };
        if let Err(e) = audit.probe().await {
            report.state = State::Unavailable;
            report.detail =
                format!("the audit trail cannot be written ({e}); key operations get 503");
        }
        report
    }

    /// Run the canary every `settings.interval`, forever, each time through
    /// the backend `current` gives then (the one of the latest reload).
    pub async fn run(
        self: Arc<Self>,
        current: impl Fn() -> Arc<dyn Backend> + Send + 'static,
        settings: ProbeSettings,
    ) {
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let backend = current();
            self.check(backend.as_ref(), &settings).await;
        }
    }
}
