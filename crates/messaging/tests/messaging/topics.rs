//! The system's topics are created with their configuration: the catalog compacted (keyed by
//! product, each record the whole product), the others with the broker's default (delete).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

#[tokio::test]
async fn the_catalog_topic_is_compacted_and_the_saga_topics_are_not() {
    let settings = test_support::isolated_settings();
    messaging::topics::ensure(&settings.kafka, &messaging::topics::ALL)
        .await
        .unwrap();
    let names: Vec<String> = (messaging::topics::ALL.iter())
        .map(|t| format!("{}{t}", settings.kafka.topic_prefix))
        .collect();

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .create()
        .unwrap();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let resources: Vec<ResourceSpecifier<'_>> =
        names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let described = admin.describe_configs(&resources, &options).await.unwrap();
    let mut policies = Vec::new();
    for (logical, result) in messaging::topics::ALL.iter().zip(described) {
        let resource = result.unwrap();
        let policy = resource
            .get("cleanup.policy")
            .and_then(|entry| entry.value.clone())
            .unwrap();
        policies.push((*logical, policy));
    }
    assert!(
        policies.contains(&(contracts::topics::CATALOG, "compact".to_owned())),
        "{policies:?}"
    );
    assert!(
        policies.contains(&(contracts::topics::ORDERS, "delete".to_owned())),
        "{policies:?}"
    );

    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    test_support::delete_topics(&settings, &names)
        .await
        .unwrap();
}
