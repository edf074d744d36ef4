//! Signals: SIGTERM and SIGINT stop the node gracefully (a drain first, see
//! `Node::run_until`; a second one during the drain delay cuts it short);
//! SIGHUP reloads; SIGUSR1 drains without stopping (`cmx-kms drain`) and
//! SIGUSR2 ends that drain (`cmx-kms drain --resume`).
//!
//! `serve` and `dev` hold these signals from their first step ([`hold`])
//! until their handlers are installed ([`install`]): the default action of
//! each would end the process, and a SIGHUP from logrotate can meet a node
//! that is starting. One that comes meanwhile waits, and the running node
//! answers it.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{SigSet, SigmaskHow, Signal as Number, pthread_sigmask};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use crate::readiness::Readiness;

/// The signals a node answers, with their names for the log.
const ANSWERED: [(Number, &str); 5] = [
    (Number::SIGHUP, "SIGHUP"),
    (Number::SIGTERM, "SIGTERM"),
    (Number::SIGINT, "SIGINT"),
    (Number::SIGUSR1, "SIGUSR1"),
    (Number::SIGUSR2, "SIGUSR2"),
];

/// Hold the signals a node answers on this thread and every thread it starts
/// from now on (the runtime's): they stay pending instead of ending the
/// process. `cli::main` calls it first of all for `serve` and `dev`, on the
/// thread that later calls [`install`]; logging is not set up yet, so the
/// caller logs an error.
pub fn hold() -> nix::Result<()> {
    let set: SigSet = ANSWERED.iter().map(|(n, _)| *n).collect();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
}

/// The handlers [`install`] made, for a node to answer with.
#[derive(Debug, Default)]
pub struct Handlers {
    pub(super) hup: Option<Signal>,
    pub(super) usr1: Option<Signal>,
    pub(super) usr2: Option<Signal>,
}

/// SIGTERM or SIGINT, installed by [`install`]: the first stops the node.
#[derive(Debug)]
pub struct Stop {
    term: Option<Signal>,
    int: Option<Signal>,
}

impl Stop {
    /// Resolves on the first SIGTERM or SIGINT (also one that came before).
    pub async fn signalled(self) {
        stopped(self.term, self.int).await;
    }
}

/// Install the handlers of every signal a node answers, then let in on this
/// thread (the one that called [`hold`]) those that now have one: a signal
/// held since the start is delivered now and waits in its handler until the
/// node answers it. One whose handler cannot be installed stays held, that
/// is ignored, rather than ending the process. Call within the runtime.
pub fn install() -> (Handlers, Stop) {
    let mut installed = SigSet::empty();
    let mut take = |(number, name): (Number, &str), kind: SignalKind| match signal(kind) {
        Ok(s) => {
            installed.add(number);
            Some(s)
        }
        Err(e) => {
            tracing::error!(signal = name, error = %e, "cannot install the signal handler: the signal is ignored");
            None
        }
    };
    let [hup, term, int, usr1, usr2] = ANSWERED;
    let handlers = Handlers {
        hup: take(hup, SignalKind::hangup()),
        usr1: take(usr1, SignalKind::user_defined1()),
        usr2: take(usr2, SignalKind::user_defined2()),
    };
    let stop = Stop {
        term: take(term, SignalKind::terminate()),
        int: take(int, SignalKind::interrupt()),
    };
    if let Err(e) = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&installed), None) {
        tracing::error!(error = %e, "cannot let signals in after start: reload, drain and stop need SIGKILL and a restart");
    }
    (handlers, stop)
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown() {
    stopped(
        signal(SignalKind::terminate()).ok(),
        signal(SignalKind::interrupt()).ok(),
    )
    .await;
}

async fn stopped(term: Option<Signal>, int: Option<Signal>) {
    if term.is_none() && int.is_none() {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
    }
    tokio::select! {
        () = next(term) => tracing::info!("SIGTERM: shutting down"),
        () = next(int) => tracing::info!("SIGINT: shutting down"),
    }
}

/// The next delivery of `s`; never without a handler.
async fn next(s: Option<Signal>) {
    if let Some(mut s) = s
        && s.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}

