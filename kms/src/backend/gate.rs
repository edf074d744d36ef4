//! A wrapper around any backend that bounds concurrent calls (an immediate
//! `Unavailable` when full, never a queue) and records latency and errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::{Backend, BackendError, BackendKind, MasterWrap, ProbeReport};
use crate::metrics::Metrics;

/// A backend behind a bound on concurrent calls (`kms.hsm.max.concurrent.requests`).
pub struct GatedBackend {
    inner: Arc<dyn Backend>,
    permits: Semaphore,
    limit: usize,
    metrics: Arc<Metrics>,
}

impl GatedBackend {
    /// Gate `inner`: at most `max_concurrent` calls at once, counted in `metrics`.
    pub fn new(inner: Arc<dyn Backend>, max_concurrent: usize, metrics: Arc<Metrics>) -> Self {
        let limit = max_concurrent.max(1);
        Self {
            inner,
            permits: Semaphore::new(limit),
            limit,
            metrics,
        }
    }

    /// The backend behind the gate.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    async fn gated<T, F>(&self, call: F) -> Result<T, BackendError>
    where
        F: std::future::Future<Output = Result<T, BackendError>>,
    {
        let Ok(_permit) = self.permits.try_acquire() else {
            let e = BackendError::Unavailable {
                reason: format!(
                    "{} backend calls already in flight (kms.limits.backend-concurrency)",
                    self.limit
                ),
                retry_after: Duration::from_secs(1),
            };
            self.metrics
                .backend_call(Duration::ZERO, Some("backend-busy"));
            return Err(e);
        };
        let start = Instant::now();
        let r = call.await;
        self.metrics
            .backend_call(start.elapsed(), r.as_ref().err().map(BackendError::label));
        r
    }
}

#[async_trait]
impl Backend for GatedBackend {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    async fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<MasterWrap, BackendError> {
        self.gated(self.inner.wrap(plaintext, aad)).await
    }

    async fn unwrap(
        &self,
        wrapped: &MasterWrap,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.gated(self.inner.unwrap(wrapped, aad)).await
    }

    async fn rewrap(&self, wrapped: &MasterWrap, aad: &[u8]) -> Result<MasterWrap, BackendError> {
        self.gated(self.inner.rewrap(wrapped, aad)).await
    }

    /// The canary bypasses the bound: readiness must not read "unavailable"
    /// just because traffic is heavy.
    async fn probe(&self) -> Result<ProbeReport, BackendError> {
        self.inner.probe().await
    }

    fn credential_ttl(&self) -> Option<Duration> {
        self.inner.credential_ttl()
    }

    fn endpoint_states(&self) -> Vec<super::EndpointState> {
        self.inner.endpoint_states()
    }
}
