//! A standalone outbox relay: `outbox-relay DATABASE` (or `SHOP_RELAY_DATABASE=…`).
//!
//! Services run their relay in-process; this binary exists so one can run on its own (and be
//! SIGKILLed in fault drills). Server addresses come from the usual `SHOP_*` settings;
//! `SHOP_RELAY_BATCH_SIZE` overrides the batch size, `SHOP_RELAY_LEASE_TTL_MS` the lease's TTL.

use anyhow::Context;
use messaging::{Relay, RelayConfig};
use platform::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("loading settings")?;
    platform::telemetry::init(&settings.telemetry);
    let database = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SHOP_RELAY_DATABASE").ok())
        .context("usage: outbox-relay DATABASE (or set SHOP_RELAY_DATABASE)")?;
    let mut config = RelayConfig::default();
    if let Ok(size) = std::env::var("SHOP_RELAY_BATCH_SIZE") {
        config.batch_size = size.parse().context("SHOP_RELAY_BATCH_SIZE")?;
    }
    if let Ok(ttl) = std::env::var("SHOP_RELAY_LEASE_TTL_MS") {
        config.lease_ttl =
            std::time::Duration::from_millis(ttl.parse().context("SHOP_RELAY_LEASE_TTL_MS")?);
    }
    let pool = platform::postgres::connect(&settings.postgres, &database)
        .await
        .with_context(|| format!("connecting to database {database}"))?;
    let relay = Relay::new(&settings.kafka, pool, config)?;

    let (trigger, shutdown) = platform::shutdown::channel();
    tokio::spawn(async move {
        platform::shutdown::signal().await;
        trigger.fire();
    });
    tracing::info!(%database, "outbox relay started");
    relay.run(shutdown).await;
    tracing::info!("outbox relay stopped");
    Ok(())
}