/// After a log rotation moved the audit file away, go on in a new file at
/// its path (whether or not the configuration then reloads).
async fn reopen_audit(reloader: &super::Reloader) {
    let Some(audit) = &reloader.app.audit else {
        return;
    };
    use crate::audit::Reopened;
    match audit.reopen_if_moved().await {
        Ok(Reopened::Same) => {}
        Ok(Reopened::Continued) => tracing::info!(
            path = %audit.path().display(),
            "the audit file was moved away: records go on in a new file at its path, chained to the last record of the old one"
        ),
        Ok(Reopened::Saved { saved, bytes }) => tracing::warn!(
            path = %audit.path().display(),
            saved = %saved.display(),
            bytes,
            "the audit file was deleted, or moved to another file system (which copies it and deletes the original), \
             before the reload: the records written since were only in the deleted file. Its whole content is saved \
             in `saved`: keep that file in place of any copy (it holds every record the copy has, and the later ones). \
             Records go on in a new file at the path, chained to it. Rename audit files within their file system"
        ),
        Ok(Reopened::NotSaved { tried, reason }) => tracing::error!(
            path = %audit.path().display(),
            tried = %tried.display(),
            error = %reason,
            "the audit file was deleted, or moved to another file system, before the reload, and its content could \
             not be saved: the records written into it since it was deleted are lost (`cmx-kms audit verify` shows \
             the gap). Records go on in a new file at the path. Rename audit files within their file system"
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot go on in a new audit file; records go on in the file moved away")
        }
    }
}

/// Reload the configuration on every SIGHUP (`systemctl reload`), forever;
/// with `hup` from [`install`], or a handler installed now.
pub async fn reload_on_sighup(reloader: super::Reloader, hup: Option<Signal>) {
    let Some(mut hup) = hup.or_else(|| signal(SignalKind::hangup()).ok()) else {
        tracing::error!("cannot install the SIGHUP handler; reloads need a restart");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading configuration");
        crate::notify::reloading();
        reopen_audit(&reloader).await;
        // Keystore decoding (PBKDF2) and backend set-up block: keep them off
        // the workers that serve requests.
        let r = reloader.clone();
        let outcome = tokio::task::spawn_blocking(move || r.reload())
            .await
            .unwrap_or_else(|e| Err(e.into()));
        match outcome {
            Ok(()) => {
                reloader.metrics().reload(true);
                crate::notify::ready("configuration reloaded");
            }
            Err(e) => {
                reloader.metrics().reload(false);
                log_failure(&e);
                crate::notify::ready("reload failed; serving with the previous configuration");
            }
        }
    }
}

/// A failed reload: one line, or a line and then one per problem (a broken
/// file has several), each value escaped by the log writer.
fn log_failure(e: &super::StartError) {
    let problems = e.problems();
    if let [only] = problems.as_slice() {
        tracing::error!(error = %only, "reload failed; still serving with the previous configuration");
        return;
    }
    let n = problems.len();
    tracing::error!(
        problems = n,
        "reload failed; still serving with the previous configuration"
    );
    for (i, p) in problems.iter().enumerate() {
        tracing::error!(error = %p, "reload problem {} of {n}", i + 1);
    }
}

/// A drain on request, forever: on SIGUSR1 report `draining` to every
/// readiness check (balancers take the node out) and, `delay` later (the
/// balancer's `inter × fall`), retire open keep-alive connections through
/// `retire` so their clients reconnect through the balancer to other nodes;
/// the node keeps serving whoever still comes. SIGUSR2 ends it: ready again,
/// connections kept open again. A stop (SIGTERM) cannot be resumed.
pub async fn drain_on_request(
    readiness: Arc<Readiness>,
    retire: watch::Sender<bool>,
    delay: Duration,
    handlers: (Option<Signal>, Option<Signal>),
) {
    let (Some(mut usr1), Some(mut usr2)) = (
        handlers
            .0
            .or_else(|| signal(SignalKind::user_defined1()).ok()),
        handlers
            .1
            .or_else(|| signal(SignalKind::user_defined2()).ok()),
    ) else {
        tracing::error!(
            "cannot install the SIGUSR1/SIGUSR2 handlers; `cmx-kms drain` will not work"
        );
        return;
    };
    let resume = |why: &str| {
        if readiness.resume() {
            let _ = retire.send(false);
            crate::notify::ready("drain ended; serving");
            tracing::info!("{why}: drain ended; the node reports ready again");
        } else {
            tracing::info!("{why}: the node is stopping; a stop's drain cannot be ended");
        }
    };
    loop {
        tokio::select! {
            Some(()) = usr1.recv() => {
                if readiness.is_draining() {
                    tracing::info!("SIGUSR1: already draining");
                    continue;
                }
                readiness.set_draining();
                crate::notify::status("draining on request");
                tracing::info!(
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "SIGUSR1: draining on request: the health check reports draining; \
                     keep-alive connections are closed when the delay ends; still serving"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {
                        if readiness.is_draining() {
                            let _ = retire.send(true);
                            tracing::info!("drained: keep-alive connections now close between requests");
                        }
                    }
                    Some(()) = usr2.recv() => resume("SIGUSR2"),
                }
            }
            Some(()) = usr2.recv() => resume("SIGUSR2"),
            else => return,
        }
    }
}
