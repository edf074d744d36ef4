//! One HSM endpoint of the KMIP client's pool: its idle connections, the
//! permits that cap its open connections, and its health, which drives the
//! circuit breaker (open after `breaker.failures` consecutive failures, for
//! `breaker.cooldown`) and the state the backend's probe reports for it.

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

impl Endpoint {
    /// Remaining open time, when the breaker is open.
    pub(super) fn breaker_open(&self) -> Option<Duration> {
        let health = lock(&self.health);
        let until = health.open_until?;
        until.checked_duration_since(Instant::now())
    }

    pub(super) fn record_success(&self) {
        let mut h = lock(&self.health);
        h.consecutive_failures = 0;
        h.open_until = None;
        h.last_error = None;
        h.last_ok = Some(Instant::now());
    }

    pub(super) fn record_failure(&self, error: &ConnError, settings: &KmipSettings) {
        // Whatever is idle towards a failing endpoint is suspect as well.
        lock(&self.idle).clear();
        let mut h = lock(&self.health);
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        h.last_error = Some(error.to_string());
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
                    format!("; circuit breaker open for {}s", d.as_secs().max(1))
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
