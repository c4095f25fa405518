//! `shop COMPONENT`: runs one component of the system in this process. `./dev up` starts one
//! process per component; each can be stopped, killed and restarted on its own.

#[cfg(test)]
mod boundaries;

use anyhow::Context;
use messaging::consumer::Handler;
use platform::Settings;
use platform::shutdown::Shutdown;
use service::{Definition, Service};

const USAGE: &str = "usage: shop COMPONENT

components:
  order      the order service: HTTP API, event store, outbox relay, saga consumer and deadline
  stock      the stock service: reservations, outbox relay, consumer
  payment    the payment service: credit and payments, outbox relay, consumer
  gateway    the one entry point on :8080, forwarding /api to the components
  projections  the read models (Redis, MongoDB) and the reports API
  projections rebuild [redis|mongodb]
             wipe and rebuild the read models from the order event store, live
  token ROLE [UUID]
             print a bearer token (one hour) for ROLE (customer, viewer or ops), signed with
             the local private key; with no UUID a new customer id is made
  login-url [NAME]
             print a one-time sign-in link to the console for operator NAME (default:
             $USER), valid for an hour, signed with the local private key

Settings come from SHOP_* variables (see crates/platform/src/settings.rs).";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let component = std::env::args().nth(1).unwrap_or_default();
    if matches!(component.as_str(), "" | "-h" | "--help" | "help") {
        println!("{USAGE}");
        return Ok(());
    }
    let settings = Settings::load().context("loading settings")?;
    if component == "token" {
        // Before telemetry: standard output carries the token and nothing else.
        return token(&settings);
    }
    if component == "login-url" {
        return login_url(&settings);
    }
    platform::telemetry::init_component(&settings.telemetry, &component);

    let (trigger, shutdown) = platform::shutdown::channel();
    tokio::spawn(async move {
        platform::shutdown::signal().await;
        tracing::info!("shutdown requested");
        trigger.fire();
    });

    let (http, db) = (&settings.http, &settings.postgres.databases);
    let result = match component.as_str() {
        "order" => {
            let definition = order::definition(&db.order, http.order_port);
            let deadline = order::deadline::DeadlineConfig::from_settings(&settings.saga);
            let component = order::Component::build(&settings, definition, deadline).await?;
            tracing::info!(address = %component.address()?, "listening");
            component.run(shutdown).await
        }
        "stock" => {
            let definition = stock::definition(&settings, &db.stock, http.stock_port);
            serve(&settings, definition, shutdown).await
        }
        "payment" => {
            let definition = payment::definition(&settings, &db.payment, http.payment_port);
            serve(&settings, definition, shutdown).await
        }
        "gateway" => gateway(&settings, shutdown).await,
        "projections" => match std::env::args().nth(2).as_deref() {
            None => projections(&settings, shutdown).await,
            Some("rebuild") => {
                let targets =
                    projections::rebuild::Targets::parse(std::env::args().nth(3).as_deref())?;
                let done = projections::rebuild::run(&settings, &db.order, targets).await?;
                println!("rebuilt: {done:?}");
                Ok(())
            }
            Some(other) => anyhow::bail!("unknown projections command {other:?}\n\n{USAGE}"),
        },
        other => anyhow::bail!("unknown component {other:?}\n\n{USAGE}"),
    };
    if let Err(e) = &result {
        tracing::error!(component, error = ?e, "stopped with an error");
    }
    platform::telemetry::shutdown();
    result
}

/// `shop token ROLE [UUID]`: prints one token on standard output.
fn token(settings: &Settings) -> anyhow::Result<()> {
    use platform::auth::{Role, Signer};
    let role = std::env::args().nth(2).unwrap_or_default();
    let role = Role::parse(&role)
        .with_context(|| format!("unknown role {role:?}: customer, viewer or ops\n\n{USAGE}"))?;
    let subject = match std::env::args().nth(3) {
        Some(id) => uuid::Uuid::parse_str(&id).with_context(|| format!("{id:?} is not a UUID"))?,
        None => uuid::Uuid::new_v4(),
    };
    let signer = Signer::from_settings(&settings.auth).context("loading the signing key")?;
    let token = signer.token(subject, &[role], std::time::Duration::from_secs(3600))?;
    println!("{token}");
    Ok(())
}

/// `shop login-url [NAME]`: prints a console sign-in link with an `ops` token for NAME. The
/// token's `jti` makes the link good for one sign-in (`console::session`).
fn login_url(settings: &Settings) -> anyhow::Result<()> {
    use platform::auth::{Role, Signer};
    let name = std::env::args()
        .nth(2)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".to_owned());
    let signer = Signer::from_settings(&settings.auth).context("loading the signing key")?;
    let token = signer.token_for(&name, &[Role::Ops], std::time::Duration::from_secs(3600))?;
    let host = match settings.http.gateway_host.as_str() {
        "0.0.0.0" | "::" => "127.0.0.1",
        host => host,
    };
    println!(
        "http://{host}:{}/console/login?token={token}",
        settings.http.gateway_port
    );
    Ok(())
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
    let rest = std::time::Duration::from_millis(settings.gateway.unreachable_rest_ms);
    let mut routes = gateway::routes_with(gateway::Upstreams::from_settings(settings), rest)?;
    // The console is served by the entry point, from this process (`console` says why).
    if settings.console.enabled {
        let console = console::Console::build(settings).await?;
        routes = routes.merge(console.routes());
    } else {
        tracing::info!("the console is off (SHOP_CONSOLE__ENABLED=false)");
    }
    // The entry point listens where clients reach it; the components stay on `http.host`.
    let mut http = settings.http.clone();
    http.host.clone_from(&settings.http.gateway_host);
    let server = platform::http::Server::bind(&http, settings.http.gateway_port, routes).await?;
    tracing::info!(address = %server.address()?, "listening");
    Ok(server.run(shutdown).await?)
}

async fn projections(settings: &Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let component =
        projections::Projections::build(settings, settings.http.projections_port).await?;
    tracing::info!(address = %component.address()?, "listening");
    component.run(shutdown).await
}
