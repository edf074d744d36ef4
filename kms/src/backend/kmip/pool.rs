//! The KMIP client: a pool of persistent TLS connections per endpoint,
//! version negotiation per connection (`dial`), one transparent retry on a
//! broken pooled connection, failover in endpoint order (healthy endpoints
//! first), and a circuit breaker per endpoint.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::{ConnError, Connection};
use super::dial;
use super::endpoint::{Endpoint, Health};
use super::messages::ProtocolVersion;
use super::response::{self, Failure};
use super::settings::KmipSettings;
use super::tags::operation as op;
use super::ttlv::Item;
use crate::backend::{BackendError, EndpointState};
use crate::sync::lock;

/// Versions we offer in Discover Versions, most preferred first.
pub const OUR_VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V1_4,
    ProtocolVersion::V1_3,
    ProtocolVersion::V1_2,
];

/// The version in the header of a Discover Versions request.
pub(super) const DISCOVERY_HEADER_VERSION: ProtocolVersion = ProtocolVersion::V1_2;

/// A failed call: either the server answered with a KMIP failure, or we
/// could not get an answer at all.
#[derive(Debug)]
pub enum CallError {
    Kmip(Failure),
    Backend(BackendError),
}

impl From<BackendError> for CallError {
    fn from(e: BackendError) -> Self {
        Self::Backend(e)
    }
}

/// What `hsm check` learnt about one endpoint.
#[derive(Debug)]
pub struct EndpointCheck {
    pub endpoint: String,
    /// The negotiated version and the vendor identification, or what failed.
    pub result: Result<(ProtocolVersion, Option<String>), ConnError>,
}

/// A successful call: the payload and the version the request was sent in.
#[derive(Debug)]
pub struct Answer {
    pub payload: Option<Item>,
    pub version: ProtocolVersion,
}

/// What a request needs from the connection it runs on.
#[derive(Clone, Copy, Debug)]
pub struct CallOptions {
    /// Send with this version instead of the connection's (GCM needs 1.4).
    pub version: Option<ProtocolVersion>,
    /// Whether a retry after the request may have reached the server is
    /// harmless. Requests that are not (Create) always use a fresh connection.
    pub idempotent: bool,
}

impl CallOptions {
    pub const DEFAULT: Self = Self {
        version: None,
        idempotent: true,
    };
}

/// The KMIP client shared by every task of the backend.
pub struct Client {
    endpoints: Vec<Arc<Endpoint>>,
    tls: Arc<ClientConfig>,
    settings: KmipSettings,
}

enum Attempt {
    Answered(response::Response, ProtocolVersion),
    Busy,
    Failed(ConnError),
}

impl Client {
    /// A client; makes no connection yet.
    pub fn new(settings: KmipSettings, tls: Arc<ClientConfig>) -> Self {
        let endpoints = settings
            .endpoints
            .iter()
            .map(|(host, port)| {
                Arc::new(Endpoint {
                    host: host.clone(),
                    port: *port,
                    label: format!("{host}:{port}"),
                    idle: Mutex::new(Vec::new()),
                    permits: Arc::new(Semaphore::new(settings.pool.max_connections)),
                    health: Mutex::new(Health::default()),
                })
            })
            .collect();
        Self {
            endpoints,
            tls,
            settings,
        }
    }

    /// The settings this client was built with.
    pub fn settings(&self) -> &KmipSettings {
        &self.settings
    }

    /// Runs one operation on the first endpoint that answers.
    ///
    /// `build` makes the payload for the version the chosen connection speaks.
    pub async fn call(
        &self,
        operation: u32,
        options: CallOptions,
        build: impl Fn(ProtocolVersion) -> Item,
    ) -> Result<Answer, CallError> {
        let mut problems = Vec::new();
        let mut all_config = true;
        let mut retry_after = self.settings.breaker.cooldown;
        // Healthy endpoints in configured order, then the suspect ones (that
        // failed last time): a hung endpoint costs a request one timeout,
        // not one per KMIP operation of it.
        let mut order = Vec::with_capacity(self.endpoints.len());
        let mut suspect = Vec::new();
        for ep in &self.endpoints {
            if let Some(open) = ep.breaker_open() {
                // Keep the cause and its class: a persistent configuration
                // fault stays a configuration fault while the breaker is open.
                problems.push(format!(
                    "{}: circuit breaker open for {}s after: {}",
                    ep.label,
                    open.remaining.as_secs().max(1),
                    open.cause
                ));
                retry_after = retry_after.min(open.remaining.max(Duration::from_secs(1)));
                all_config &= open.config;
            } else if ep.is_suspect() {
                suspect.push(ep);
            } else {
                order.push(ep);
            }
        }
        if !order.is_empty() {
            // Requests do not wait for a suspect endpoint while another
            // answers: a background trial (once per cooldown) finds out
            // whether it is back.
            for ep in &suspect {
                if ep.claim_trial(&self.settings) {
                    dial::spawn_trial(Arc::clone(ep), Arc::clone(&self.tls), &self.settings);
                }
            }
        }
        order.append(&mut suspect);
        for ep in order {
            match self.attempt(ep, operation, options, &build).await {
                Attempt::Answered(resp, version) => {
                    ep.record_success();
                    return match resp.result {
                        Ok(payload) => Ok(Answer { payload, version }),
                        Err(failure) => Err(CallError::Kmip(failure)),
                    };
                }
                Attempt::Busy => {
                    all_config = false;
                    problems.push(format!(
                        "{}: all {} connections busy for {:?}",
                        ep.label, self.settings.pool.max_connections, self.settings.request_timeout
                    ));
                }
                Attempt::Failed(e) => {
                    all_config &= e.is_config();
                    tracing::warn!(endpoint = %ep.label, operation = op::name(operation), error = %e, "KMIP endpoint failed");
                    problems.push(format!("{}: {e}", ep.label));
                    ep.record_failure(&e, &self.settings);
                }
            }
        }
        let reason = problems.join("; ");
        Err(CallError::Backend(if all_config && !problems.is_empty() {
            BackendError::Misconfigured(reason)
        } else {
            BackendError::Unavailable {
                reason: format!("no KMIP endpoint answered: {reason}"),
                retry_after,
            }
        }))
    }

