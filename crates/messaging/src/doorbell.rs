//! How a writer tells the relay that outbox rows committed, without a `NOTIFY` in its
//! transaction.
//!
//! # Why not a trigger
//!
//! The outbox used to wake its relay with a `NOTIFY` sent by a trigger. PostgreSQL serialises the
//! commits of every transaction that notifies, across the whole server, until each one's WAL
//! flush ended (it queues notifications in commit order under one lock). With every outbox write
//! notifying, the services' commits queued one behind the other, group commit never happened,
//! and a committer that lost its CPU for a moment stalled everyone: at 420 orders/s up to 14
//! backends were seen waiting on that lock at once.
//!
//! # What rings instead
//!
//! A writer rings its process's [`Doorbell`] once its transaction committed. When the relay of
//! this process holds the lease (one instance per service, the usual case) the ring wakes it
//! directly, in memory. Otherwise (another instance's relay, or a standalone `outbox-relay`,
//! holds the lease) the ring is forwarded as a `NOTIFY outbox` of its own, after the writer's
//! commit, in a transaction that writes nothing and does not wait for the WAL flush. Rings that
//! come while a notification is on its way are folded into the next one.
//!
//! A ring is only a hint: the relay also polls, so a lost ring (the lease moved between the ring
//! and its delivery, a dropped connection) delays a message by at most the poll interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use platform::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::sync::Notify;

/// The channel the relays listen on.
pub(crate) const CHANNEL: &str = "outbox";

/// Rung by whoever commits outbox rows in this process; answered by the relay. Cheap to clone.
#[derive(Clone)]
pub struct Doorbell {
    shared: Arc<Shared>,
}

struct Shared {
    pool: PgPool,
    /// Whether the relay of this process holds the lease.
    relay_here: AtomicBool,
    /// Wakes the relay of this process.
    local: Notify,
    /// Wakes the task that forwards rings to other processes' relays.
    remote: Notify,
}

impl Doorbell {
    /// A doorbell for the outbox in `pool`'s database.
    pub fn new(pool: PgPool) -> Self {
        Self {
            shared: Arc::new(Shared {
                pool,
                relay_here: AtomicBool::new(false),
                local: Notify::new(),
                remote: Notify::new(),
            }),
        }
    }

    /// Call after a transaction that wrote outbox rows committed (never before: the relay may
    /// read at once, and must see the rows).
    pub fn ring(&self) {
        if self.shared.relay_here.load(Ordering::Acquire) {
            self.shared.local.notify_one();
        } else {
            self.shared.remote.notify_one();
        }
    }

    /// Set by the relay of this process as it takes or loses the lease.
    pub(crate) fn set_relay_here(&self, holds_lease: bool) {
        self.shared.relay_here.store(holds_lease, Ordering::Release);
    }

    /// Resolves at the next ring for this process's relay, or at once for a ring that came
    /// while nobody waited.
    pub(crate) async fn rung(&self) {
        self.shared.local.notified().await;
    }

    /// Forwards rings that this process's relay cannot answer to the relay that holds the
    /// lease, until shutdown. The relay runs it beside itself.
    pub(crate) async fn forward(self, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = self.shared.remote.notified() => {}
                () = shutdown.requested() => return,
            }
            // `set_config(…, true)` lasts for this statement's own transaction: its commit
            // writes nothing worth waiting for, and so holds the notification lock only briefly.
            let sent = sqlx::query(
                "SELECT pg_notify($1, ''), set_config('synchronous_commit', 'off', true)",
            )
            .bind(CHANNEL)
            .execute(&self.shared.pool)
            .await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "forwarding an outbox ring failed; the relay's poll will find the rows");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::Doorbell;

    fn doorbell() -> Doorbell {
        // Never connects: these rings stay in memory.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool");
        Doorbell::new(pool)
    }

    #[tokio::test]
    async fn a_ring_wakes_this_process_relay_only_while_it_holds_the_lease() {
        let bell = doorbell();
        bell.ring();
        assert!(bell.rung().now_or_never().is_none(), "no lease: forwarded");
        assert!(bell.shared.remote.notified().now_or_never().is_some());

        bell.set_relay_here(true);
        bell.ring();
        bell.ring();
        assert!(bell.rung().now_or_never().is_some(), "kept for the relay");
        assert!(bell.rung().now_or_never().is_none(), "two rings, one wake");
        assert!(bell.shared.remote.notified().now_or_never().is_none());
    }
}
