//! The system's topics are created with their configuration: the catalog compacted (keyed by
//! product, each record the whole product), the others with the broker's default (delete); and
//! each with the `min.insync.replicas` the settings name (`./dev up --cluster` asks for 2).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

#[tokio::test]
async fn the_catalog_topic_is_compacted_and_the_saga_topics_are_not() {
    let _turn = test_support::shared().await;
    let mut settings = test_support::isolated_settings();
    // The one local broker holds one replica, so 1 is the only value it can honour; set on the
    // topic, it shows as the topic's own setting rather than the broker's default.
    settings.kafka.min_insync_replicas = Some(1);
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
        let min_insync = resource.get("min.insync.replicas").unwrap();
        assert_eq!(min_insync.value.as_deref(), Some("1"), "{logical}");
        assert!(
            matches!(min_insync.source, ConfigSource::DynamicTopic),
            "{logical}: min.insync.replicas is the topic's own, not the broker's default"
        );
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
