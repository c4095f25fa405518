//! Redis or MongoDB down during load: the write side and the other projection go on, and the
//! stopped store's projection catches up exactly once it is back.
//!
//! These tests stop shared servers, so each runs alone ([`World::alone`]); a drop guard starts
//! the server again even when a test fails.

use std::time::Duration;

use crate::common::{SETTLE, World, expected_reports, load};
use test_support::{Stopped, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_during_load_then_the_products_report_catches_up() {
    let world = World::alone().await;
    load(world.pool(), 30).await;
    world.assert_reports_exact(SETTLE).await;
    {
        let _down = Stopped::server("redis");
        // The write side and the saga go on.
        load(world.pool(), 60).await;
        // The MongoDB projection is not held back by Redis.
        let (_, expected_orders) = expected_reports(world.pool()).await;
        eventually(SETTLE, "the orders report while Redis is down", || {
            let expected = expected_orders.clone();
            let world = &world;
            async move { Ok((world.orders_report().await == expected).then_some(())) }
        })
        .await
        .unwrap();
        let products = world.get("/api/reports/products").await;
        assert_eq!(products.status(), 503);
        assert_eq!(world.get("/health/ready").await.status(), 503);
    }
    world.assert_reports_exact(SETTLE).await;
    assert!(world.stats.0.retried() > 0, "Redis was never found down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_down_during_load_then_the_orders_report_catches_up() {
    let world = World::alone().await;
    load(world.pool(), 30).await;
    world.assert_reports_exact(SETTLE).await;
    {
        let _down = Stopped::server("mongodb");
        load(world.pool(), 60).await;
        let (expected_products, _) = expected_reports(world.pool()).await;
        eventually(SETTLE, "the products report while MongoDB is down", || {
            let expected = expected_products.clone();
            let world = &world;
            async move { Ok((world.products_report().await == expected).then_some(())) }
        })
        .await
        .unwrap();
        let orders = world.get("/api/reports/orders").await;
        assert_eq!(orders.status(), 503);
        assert_eq!(world.get("/health/ready").await.status(), 503);
    }
    world.assert_reports_exact(Duration::from_secs(45)).await;
    assert!(world.stats.1.retried() > 0, "MongoDB was never found down");
}
