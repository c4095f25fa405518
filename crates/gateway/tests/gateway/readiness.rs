//! Readiness follows Kafka: a service answers 503 while the broker is stopped and 200 again once
//! it is back. This stops the shared local Kafka (`./dev stop kafka`), so it runs alone
//! ([`test_support::alone`]), with a guard that restarts Kafka however the test ends.

use std::time::Duration;

use serde_json::Value;
use service::Service;
use test_support::{Stopped, TestDatabase, eventually};

fn kafka_of(body: &Value) -> Option<bool> {
    body["dependencies"]
        .as_array()?
        .iter()
        .find(|d| d["name"] == "kafka")
        .and_then(|d| d["up"].as_bool())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_503_while_kafka_is_stopped_and_200_once_it_is_back() {
    let _alone = test_support::alone().await;
    let settings = test_support::isolated_settings();
    let db = TestDatabase::create().await.unwrap();
    let service = Service::build(&settings, order::definition(&db.name, 0))
        .await
        .unwrap();
    let url = format!("http://{}/health/ready", service.address().unwrap());
    let (trigger, shutdown) = platform::shutdown::channel();
    let task = tokio::spawn(service.run(shutdown));
    let client = test_support::http_client();
    let readiness = |client: reqwest::Client, url: String| async move {
        let response = client.get(&url).send().await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await?;
        anyhow::Ok((status, body))
    };

    let (status, body) = eventually(Duration::from_secs(15), "ready with Kafka up", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let (status, body) = readiness(client, url).await?;
            Ok((status == 200).then_some((status, body)))
        }
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(kafka_of(&body), Some(true), "{body}");
    assert!(
        body["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "postgres")
    );

    let guard = Stopped::server("kafka");
    let body = eventually(Duration::from_secs(20), "503 with Kafka down", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let (status, body) = readiness(client, url).await?;
            Ok((status == 503).then_some(body))
        }
    })
    .await
    .unwrap();
    assert_eq!(kafka_of(&body), Some(false), "{body}");
    assert_eq!(body["status"], "unavailable");

    guard.restart(); // starts Kafka and waits until it answers
    eventually(
        Duration::from_secs(60),
        "ready again with Kafka back",
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let (status, body) = readiness(client, url).await?;
                Ok((status == 200 && kafka_of(&body) == Some(true)).then_some(()))
            }
        },
    )
    .await
    .unwrap();

    trigger.fire();
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    db.drop_now().await.unwrap();
}
