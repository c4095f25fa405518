//! The audit trail against a real PostgreSQL: what `record` writes is what `list` reads, newest
//! first, by page and filter, and a filtered page reads its filter's index, not the whole trail.

#![allow(clippy::unwrap_used)]

use messaging::audit::{self, Filter};
use serde_json::json;
use sqlx::migrate::Migrator;
use test_support::TestDatabase;

async fn database() -> TestDatabase {
    let db = TestDatabase::create().await.unwrap();
    messaging::migrator(&Migrator::DEFAULT)
        .run(&db.pool)
        .await
        .unwrap();
    db
}

fn filter(actor: Option<&str>, action: Option<&str>) -> Filter {
    Filter {
        actor: actor.map(str::to_owned),
        action: action.map(str::to_owned),
    }
}

#[tokio::test]
async fn entries_are_listed_newest_first_by_page_and_filter() {
    let _turn = test_support::shared().await;
    let db = database().await;
    let mut conn = db.pool.acquire().await.unwrap();
    for (actor, action, n) in [
        ("ann", "thing.add", 1),
        ("bob", "thing.change", 2),
        ("ann", "thing.change", 3),
    ] {
        let after = json!({"n": n});
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        audit::record(&mut tx, actor, action, "thing:1", None, Some(&after))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    // A rolled-back action leaves no entry.
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    audit::record(&mut tx, "eve", "thing.add", "thing:2", None, None)
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let all = audit::list(&mut conn, &Filter::default(), None, 10)
        .await
        .unwrap();
    let ns: Vec<_> = all
        .iter()
        .map(|e| e.after.clone().unwrap()["n"].clone())
        .collect();
    assert_eq!(ns, [json!(3), json!(2), json!(1)]);
    assert_eq!(all[2].before, None);
    assert_eq!(all[2].subject, "thing:1");

    let older = audit::list(&mut conn, &Filter::default(), Some(all[0].id), 1)
        .await
        .unwrap();
    assert_eq!(older.iter().map(|e| e.id).collect::<Vec<_>>(), [all[1].id]);

    for (f, expected) in [
        (filter(Some("ann"), None), vec![all[0].id, all[2].id]),
        (
            filter(None, Some("thing.change")),
            vec![all[0].id, all[1].id],
        ),
        (filter(Some("ann"), Some("thing.change")), vec![all[0].id]),
        (filter(Some("eve"), None), vec![]),
        (filter(Some("a\0n"), None), vec![]),
    ] {
        let ids: Vec<i64> = (audit::list(&mut conn, &f, None, 10).await.unwrap())
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, expected, "{f:?}");
    }
    drop(conn);
    db.drop_now().await.unwrap();
}

/// The filtered statements must read their filter's index even with a generic plan made while
/// the trail was small (ARCHITECTURE.md, "Generic plans").
#[tokio::test]
async fn a_filtered_page_reads_only_its_entries_after_the_trail_grew() {
    let _turn = test_support::shared().await;
    let db = database().await;
    // One session: prepared statements and their plans belong to it.
    let mut conn = db.pool.acquire().await.unwrap();
    let grow = async |conn: &mut sqlx::PgConnection, rows: i32| {
        sqlx::query(
            "INSERT INTO audit (actor, action, subject)
             SELECT 'op-' || n, 'action-' || n, 'thing' FROM generate_series(1, $1) AS n",
        )
        .bind(rows)
        .execute(conn)
        .await
        .unwrap();
    };
    grow(&mut conn, 100).await;
    sqlx::query("ANALYZE audit")
        .execute(&mut *conn)
        .await
        .unwrap();
    let filters = [
        filter(Some("rare"), None),
        filter(None, Some("rare.action")),
    ];
    for _ in 0..10 {
        for f in &filters {
            audit::list(&mut conn, f, None, 101).await.unwrap();
        }
    }
    audit::record(&mut conn, "rare", "rare.action", "thing", None, None)
        .await
        .unwrap();
    grow(&mut conn, 20_000).await;

    let reads = async |tx: &mut sqlx::PgConnection| -> (i64, i64) {
        sqlx::query_as(
            "SELECT seq_scan, coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
             WHERE relname = 'audit'",
        )
        .fetch_one(tx)
        .await
        .unwrap()
    };
    for f in &filters {
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        let (scans, fetched) = reads(&mut tx).await;
        let page = audit::list(&mut tx, f, None, 101).await.unwrap();
        assert_eq!(page.len(), 1, "{f:?}");
        let (scans_after, fetched_after) = reads(&mut tx).await;
        assert_eq!(scans_after, scans, "{f:?} scanned the trail");
        assert!(
            fetched_after - fetched <= 10,
            "{f:?} read {} entries",
            fetched_after - fetched
        );
    }
    drop(conn);
    db.drop_now().await.unwrap();
}
