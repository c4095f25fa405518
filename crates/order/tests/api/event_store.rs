//! The event store against the real PostgreSQL.

use std::collections::HashSet;
use std::time::Duration;

use order::event_store::{
    self, AppendError, EventMetadata, NewEvent, Position, Saga, StreamAppend,
};
use test_support::TestDatabase;
use uuid::Uuid;

async fn store() -> TestDatabase {
    let db = TestDatabase::create().await.unwrap();
    order::migrate(&db.pool).await.unwrap();
    db
}

fn event(n: i64) -> NewEvent {
    NewEvent {
        event_type: "Happened",
        schema_version: 1,
        payload: serde_json::json!({ "n": n }),
        metadata: EventMetadata {
            message_id: Uuid::now_v7(),
            correlation_id: Uuid::nil(),
            causation_id: None,
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        },
    }
}

#[tokio::test]
async fn appended_events_load_back_in_order_with_their_metadata() {
    let db = store().await;
    let stream = Uuid::new_v4();
    let first = [event(1), event(2)];
    let mut tx = db.pool.begin().await.unwrap();
    let recorded = event_store::append(&mut *tx, stream, 0, &first, &[])
        .await
        .unwrap();
    event_store::append(&mut *tx, stream, 2, &[event(3)], &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        recorded.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2]
    );

    let loaded = event_store::load(&db.pool, stream).await.unwrap();
    assert_eq!(
        loaded.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(loaded[2].payload, serde_json::json!({ "n": 3 }));
    assert_eq!(loaded[0].metadata.0, first[0].metadata);
    assert_eq!(loaded[0], recorded[0]);
    assert!(
        event_store::load(&db.pool, Uuid::new_v4())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn several_streams_append_in_one_statement_or_not_at_all() {
    let db = store().await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    event_store::append(&db.pool, a, 0, &[event(1)], &[])
        .await
        .unwrap();
    let (for_a, for_b) = ([event(2), event(3)], [event(1)]);
    let appends = |a_expected| {
        [
            StreamAppend {
                stream_id: a,
                expected_version: a_expected,
                events: &for_a,
                saga: Saga::Continues,
            },
            StreamAppend {
                stream_id: b,
                expected_version: 0,
                events: &for_b,
                saga: Saga::Continues,
            },
        ]
    };

    // Stream a is at version 1, not 0: nothing of the statement is written, b's event neither.
    let stale = event_store::append_many(&db.pool, &appends(0), &[]).await;
    assert!(
        matches!(stale, Err(AppendError::Conflict { stream_id, expected_version: 0 }) if stream_id == a),
        "{stale:?}"
    );
    assert!(event_store::load(&db.pool, b).await.unwrap().is_empty());

    let recorded = event_store::append_many(&db.pool, &appends(1), &[])
        .await
        .unwrap();
    let keys: Vec<(Uuid, i32)> = recorded.iter().map(|e| (e.stream_id, e.version)).collect();
    assert_eq!(keys, [(a, 2), (a, 3), (b, 1)]);
    assert!(
        recorded
            .windows(2)
            .all(|w| w[0].global_position < w[1].global_position),
        "global positions follow the order given"
    );
    let loaded = event_store::load_many(&db.pool, &[b, a]).await.unwrap();
    let mut expected = vec![(a, 1), (a, 2), (a, 3), (b, 1)];
    expected.sort();
    let keys: Vec<(Uuid, i32)> = loaded.iter().map(|e| (e.stream_id, e.version)).collect();
    assert_eq!(keys, expected, "stream after stream, each in version order");
    assert_eq!(loaded.iter().find(|e| e.stream_id == b), recorded.last());
}

#[tokio::test]
async fn two_concurrent_writers_of_one_version_get_one_success_and_one_conflict() {
    let db = store().await;
    for _ in 0..20 {
        let stream = Uuid::new_v4();
        let write = |n| {
            let pool = db.pool.clone();
            async move {
                let mut tx = pool.begin().await?;
                let result = event_store::append(&mut *tx, stream, 0, &[event(n)], &[]).await;
                if result.is_ok() {
                    tx.commit().await?;
                }
                Ok::<_, sqlx::Error>(result)
            }
        };
        let (a, b) = tokio::join!(write(1), write(2));
        let results = [a.unwrap(), b.unwrap()];
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Err(AppendError::Conflict {
                        expected_version: 0,
                        ..
                    })
                )
            })
            .count();
        assert_eq!((ok, conflicts), (1, 1), "{results:?}");
        assert_eq!(event_store::load(&db.pool, stream).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn the_global_reader_waits_for_an_earlier_transaction_instead_of_skipping_it() {
    let db = store().await;
    // A takes the lower position and commits last; B commits first.
    let mut a = db.pool.begin().await.unwrap();
    event_store::append(&mut *a, Uuid::new_v4(), 0, &[event(1)], &[])
        .await
        .unwrap();
    let mut b = db.pool.begin().await.unwrap();
    event_store::append(&mut *b, Uuid::new_v4(), 0, &[event(2)], &[])
        .await
        .unwrap();
    b.commit().await.unwrap();

    let seen = event_store::read_all(&db.pool, Position::START, 100)
        .await
        .unwrap();
    assert!(
        seen.is_empty(),
        "B must wait while A, an older transaction, is in flight"
    );

    a.commit().await.unwrap();
    // Transactions of other tests (any database of the server) may still hold the horizon back
    // for a moment; what matters is that A comes first once both are readable.
    let seen =
        test_support::eventually(Duration::from_secs(10), "both events readable", || async {
            let seen = event_store::read_all(&db.pool, Position::START, 100).await?;
            Ok((seen.len() == 2).then_some(seen))
        })
        .await
        .unwrap();
    let ns: Vec<i64> = seen
        .iter()
        .map(|e| e.payload["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, vec![1, 2]);
}

#[tokio::test]
async fn a_reader_following_slow_overlapping_writers_sees_every_event_exactly_once() {
    let db = store().await;
    const WRITERS: i64 = 8;
    const PER_WRITER: i64 = 25;

    let writers = (0..WRITERS).map(|w| {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let n = w * 1000 + i;
                let mut tx = pool.begin().await.unwrap();
                event_store::append(&mut *tx, Uuid::new_v4(), 0, &[event(n)], &[])
                    .await
                    .unwrap();
                // Hold the transaction open for a varying time so commits overlap and reorder.
                tokio::time::sleep(Duration::from_millis(((n * 7919) % 13) as u64)).await;
                if n % 10 == 3 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                }
            }
        })
    });
    let writers: Vec<_> = writers.collect();

    let mut seen = Vec::new();
    let mut position = Position::START;
    let expected: HashSet<i64> = (0..WRITERS)
        .flat_map(|w| (0..PER_WRITER).map(move |i| w * 1000 + i))
        .filter(|n| n % 10 != 3)
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < expected.len() && tokio::time::Instant::now() < deadline {
        let batch = event_store::read_all(&db.pool, position, 7).await.unwrap();
        if let Some(last) = batch.last() {
            position = last.position();
        }
        seen.extend(batch.iter().map(|e| e.payload["n"].as_i64().unwrap()));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no event read twice");
    assert_eq!(
        unique, expected,
        "every committed event read, no rolled-back one"
    );
}

/// Inserts `rows` events, one per new stream.
async fn grow(conn: &mut sqlx::PgConnection, rows: i32) {
    sqlx::query(
        "INSERT INTO events (stream_id, version, event_type, schema_version, payload, metadata)
         SELECT gen_random_uuid(), 1, 'Happened', 1, '{}', '{}' FROM generate_series(1, $1)",
    )
    .bind(rows)
    .execute(conn)
    .await
    .unwrap();
}

/// PostgreSQL settles on a generic plan for a prepared statement after its fifth run. Made
/// while the statistics say the table is small (autovacuum analyses a new table early), that
/// plan could be a scan, and it would go on scanning the table as it grows. The services'
/// sessions rule that out (`enable_seqscan = off`, ARCHITECTURE.md, "Generic plans").
#[tokio::test]
async fn loading_a_stream_never_scans_the_table_it_grew_from_empty() {
    let db = store().await;
    // One session: prepared statements and their plans belong to it.
    let mut conn = db.pool.acquire().await.unwrap();
    let stream = Uuid::new_v4();
    event_store::append(&mut *conn, stream, 0, &[event(1)], &[])
        .await
        .unwrap();
    grow(&mut conn, 100).await;
    sqlx::query("ANALYZE events")
        .execute(&mut *conn)
        .await
        .unwrap();
    for _ in 0..10 {
        event_store::load(&mut *conn, stream).await.unwrap();
        event_store::load_many(&mut *conn, &[stream]).await.unwrap();
    }
    grow(&mut conn, 20_000).await;

    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    let before = test_support::unreported_seq_scans(&mut tx, "events")
        .await
        .unwrap();
    assert_eq!(event_store::load(&mut *tx, stream).await.unwrap().len(), 1);
    let many = event_store::load_many(&mut *tx, &[stream, Uuid::new_v4()]).await;
    assert_eq!(many.unwrap().len(), 1);
    let after = test_support::unreported_seq_scans(&mut tx, "events")
        .await
        .unwrap();
    assert_eq!(after, before, "loading streams scanned the whole table");
}
