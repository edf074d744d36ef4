//! Logging to stderr (journald adds timestamps under systemd).

use tracing_subscriber::EnvFilter;

/// Initialise logging once. The filter comes from `CMX_KMS_LOG` (default
/// `info`); noisy dependencies are capped at `warn`.
pub fn init() {
    let filter = std::env::var("CMX_KMS_LOG").unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(format!("{filter},rustls=warn,hyper=warn,h2=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    let _ = if under_journald {
        builder.without_time().with_ansi(false).try_init()
    } else {
        builder.try_init()
    };
}
