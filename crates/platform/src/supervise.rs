//! Running a component's parts (HTTP server, relay, consumer) side by side: they share one
//! shutdown, and a part that ends on its own (an error, a panic) stops the others, so the
//! process exits and its supervisor can restart it instead of limping on half alive.

use std::future::Future;
use std::pin::Pin;

use tokio::task::JoinSet;

use crate::shutdown::{self, Shutdown};

pub type Part = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Runs the parts built by `parts` until `shutdown` is requested or any part ends. Returns the
/// first error, if a part failed.
pub async fn run_until_stopped(
    mut shutdown: Shutdown,
    parts: impl FnOnce(Shutdown) -> Vec<(&'static str, Part)>,
) -> anyhow::Result<()> {
    let (trigger, inner) = shutdown::channel();
    let mut running = JoinSet::new();
    for (name, part) in parts(inner) {
        running.spawn(async move { (name, part.await) });
    }

    let mut stopping = false;
    let mut first_error: Option<anyhow::Error> = None;
    loop {
        tokio::select! {
            () = shutdown.requested(), if !stopping => {
                stopping = true;
                trigger.fire();
            }
            joined = running.join_next() => {
                let Some(joined) = joined else { break };
                let (name, result) = match joined {
                    Ok(done) => done,
                    Err(e) => ("a part", Err(anyhow::anyhow!("panicked: {e}"))),
                };
                match result {
                    Ok(()) if stopping => tracing::info!(part = name, "stopped"),
                    Ok(()) => tracing::error!(part = name, "ended on its own; stopping the rest"),
                    Err(e) => {
                        tracing::error!(part = name, error = ?e, "failed; stopping the rest");
                        first_error.get_or_insert(e.context(format!("{name} failed")));
                    }
                }
                if !stopping {
                    stopping = true;
                    trigger.fire();
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
