//! `shop COMPONENT`: runs one component of the system in this process. `./dev up` starts one
//! process per component; each can be stopped, killed and restarted on its own.

use anyhow::Context;
use platform::Settings;

const USAGE: &str = "usage: shop COMPONENT

components:
  order    the order service: HTTP API, event store, outbox";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let component = std::env::args().nth(1).unwrap_or_default();
    let settings = Settings::load().context("loading settings")?;
    platform::telemetry::init(&settings.telemetry);

    let (trigger, shutdown) = platform::shutdown::channel();
    tokio::spawn(async move {
        platform::shutdown::signal().await;
        tracing::info!("shutdown requested");
        trigger.fire();
    });

    match component.as_str() {
        "order" => {
            let app = order::startup::Application::build(
                &settings,
                order::DATABASE,
                settings.http.order_port,
            )
            .await?;
            tracing::info!(address = %app.address()?, "order service listening");
            app.run(shutdown).await
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => anyhow::bail!("unknown component {other:?}\n\n{USAGE}"),
    }
}
