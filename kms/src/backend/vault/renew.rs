//! The background task that keeps a live token: renew before expiry, log in
//! again when renewal is impossible, back off while Vault is away. It never
//! gives up: whatever fails, it has a next attempt planned.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::auth::Auth;
use super::settings::VaultAuth;
use crate::backend::BackendError;

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Run until aborted (the backend aborts it when dropped).
pub(crate) async fn maintain(auth: Arc<Auth>) {
    let mut failures: u32 = 0;
    let mut warned_static_end = false;
    loop {
        let Some(token) = auth.peek() else {
            // No token yet (start-up) or the last one was dropped: get one.
            match auth.token().await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(failures);
                    tracing::warn!(error = %e, retry_in = ?wait, "cannot obtain a Vault token");
                    wait_or_change(&auth, Instant::now() + wait).await;
                }
            }
            continue;
        };
        let Some(act_at) = token.act_at(auth.renew_before) else {
            // Never expires: nothing to do until somebody replaces it.
            auth.changed.notified().await;
            continue;
        };
        if Instant::now() < Instant::from_std(act_at) {
            wait_or_change(&auth, Instant::from_std(act_at)).await;
            continue;
        }

        // Time to act on this token.
        let outcome = if token.renewable && !token.capped && !token.is_expired() {
            match auth.renew(&token).await {
                Ok(t) if !t.capped => Ok(()),
                Ok(_) => {
                    tracing::info!("the Vault token reached its max TTL");
                    replace(&auth, &token, &mut warned_static_end).await
                }
                Err(e @ BackendError::Unavailable { .. }) => Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the Vault token failed");
                    replace(&auth, &token, &mut warned_static_end).await
                }
            }
        } else {
            replace(&auth, &token, &mut warned_static_end).await
        };
        match outcome {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                let mut wait = backoff(failures);
                // A static token that cannot come back: check its file again
                // now and then, without flooding the log.
                if matches!(auth.method(), VaultAuth::Token(_)) {
                    wait = wait.max(Duration::from_secs(5));
                }
                tracing::warn!(error = %e, retry_in = ?wait, "Vault token maintenance failed");
                wait_or_change(&auth, Instant::now() + wait).await;
            }
        }
    }
}

async fn replace(
    auth: &Auth,
    token: &super::token::Token,
    warned_static_end: &mut bool,
) -> Result<(), BackendError> {
    if !auth.can_login() && !token.is_expired() {
        // A static token near its end: say so once, then wait for expiry
        // (it stays usable until then) and look for a new one.
        if !*warned_static_end {
            *warned_static_end = true;
            tracing::error!(
                ttl_remaining = ?auth.ttl_remaining(),
                "the static Vault token cannot be renewed any further and expires soon; a token \
                 given as `token` cannot be obtained again: provide a new token or use a login \
                 method (kms.hsm.vault.auth)"
            );
        }
        if let Some(exp) = token.expires_at {
            tokio::time::sleep_until(Instant::from_std(exp)).await;
        }
    }
    auth.replace(token).await.map(|_| ())
}

async fn wait_or_change(auth: &Auth, until: Instant) {
    tokio::select! {
        () = tokio::time::sleep_until(until) => {}
        () = auth.changed.notified() => {}
    }
}

fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(8);
    let ceiling = MIN_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let half = millis / 2;
    Duration::from_millis(half + rand::Rng::random_range(&mut rand::rng(), 0..=half))
}
