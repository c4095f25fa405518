//! `GET /api/ops/orders/stuck`: pending sagas, oldest first; for viewers only, paginated, and
//! read by index.

use order::saga::SagaHandler;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{TestApp, assert_problem, next_link};
use crate::saga::{captured, handle, place};

async fn stuck(app: &TestApp, query: &str) -> (Vec<Value>, Option<String>) {
    let response = app
        .get_as(
            &test_support::viewer(),
            &format!("/api/ops/orders/stuck{query}"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let next = next_link(&response);
    (response.json().await.unwrap(), next)
}

fn ids(orders: &[Value]) -> Vec<Uuid> {
    (orders.iter())
        .map(|o| o["orderId"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn pending_sagas_are_listed_oldest_first() {
    let app = TestApp::spawn().await.unwrap();
    let (first, second, third) = (place(&app).await, place(&app).await, place(&app).await);
    let handler = SagaHandler;
    let mut conn = app.pool().acquire().await.unwrap();
    // The third settles and leaves the list.
    handle(&handler, &mut conn, &[captured(third, 1)])
        .await
        .unwrap();

    let (orders, next) = stuck(&app, "?olderThan=0").await;
    assert_eq!(ids(&orders), [first, second]);
    assert_eq!(next, None);
    assert!(orders[0]["customerId"].as_str().is_some());
    assert!(orders[0]["placedAt"].as_str().is_some());

    // Pages follow the cursor; nothing placed a moment ago is "stuck" for an hour.
    let (page, next) = stuck(&app, "?olderThan=0&limit=1").await;
    assert_eq!(ids(&page), [first]);
    let next = next.expect("a next page");
    let (page, next) = stuck(&app, next.trim_start_matches("/api/ops/orders/stuck")).await;
    assert_eq!((ids(&page), next), (vec![second], None));
    let (none, _) = stuck(&app, "?olderThan=3600").await;
    assert!(none.is_empty());

    // The default threshold lists them only once they waited five seconds.
    let (recent, _) = stuck(&app, "").await;
    assert!(recent.is_empty(), "placed just now: {recent:?}");
}

#[tokio::test]
async fn only_viewers_read_stuck_sagas_and_the_query_is_checked() {
    let app = TestApp::spawn().await.unwrap();
    let path = "/api/ops/orders/stuck";
    assert_problem(
        app.get_as("", path).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let (_, customer) = test_support::customer();
    assert_problem(
        app.get_as(&customer, path).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.get_as(&test_support::operator(), path).await.status(),
        StatusCode::OK
    );
    let viewer = test_support::viewer();
    assert_problem(
        app.get_as(&viewer, &format!("{path}?olderThan=2592001"))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-query",
    )
    .await;
    assert_eq!(
        app.get_as(&viewer, &format!("{path}?olderThan=-1"))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get_as(&viewer, &format!("{path}?after=not-a-cursor"))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

/// The services' sessions force generic plans and rule out sequential scans: a page of the
/// stuck list reads only the rows it lists, by index, however many sagas are open.
#[tokio::test]
async fn the_stuck_list_reads_open_sagas_by_its_age_index() {
    let app = TestApp::spawn().await.unwrap();
    sqlx::query(
        "INSERT INTO open_sagas (order_id, placed_at)
         SELECT gen_random_uuid(), now() - interval '1 minute' FROM generate_series(1, 20000)",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let mut conn = app.pool().acquire().await.unwrap();
    sqlx::raw_sql("ANALYZE open_sagas")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "PREPARE stuck (timestamptz, timestamptz, uuid, int8) AS {}",
        order::stuck::STATEMENT
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN EXECUTE stuck (now(), '-infinity', '00000000-0000-0000-0000-000000000000', 100)",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("open_sagas_by_age"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}
