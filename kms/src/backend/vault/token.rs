//! A Vault token as the backend holds it: its secret (never shown by
//! `Debug`), its generation and when to renew or replace it. Obtained and
//! refreshed by [`super::auth::Auth`].

use std::time::{Duration, Instant};

use secrecy::SecretString;

/// A token in use. `Debug` never shows the secret.
pub(crate) struct Token {
    pub secret: SecretString,
    /// Increases with every new token, so callers can tell whether the token
    /// that failed them has already been replaced.
    pub generation: u64,
    pub obtained_at: Instant,
    /// `None`: the token never expires (e.g. a root token).
    pub expires_at: Option<Instant>,
    /// TTL granted at login or creation (renewal margin is at most half of it).
    pub full_ttl: Duration,
    pub renewable: bool,
    /// Vault capped the last renewal: the token reached its max TTL.
    pub capped: bool,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"[redacted]")
            .field("generation", &self.generation)
            .field("expires_at", &self.expires_at)
            .field("renewable", &self.renewable)
            .field("capped", &self.capped)
            .finish()
    }
}

impl Token {
    /// A token just obtained, valid for `ttl` from now (zero: it never expires).
    pub(super) fn fresh(
        secret: SecretString,
        generation: u64,
        ttl: Duration,
        renewable: bool,
    ) -> Self {
        let now = Instant::now();
        Self {
            secret,
            generation,
            obtained_at: now,
            expires_at: (!ttl.is_zero()).then(|| now + ttl),
            full_ttl: ttl,
            renewable,
            capped: false,
        }
    }

    /// When to renew or replace it, given the operator's margin.
    pub fn act_at(&self, renew_before: Duration) -> Option<Instant> {
        let margin = renew_before.min(self.full_ttl / 2);
        self.expires_at.map(|e| e.checked_sub(margin).unwrap_or(e))
    }

    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|e| Instant::now() >= e)
    }
}
