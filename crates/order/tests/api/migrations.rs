//! Migrations that change tables holding data, run over data written before them.

use uuid::Uuid;

/// Keys stored before keys were per customer keep working: each gets the customer of the order
/// it placed, and the same key is then free for every other customer.
#[tokio::test]
async fn idempotency_keys_stored_before_get_the_customer_of_their_order() {
    let db = test_support::TestDatabase::create().await.unwrap();
    for sql in [
        include_str!("../../migrations/100_events.sql"),
        include_str!("../../migrations/101_idempotency_keys.sql"),
    ] {
        sqlx::raw_sql(sql).execute(&db.pool).await.unwrap();
    }
    let (order, customer) = (Uuid::now_v7(), Uuid::new_v4());
    sqlx::query(
        "INSERT INTO events (stream_id, version, event_type, schema_version, payload, metadata)
         VALUES ($1, 1, 'OrderPlaced', 1, jsonb_build_object('customerId', $2::uuid, 'lines', '[]'::jsonb), '{}')",
    )
    .bind(order)
    .bind(customer)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO idempotency_keys (key, order_id, request) VALUES ('k', $1, '{}')")
        .bind(order)
        .execute(&db.pool)
        .await
        .unwrap();

    sqlx::raw_sql(include_str!(
        "../../migrations/103_idempotency_per_customer.sql"
    ))
    .execute(&db.pool)
    .await
    .unwrap();

    let stored: (Uuid, Uuid) =
        sqlx::query_as("SELECT customer_id, order_id FROM idempotency_keys WHERE key = 'k'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(stored, (customer, order));
    sqlx::query(
        "INSERT INTO idempotency_keys (customer_id, key, order_id, request)
         VALUES ($1, 'k', $2, '{}')",
    )
    .bind(Uuid::new_v4())
    .bind(Uuid::now_v7())
    .execute(&db.pool)
    .await
    .unwrap();
    let again = sqlx::query(
        "INSERT INTO idempotency_keys (customer_id, key, order_id, request)
         VALUES ($1, 'k', $2, '{}')",
    )
    .bind(customer)
    .bind(Uuid::now_v7())
    .execute(&db.pool)
    .await;
    assert!(again.is_err(), "one key per customer");
    db.drop_now().await.unwrap();
}
