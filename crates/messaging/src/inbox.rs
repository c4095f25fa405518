//! The consumer's transactions: `BEGIN` and the inbox insert in one round trip, on connections
//! the consumer keeps between transactions.
//!
//! Besides its handler's statements, a consumer transaction through sqlx's pool and
//! `Transaction` costs three round trips: `BEGIN` on its own, the inbox insert, and the ping
//! the pool sends when the connection comes back after `COMMIT`. At low load a transaction
//! carries one message and its handler two to four statements, so those three are a good part
//! of the work of each saga step, for PostgreSQL and for the service alike. Here:
//!
//! - `BEGIN` and the inbox insert travel as one simple query. The simple protocol has no
//!   parameters, so the values are written into the SQL text: the message ids are [`Uuid`]s,
//!   printed by `uuid` itself, and the consumer's name is quoted as a string literal.
//! - The connection stays with the consumer when the transaction ends ([`Connections`]), so
//!   nothing follows the `COMMIT`. A connection that sat idle for a while is pinged before it is
//!   used, as the services' pools do (`platform::postgres::connect`).
//!
//! The transaction is this module's to end: [`Transaction::commit`] or
//! [`Transaction::rollback`]. A transaction dropped without either (its future cancelled at
//! shutdown, an error on the way out) closes its connection, which makes the server roll back;
//! a connection is only reused once its transaction ended cleanly.

use std::collections::HashSet;
use std::fmt::Write as _;

use platform::postgres::PING_IF_IDLE_FOR;
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};
use tokio::time::Instant;
use uuid::Uuid;

/// The connections of one consumer's transactions: at most one per transaction running at
/// once (the consumer's permits bound that), each opened with the pool's options.
pub(crate) struct Connections {
    pool: PgPool,
    idle: std::sync::Mutex<Vec<(PgConnection, Instant)>>,
}

impl Connections {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            idle: std::sync::Mutex::default(),
        }
    }

    /// An idle connection of this consumer, or a new one. One that sat idle longer than
    /// [`PING_IF_IDLE_FOR`] is pinged first (its server may have restarted) and replaced if it
    /// does not answer.
    async fn take(&self) -> Result<PgConnection, sqlx::Error> {
        let idle = self.idle().pop();
        if let Some((mut conn, since)) = idle {
            if since.elapsed() <= PING_IF_IDLE_FOR || conn.ping().await.is_ok() {
                return Ok(conn);
            }
        }
        PgConnection::connect_with(&self.pool.connect_options()).await
    }

    fn keep(&self, conn: PgConnection) {
        self.idle().push((conn, Instant::now()));
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, Instant)>> {
        // Held only to push or pop: a panic cannot leave the list half-changed.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An open transaction of a consumer, with the inbox rows of its messages inserted.
pub(crate) struct Transaction<'a> {
    /// `None` once the transaction ended.
    conn: Option<PgConnection>,
    home: &'a Connections,
    /// The message ids that had no inbox row: the messages to apply.
    pub(crate) fresh: HashSet<Uuid>,
}

impl<'a> Transaction<'a> {
    /// Begins a transaction and records `ids` in the inbox of `consumer`, in one round trip.
    /// Ids that already had a row (messages applied before) are not in [`Transaction::fresh`].
    pub(crate) async fn begin(
        home: &'a Connections,
        consumer: &str,
        ids: &[Uuid],
    ) -> Result<Self, sqlx::Error> {
        let mut tx = Self {
            conn: Some(home.take().await?),
            home,
            fresh: HashSet::new(),
        };
        let sql = begin_sql(consumer, ids);
        // A `&str` has no arguments: sqlx sends it as one simple query, both statements.
        let inserted = tx.conn().fetch_all(sql.as_str()).await;
        match inserted.and_then(|rows| rows.iter().map(|r| r.try_get::<Uuid, _>(0)).collect()) {
            Ok(fresh) => {
                tx.fresh = fresh;
                Ok(tx)
            }
            Err(e) => {
                // The `BEGIN` may have run: end the block before the connection is reused.
                tx.rollback().await;
                Err(e)
            }
        }
    }

    /// The transaction's connection, for the handler's statements.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("a transaction has its connection until it ends")
    }

    /// Commits. On an error the outcome is unknown (the commit may have happened) and the
    /// connection is closed; the caller's retry finds out through the inbox.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.conn().execute("COMMIT").await?;
        self.end();
        Ok(())
    }

    /// Ends the transaction as `outcome` says: commits after `Ok`, rolls back after an error,
    /// which it returns.
    pub(crate) async fn end_with<E: From<sqlx::Error>>(
        self,
        outcome: Result<(), E>,
    ) -> Result<(), E> {
        match outcome {
            Ok(()) => Ok(self.commit().await?),
            Err(e) => {
                self.rollback().await;
                Err(e)
            }
        }
    }

    /// Rolls back; the connection is kept only if the server confirmed it.
    pub(crate) async fn rollback(mut self) {
        if self.conn().execute("ROLLBACK").await.is_ok() {
            self.end();
        }
    }

    /// The transaction ended cleanly: its connection serves the next one.
    fn end(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.home.keep(conn);
        }
    }
}

