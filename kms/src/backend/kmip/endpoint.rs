//! One HSM endpoint of the KMIP client's pool: its idle connections, the
//! permits that cap its open connections, and its health, which drives the
//! order calls try endpoints in (an endpoint that just failed is *suspect*:
//! tried after the healthy ones, while a background trial once per
//! `breaker.cooldown` finds out when it is back), the circuit breaker (open after `breaker.failures`
//! consecutive failures, for `breaker.cooldown`, keeping the cause) and the
//! state the backend's probe reports for it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::conn::{ConnError, Connection};
use super::messages::ProtocolVersion;
use super::settings::KmipSettings;
use crate::backend::EndpointState;
use crate::sync::lock;

#[derive(Debug, Default)]
pub(super) struct Health {
    pub(super) consecutive_failures: u32,
    pub(super) open_until: Option<Instant>,
    pub(super) last_error: Option<String>,
    /// Whether the last failure was a configuration problem (TLS, versions).
    pub(super) last_config: bool,
    pub(super) last_failure: Option<Instant>,
    /// A trial call on the suspect endpoint is under way until then.
    pub(super) trial_until: Option<Instant>,
    pub(super) last_ok: Option<Instant>,
    pub(super) version: Option<ProtocolVersion>,
}

pub(super) struct Endpoint {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) label: String,
    pub(super) idle: Mutex<Vec<Connection>>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) health: Mutex<Health>,
}

/// An open breaker: how long it stays open and the failure that opened it.
pub(super) struct Open {
    pub(super) remaining: Duration,
    pub(super) cause: String,
    /// Whether that failure was a configuration problem.
    pub(super) config: bool,
}

impl Endpoint {
    /// The open breaker, if it is open.
    pub(super) fn breaker_open(&self) -> Option<Open> {
        let health = lock(&self.health);
        let until = health.open_until?;
        let remaining = until.checked_duration_since(Instant::now())?;
        Some(Open {
            remaining,
            cause: health
                .last_error
                .clone()
                .unwrap_or_else(|| "repeated failures".to_owned()),
            config: health.last_config,
        })
    }

    /// Whether the last call on this endpoint failed: calls then try it
    /// after the healthy ones, and a background trial finds out when it is
    /// back (see `dial::spawn_trial`).
    pub(super) fn is_suspect(&self) -> bool {
        lock(&self.health).consecutive_failures > 0
    }

    /// Claims the trial of a suspect endpoint: true at most once per
    /// `breaker.cooldown` after its last failure, and never while a trial
    /// runs (a trial frees itself after its timeouts, whatever happens).
    pub(super) fn claim_trial(&self, settings: &KmipSettings) -> bool {
        let mut h = lock(&self.health);
        let now = Instant::now();
        let rested = h
            .last_failure
            .is_none_or(|at| now.duration_since(at) >= settings.breaker.cooldown);
        let free = h.trial_until.is_none_or(|until| now >= until);
        if h.consecutive_failures > 0 && rested && free {
            h.trial_until = Some(now + settings.connect_timeout + settings.request_timeout * 2);
            return true;
        }
        false
    }

    pub(super) fn record_success(&self) {
        let mut h = lock(&self.health);
        h.consecutive_failures = 0;
        h.open_until = None;
        h.last_error = None;
        h.last_config = false;
        h.trial_until = None;
        h.last_ok = Some(Instant::now());
    }

    pub(super) fn record_failure(&self, error: &ConnError, settings: &KmipSettings) {
        // Whatever is idle towards a failing endpoint is suspect as well.
        lock(&self.idle).clear();
        let mut h = lock(&self.health);
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        h.last_error = Some(error.to_string());
        h.last_config = error.is_config();
        h.last_failure = Some(Instant::now());
        h.trial_until = None;
        if h.consecutive_failures >= settings.breaker.failures {
            h.open_until = Some(Instant::now() + settings.breaker.cooldown);
        }
    }

    pub(super) fn state(&self) -> EndpointState {
        let idle = lock(&self.idle).len();
        let h = lock(&self.health);
        let open = h
            .open_until
            .and_then(|u| u.checked_duration_since(Instant::now()));
        let (up, detail) = match (&h.last_error, h.last_ok) {
            (Some(e), _) => {
                let breaker = open.map_or(String::new(), |d| {
                    format!(
                        "; circuit breaker open for {}s after this failure",
                        d.as_secs().max(1)
                    )
                });
                (false, format!("down: {e}{breaker}"))
            }
            (None, Some(_)) => {
                let version = h.version.map_or(String::new(), |v| format!("KMIP {v}, "));
                (true, format!("up ({version}{idle} idle connections)"))
            }
            (None, None) => (false, "not contacted yet".to_owned()),
        };
        EndpointState {
            endpoint: self.label.clone(),
            up,
            detail,
        }
    }
}
