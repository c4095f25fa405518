//! Logging set-up: `tracing` with an env filter, human-readable or JSON lines.

use tracing_subscriber::EnvFilter;

use crate::settings::TelemetrySettings;

/// Installs the global subscriber. `RUST_LOG` wins over the configured filter when set.
pub fn init(settings: &TelemetrySettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init` fails only if a subscriber is already installed (tests); that one stays.
    let _ = if settings.json_logs {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