/// `BEGIN` and the inbox insert as one simple query.
fn begin_sql(consumer: &str, ids: &[Uuid]) -> String {
    let consumer = quote(consumer);
    let mut sql = String::with_capacity(100 + ids.len() * (consumer.len() + 45));
    sql.push_str("BEGIN; INSERT INTO inbox (consumer, message_id) VALUES ");
    for (i, id) in ids.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        // Writing to a String cannot fail.
        let _ = write!(sql, "{comma}({consumer},'{id}')");
    }
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING message_id");
    sql
}

/// A string literal of `text`. The services' sessions keep `standard_conforming_strings` on
/// (the default since PostgreSQL 9.1), so doubling the quotes is all the escaping there is.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use sqlx::migrate::Migrator;
    use test_support::TestDatabase;

    use super::*;

    async fn database() -> TestDatabase {
        let db = TestDatabase::create().await.unwrap();
        crate::migrator(&Migrator::DEFAULT)
            .run(&db.pool)
            .await
            .unwrap();
        db
    }

    /// A transaction for one new message id, with the pid of its connection's backend.
    async fn begin_one(connections: &Connections) -> (Transaction<'_>, i32) {
        let mut tx = Transaction::begin(connections, "c", &[Uuid::new_v4()])
            .await
            .unwrap();
        let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(tx.conn())
            .await
            .unwrap();
        (tx, pid)
    }

    async fn inbox_rows(pool: &PgPool) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM inbox")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn only_ids_without_an_inbox_row_are_fresh() {
        let db = database().await;
        let connections = Connections::new(db.pool.clone());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());

        let tx = Transaction::begin(&connections, "c", &[a, a])
            .await
            .unwrap();
        assert_eq!(tx.fresh, HashSet::from([a]), "an id twice in one batch");
        tx.commit().await.unwrap();

        let tx = Transaction::begin(&connections, "c", &[a, b])
            .await
            .unwrap();
        assert_eq!(tx.fresh, HashSet::from([b]));
        tx.rollback().await;
        assert_eq!(
            inbox_rows(&db.pool).await,
            1,
            "a rolled-back insert leaves no row"
        );

        let tx = Transaction::begin(&connections, "o'other", &[a])
            .await
            .unwrap();
        assert_eq!(
            tx.fresh,
            HashSet::from([a]),
            "each consumer has its own inbox"
        );
        tx.commit().await.unwrap();
        db.drop_now().await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_statement_rolled_back_leaves_the_connection_usable() {
        let db = database().await;
        let connections = Connections::new(db.pool.clone());

        let (mut tx, first) = begin_one(&connections).await;
        let failed = sqlx::query("SELECT 1 / 0").execute(tx.conn()).await;
        assert!(failed.is_err());
        tx.rollback().await;

        let (tx, next) = begin_one(&connections).await;
        assert_eq!(next, first, "the connection was kept");
        tx.commit().await.unwrap();
        assert_eq!(inbox_rows(&db.pool).await, 1);
        db.drop_now().await.unwrap();
    }

    #[tokio::test]
    async fn a_transaction_dropped_midway_commits_nothing_and_its_connection_is_not_reused() {
        let db = database().await;
        let connections = Connections::new(db.pool.clone());

        let (tx, first) = begin_one(&connections).await;
        drop(tx);

        let (tx, next) = begin_one(&connections).await;
        assert_ne!(next, first);
        tx.commit().await.unwrap();
        assert_eq!(inbox_rows(&db.pool).await, 1);
        db.drop_now().await.unwrap();
    }

    #[test]
    fn the_begin_statement_lists_every_id_once() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_eq!(
            begin_sql("stock", &[a, b]),
            "BEGIN; INSERT INTO inbox (consumer, message_id) VALUES \
             ('stock','00000000-0000-0000-0000-000000000001'),\
             ('stock','00000000-0000-0000-0000-000000000002') \
             ON CONFLICT DO NOTHING RETURNING message_id"
        );
    }

    #[test]
    fn quotes_in_a_name_are_doubled() {
        assert_eq!(quote("o'brien"), "'o''brien'");
    }
}
