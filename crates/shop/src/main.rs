//! `shop COMPONENT`: runs one component of the system in this process. `./dev up` starts one
//! process per component; each can be stopped, killed and restarted on its own.

use anyhow::Context;
use messaging::consumer::Handler;
use messaging::service::{Definition, Service};
use platform::Settings;
use platform::shutdown::Shutdown;

const USAGE: &str = "usage: shop COMPONENT

components:
  order      the order service: HTTP API, event store, outbox relay, saga consumer
  stock      the stock service: reservations, outbox relay, consumer
  payment    the payment service: credit and payments, outbox relay, consumer
  gateway    the one entry point on :8080, forwarding /api to the components

Settings come from SHOP_* variables (see crates/platform/src/settings.rs).";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let component = std::env::args().nth(1).unwrap_or_default();
    if matches!(component.as_str(), "" | "-h" | "--help" | "help") {
        println!("{USAGE}");
        return Ok(());
    }
    let settings = Settings::load().context("loading settings")?;
    platform::telemetry::init(&settings.telemetry);

    let (trigger, shutdown) = platform::shutdown::channel();
    tokio::spawn(async move {
        platform::shutdown::signal().await;
        tracing::info!("shutdown requested");
        trigger.fire();
    });

    let http = &settings.http;
    let result = match component.as_str() {
        "order" => {
            serve(
                &settings,
                order::definition(order::DATABASE, http.order_port),
                shutdown,
            )
            .await
        }
        "stock" => {
            serve(
                &settings,
                stock::definition(&settings, stock::DATABASE, http.stock_port),
                shutdown,
            )
            .await
        }
        "payment" => {
            let definition = payment::definition(&settings, payment::DATABASE, http.payment_port);
            serve(&settings, definition, shutdown).await
        }
        "gateway" => gateway(&settings, shutdown).await,
        other => anyhow::bail!("unknown component {other:?}\n\n{USAGE}"),
    };
    if let Err(e) = &result {
        tracing::error!(component, error = ?e, "stopped with an error");
    }
    result
}

async fn serve<H: Handler>(
    settings: &Settings,
    definition: Definition<H>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let service = Service::build(settings, definition).await?;
    tracing::info!(address = %service.address()?, "listening");
    service.run(shutdown).await
}

async fn gateway(settings: &Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let routes = gateway::routes(gateway::Upstreams::from_settings(settings))?;
    let server =
        platform::http::Server::bind(&settings.http, settings.http.gateway_port, routes).await?;
    tracing::info!(address = %server.address()?, "listening");
    Ok(server.run(shutdown).await?)
}
