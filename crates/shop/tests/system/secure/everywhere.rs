//! The whole saga with every server behind TLS and credentials at once (SYSTEM.md §9), set by
//! configuration only: PostgreSQL as the role `shop_tls` over verified TLS, Kafka on the
//! SASL_SSL node with each component as its own principal, Redis over TLS with its user and
//! password, the MongoDB-wire server over TLS with the client certificate.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::{kafka, mongodb, postgres, projections, redis, tls_dir};
use crate::common::stack::{Stack, item};

#[tokio::test]
async fn the_saga_completes_with_every_server_over_tls_with_credentials() {
    let prefix = kafka::Prefix::granted();
    let ca = tls_dir().join("ca.pem").display().to_string();
    let redis_url = redis::url("rediss", &format!("shop:{}@", redis::password()));
    let mongodb_url = mongodb::services_url();
    let mut env = kafka::services_env(&prefix);
    env.extend(
        [
            ("SHOP_POSTGRES__URL", postgres::services_url()),
            ("SHOP_REDIS__URL", redis_url.clone()),
            ("SHOP_REDIS__CA_FILE", ca),
            ("SHOP_MONGODB__URL", mongodb_url.clone()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut stack = Stack::start_with(
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
