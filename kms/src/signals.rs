//! Signals: SIGTERM and SIGINT stop the node gracefully (a drain first, see
//! `Node::run_until`; a second one during the drain delay cuts it short);
//! SIGHUP reloads.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown() {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = i.recv() => tracing::info!("SIGINT: shutting down"),
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Reload the configuration on every SIGHUP (`systemctl reload`), forever.
pub async fn reload_on_sighup(reloader: crate::node::Reloader) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reloads need a restart");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading configuration");
        crate::notify::reloading();
        // Keystore decoding (PBKDF2) and backend set-up block: keep them off
        // the workers that serve requests.
        let r = reloader.clone();
        let outcome = tokio::task::spawn_blocking(move || r.reload())
            .await
            .unwrap_or_else(|e| {
                Err(crate::node::StartError::Config(format!(
                    "reload task failed: {e}"
                )))
            });
        match outcome {
            Ok(()) => {
                reloader.metrics().reload(true);
                crate::notify::ready("configuration reloaded");
            }
            Err(e) => {
                reloader.metrics().reload(false);
                tracing::error!(error = %e, "reload failed; still serving with the previous configuration");
                crate::notify::ready("reload failed; serving with the previous configuration");
            }
        }
    }
}