    async fn attempt(
        &self,
        ep: &Endpoint,
        operation: u32,
        options: CallOptions,
        build: &impl Fn(ProtocolVersion) -> Item,
    ) -> Attempt {
        let s = &self.settings;
        // A free connection slot is the usual case: take it without arming a
        // timer (one less timer-wheel entry per HSM request).
        let permit = match Arc::clone(&ep.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match tokio::time::timeout(
                s.request_timeout,
                Arc::clone(&ep.permits).acquire_owned(),
            )
            .await
            {
                Ok(Ok(permit)) => permit,
                _ => return Attempt::Busy,
            },
        };
        if options.idempotent
            && let Some(mut conn) = self.take_idle(ep)
        {
            match self.send(&mut conn, operation, options, build).await {
                Ok((resp, version)) => {
                    self.give_back(ep, conn, permit);
                    return Attempt::Answered(resp, version);
                }
                // A hung HSM is not a stale connection: do not wait twice.
                Err(e @ ConnError::Timeout(_)) => return Attempt::Failed(e),
                Err(e) => {
                    // A pooled connection can die quietly (HSM restart, idle
                    // timeout, load balancer): retry once on a fresh one.
                    tracing::debug!(endpoint = %ep.label, error = %e, "pooled KMIP connection broken, reconnecting");
                }
            }
        }
        let mut conn = match dial::open(ep, &self.tls, &self.settings).await {
            Ok(conn) => conn,
            Err(e) => return Attempt::Failed(e),
        };
        match self.send(&mut conn, operation, options, build).await {
            Ok((resp, version)) => {
                self.give_back(ep, conn, permit);
                Attempt::Answered(resp, version)
            }
            Err(e) => Attempt::Failed(e),
        }
    }

    /// One request on `conn`, in the version `options` pins or the
    /// connection's own; returns the answer and the version it was sent in.
    async fn send(
        &self,
        conn: &mut Connection,
        operation: u32,
        options: CallOptions,
        build: &impl Fn(ProtocolVersion) -> Item,
    ) -> Result<(response::Response, ProtocolVersion), ConnError> {
        let s = &self.settings;
        let version = options.version.unwrap_or(conn.version);
        let payload = build(conn.version);
        let resp = conn
            .exchange(
                version,
                operation,
                payload,
                s.max_response_bytes,
                s.request_timeout,
            )
            .await?;
        Ok((resp, version))
    }

    /// Takes the most recently used idle connection that is still fit for use.
    fn take_idle(&self, ep: &Endpoint) -> Option<Connection> {
        let pool = &self.settings.pool;
        loop {
            let mut conn = lock(&ep.idle).pop()?;
            if conn.last_used.elapsed() >= pool.idle_timeout
                || conn.created.elapsed() >= pool.max_lifetime
            {
                continue;
            }
            if conn.looks_alive() {
                return Some(conn);
            }
        }
    }

    fn give_back(&self, ep: &Endpoint, conn: Connection, permit: OwnedSemaphorePermit) {
        let mut idle = lock(&ep.idle);
        if idle.len() < self.settings.pool.max_connections {
            idle.push(conn);
        }
        drop(permit);
    }

    /// Connects to every endpoint on a fresh connection (bypassing the pool),
    /// negotiates the version and asks Query for the vendor, for `hsm check`.
    pub async fn check_endpoints(&self) -> Vec<EndpointCheck> {
        let mut out = Vec::with_capacity(self.endpoints.len());
        for ep in &self.endpoints {
            let result = dial::check(ep, &self.tls, &self.settings).await;
            match &result {
                Ok(_) => ep.record_success(),
                Err(e) => ep.record_failure(e, &self.settings),
            }
            out.push(EndpointCheck {
                endpoint: ep.label.clone(),
                result,
            });
        }
        out
    }

    /// The state of each endpoint as last seen, for readiness and `hsm check`.
    pub fn endpoint_states(&self) -> Vec<EndpointState> {
        self.endpoints.iter().map(|ep| ep.state()).collect()
    }
}
