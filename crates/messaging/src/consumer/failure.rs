//! How a failed message is classified (permanent, retryable, unavailable) and how panics
//! become failures; the rules are in the module docs of [`super`].

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;

use super::HandlerError;

/// Why a message was not applied, as the retry rules see it (see the module docs).
#[derive(Debug)]
pub(super) enum Failure {
    /// Dead-letter it now, with this reason.
    Permanent(String),
    /// Retry it, a bounded number of times.
    Retryable(String),
    /// The database is unavailable: retry without counting.
    Unavailable(String),
}

impl From<HandlerError> for Failure {
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::Permanent(reason) => Failure::Permanent(reason),
            HandlerError::Transient(source) => Failure::of(&*source),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::of(&e)
    }
}

impl Failure {
    /// Classifies an error by the first database error (or I/O error) in its source chain;
    /// an error without one (a typed conflict, a guard that failed) is retryable. The reason
    /// is the error's message with its causes, and the SQLSTATE when there is one.
    pub(super) fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        let reason = describe(error);
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(e) = e.downcast_ref::<sqlx::Error>() {
                return match e {
                    sqlx::Error::Database(db) => Self::of_sqlstate(db.code().as_deref(), reason),
                    sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed => Self::Unavailable(reason),
                    // The message's values do not fit their SQL types: they never will.
                    sqlx::Error::Encode(_) => Self::Permanent(reason),
                    _ => Self::Retryable(reason),
                };
            }
            // A handler's error that wraps an `sqlx::Error` transparently (thiserror's
            // `#[error(transparent)]`) skips it in the chain and shows its source directly:
            // the boxed database error.
            if let Some(db) = e.downcast_ref::<Box<dyn sqlx::error::DatabaseError>>() {
                return Self::of_sqlstate(db.code().as_deref(), reason);
            }
            if let Some(db) = e.downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                return Self::of_sqlstate(Some(db.code()), reason);
            }
            if e.is::<std::io::Error>() {
                return Self::Unavailable(reason);
            }
            next = e.source();
        }
        Self::Retryable(reason)
    }

    fn of_sqlstate(code: Option<&str>, reason: String) -> Self {
        let Some(code) = code else {
            return Self::Retryable(reason);
        };
        let reason = format!("{reason} (SQLSTATE {code})");
        match code {
            // Another transaction won a race on the same key; a retry reads again.
            "23505" | "23P01" => Self::Retryable(reason),
            _ if code.starts_with("22") || code.starts_with("23") => Self::Permanent(reason),
            "57P01" | "57P02" | "57P03" => Self::Unavailable(reason),
            _ if code.starts_with("08") || code.starts_with("53") || code.starts_with("58") => {
                Self::Unavailable(reason)
            }
            _ => Self::Retryable(reason),
        }
    }
}

/// Runs `work`, turning a panic anywhere in it into a permanent failure. The handler's own
/// panics are caught closer ([`Shared::handle`](super::group_commit), which rolls back and keeps the connection);
/// this catches the rest, e.g. in the code that names a message's span. An open transaction
/// dropped by the unwinding closes its connection, so the server rolls it back.
pub(super) async fn catch_panic<T>(
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let reason = format!("consumer panicked: {}", panic_message(panic.as_ref()));
            tracing::error!(%reason, "panic while applying messages; rolled back");
            Err(Failure::Permanent(reason))
        })
}

/// An error's message followed by those of its causes that it does not already include.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        next = cause.source();
    }
    text
}

/// The message a panic was raised with (`panic!` gives a `&str` or a `String`).
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "(no message)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler's own error type around `sqlx::Error`, as stock's and payment's are.
    #[derive(Debug, thiserror::Error)]
    enum Wrapped {
        #[error(transparent)]
        Database(#[from] sqlx::Error),
    }

    fn class(failure: &Failure) -> &'static str {
        match failure {
            Failure::Permanent(_) => "permanent",
            Failure::Retryable(_) => "retryable",
            Failure::Unavailable(_) => "unavailable",
        }
    }

    #[tokio::test]
    async fn database_errors_are_classified_by_sqlstate_however_wrapped() {
        let db = test_support::TestDatabase::create().await.unwrap();
        sqlx::query(
            "CREATE TABLE t (k int PRIMARY KEY, v int NOT NULL CHECK (v >= 0), s numeric(4,2))",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO t VALUES (1, 1, 1)")
            .execute(&db.pool)
            .await
            .unwrap();
        let cases = [
            ("SELECT 1 / 0", "permanent"),
            ("SELECT 'x'::int", "permanent"),
            ("INSERT INTO t VALUES (2, 1, 100)", "permanent"),
            ("INSERT INTO t VALUES (2, -1, 1)", "permanent"),
            ("INSERT INTO t VALUES (2, NULL, 1)", "permanent"),
            ("INSERT INTO t VALUES (1, 1, 1)", "retryable"),
            ("SELECT * FROM missing", "retryable"),
        ];
        for (sql, expected) in cases {
            let e = sqlx::query(sql).execute(&db.pool).await.unwrap_err();
            let wrapped = HandlerError::Transient(Box::new(Wrapped::from(
                sqlx::query(sql).execute(&db.pool).await.unwrap_err(),
            )));
            let direct = Failure::from(e);
            assert_eq!(class(&direct), expected, "{sql}: {direct:?}");
            let wrapped = Failure::from(wrapped);
            assert_eq!(class(&wrapped), expected, "{sql} wrapped: {wrapped:?}");
        }
        let Failure::Permanent(reason) = Failure::from(
            sqlx::query("SELECT 1 / 0")
                .execute(&db.pool)
                .await
                .unwrap_err(),
        ) else {
            panic!("division by zero is permanent")
        };
        assert!(
            reason.contains("division by zero (SQLSTATE 22012)"),
            "{reason}"
        );
        db.drop_now().await.unwrap();
    }

    #[test]
    fn other_errors_are_classified_by_kind() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let cases = [
            (Failure::from(sqlx::Error::PoolTimedOut), "unavailable"),
            (Failure::from(sqlx::Error::Io(io())), "unavailable"),
            (
                Failure::from(HandlerError::Transient(Box::new(Wrapped::from(
                    sqlx::Error::Io(io()),
                )))),
                "unavailable",
            ),
            (
                Failure::from(sqlx::Error::Encode("out of range".into())),
                "permanent",
            ),
            (
                Failure::from(HandlerError::Transient("lost a race".into())),
                "retryable",
            ),
            (
                Failure::from(HandlerError::Permanent("bad".into())),
                "permanent",
            ),
        ];
        for (failure, expected) in cases {
            assert_eq!(class(&failure), expected, "{failure:?}");
        }
    }

    #[test]
    fn a_panic_message_is_read_from_either_payload() {
        let text = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(text.as_ref()), "static");
        let n = 7;
        let formatted = std::panic::catch_unwind(|| panic!("n = {n}")).unwrap_err();
        assert_eq!(panic_message(formatted.as_ref()), "n = 7");
    }
}
