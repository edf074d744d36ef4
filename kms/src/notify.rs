//! systemd notifications (`Type=notify`) without libsystemd: `READY=1` once
//! the listener is bound and the config valid, `RELOADING=1`/`READY=1` around
//! reloads, `STOPPING=1` on shutdown, `WATCHDOG=1` when `WATCHDOG_USEC` is set,
//! and `STATUS=` lines. Without `NOTIFY_SOCKET` every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading configuration"),
    ];
    if let Ok(m) = NotifyState::monotonic_usec_now() {
        states.push(m);
    }
    send(&states);
}

pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining connections"),
    ]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Ping the watchdog at half its interval, forever, if systemd asked for it.
pub async fn watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return std::future::pending().await;
    };
    let period = (interval / 2).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}
