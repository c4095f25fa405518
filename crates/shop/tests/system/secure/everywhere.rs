//! The whole saga with every server behind TLS and credentials at once (SYSTEM.md §9), set by
//! configuration only, the configuration `./dev up --secure` starts the services with (`./dev
//! secure-env COMPONENT`): PostgreSQL as the role `shop_tls` over verified TLS, Kafka on the
//! SASL_SSL node with each component as its own principal, Redis over TLS with its user and
//! password, the MongoDB-wire server over TLS with the client certificate.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use test_support::stack::{Stack, item};
use uuid::Uuid;

use super::{kafka, postgres, projections};
use crate::common::SHOP;

/// `./dev secure-env COMPONENT`: its settings in secure mode.
fn secure_env(component: &str) -> Vec<(String, String)> {
    let dev = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dev");
    let output = Command::new(dev)
        .args(["secure-env", component])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "./dev secure-env {component}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap();
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_saga_completes_with_every_server_over_tls_with_credentials() {
    // The test's own topic prefix, with the ACLs the node gives each principal on it.
    let prefix = kafka::Prefix::granted();
    let mut env = vec![("SHOP_KAFKA__TOPIC_PREFIX".to_owned(), prefix.0.clone())];
    let (mut redis_url, mut mongodb_url) = (String::new(), String::new());
    for component in ["order", "stock", "payment", "projections", "gateway"] {
        for (key, value) in secure_env(component) {
            match key.as_str() {
                "SHOP_REDIS__URL" => redis_url.clone_from(&value),
                "SHOP_MONGODB__URL" => mongodb_url.clone_from(&value),
                _ => {}
            }
            env.push((format!("{component}:{key}"), value));
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut stack = Stack::start_with(
        SHOP,
        &["order", "stock", "payment", "projections", "gateway"],
        &env,
    )
    .await;
    stack.set_kafka(kafka::principal("admin", &prefix.0));

    let order = stack.place(Uuid::new_v4(), json!([item(1, 2)])).await;
    let id = order["orderId"].as_str().unwrap();
    let order = stack.settled(id, Duration::from_secs(30)).await;
    assert_eq!(order["status"], "completed", "{order}");
    postgres::assert_every_session_is_tls(&stack).await;
    projections::read_models_hold_the_order(&stack, &redis_url, &mongodb_url).await;

    stack.remove().await.unwrap();
    prefix.remove().await;
}
