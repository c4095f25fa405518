//! The dependency rules of ARCHITECTURE.md ("Invariants of the code"), checked against the
//! workspace as cargo sees it (`cargo metadata`) and against the sources where a rule is finer
//! than a crate: a crate may depend only on the workspace crates listed for it here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Each workspace crate and the workspace crates its normal (non-dev) dependencies may name.
/// Services (`order`, `stock`, `payment`) never depend on each other; the gateway names them
/// (and the projections) only for their OpenAPI documents, the projections name `order` only
/// for its event store.
/// The console reads the system through its topics and the services' HTTP APIs only.
/// `test-support` names `messaging` only behind its `stack` feature, for the topics a stack
/// deletes, and its `handler` feature, to hand a handler a batch; and the services only behind
/// its `in-process` feature, to run them in a test.
const ALLOWED: [(&str, &[&str]); 12] = [
    ("contracts", &[]),
    ("platform", &[]),
    (
        "test-support",
        &[
            "messaging",
            "order",
            "payment",
            "platform",
            "service",
            "stock",
        ],
    ),
    ("messaging", &["contracts", "platform"]),
    ("service", &["messaging", "platform"]),
    ("order", &["contracts", "messaging", "platform", "service"]),
    ("stock", &["contracts", "messaging", "platform", "service"]),
    (
        "payment",
        &["contracts", "messaging", "platform", "service"],
    ),
    (
        "projections",
        &["contracts", "messaging", "order", "platform"],
    ),
    ("console", &["contracts", "messaging", "platform"]),
    (
        "gateway",
        &[
            "console",
            "order",
            "payment",
            "platform",
            "projections",
            "stock",
        ],
    ),
    (
        "shop",
        &[
            "console",
            "gateway",
            "messaging",
            "order",
            "payment",
            "platform",
            "projections",
            "service",
            "stock",
        ],
    ),
];

fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("a package list");
    let members: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    packages
        .iter()
        .map(|package| {
            let name = package["name"].as_str().unwrap_or_default().to_owned();
            let uses = package["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                // Dev-dependencies (`kind: "dev"`) are the tests', not the crate's.
                .filter(|d| d["kind"].is_null() || d["kind"] == "build")
                .filter_map(|d| d["name"].as_str())
                .filter(|d| members.contains(*d))
                .map(str::to_owned)
                .collect();
            (name, uses)
        })
        .collect()
}

#[test]
fn each_crate_depends_only_on_the_crates_it_may() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(name, uses)| (*name, uses.iter().copied().collect()))
        .collect();
    let actual = workspace_dependencies();
    for (name, uses) in &actual {
        let Some(may) = allowed.get(name.as_str()) else {
            panic!("crate {name} has no rule in boundaries.rs: add one, and to ARCHITECTURE.md");
        };
        let forbidden: Vec<&String> = uses.iter().filter(|u| !may.contains(u.as_str())).collect();
        assert!(
            forbidden.is_empty(),
            "{name} depends on {forbidden:?}, which ARCHITECTURE.md does not allow"
        );
    }
    assert_eq!(
        actual.len(),
        ALLOWED.len(),
        "a rule names a crate that is gone"
    );
}

/// Lines of the `.rs` files under `dir` that mention `needle`.
fn mentions(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("a source directory")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for (i, line) in text.lines().enumerate() {
                    if line.contains(needle) && !line.trim_start().starts_with("//") {
                        found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn the_projections_read_the_order_service_only_through_its_event_store_and_contracts() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../projections/src");
    let reaches: Vec<String> = mentions(&src, "order::")
        .into_iter()
        .filter(|line| {
            let rest = line.split("order::").skip(1);
            rest.into_iter().any(|after| {
                !(after.starts_with("event_store") || after.starts_with("messages::Replay"))
            })
        })
        .collect();
    assert!(
        reaches.is_empty(),
        "the projections reach into the order service past its event store: {reaches:#?}"
    );
}

#[test]
fn the_gateway_takes_only_the_services_openapi_documents() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/src");
    for (service, document) in [
        ("order", "http::openapi()"),
        ("stock", "http::openapi()"),
        ("payment", "http::openapi()"),
        ("projections", "ops::openapi()"),
    ] {
        let needle = format!("{service}::");
        let reaches: Vec<String> = mentions(&src, &needle)
            .into_iter()
            .filter(|line| {
                line.split(needle.as_str())
                    .skip(1)
                    .any(|after| !after.starts_with(document))
            })
            .collect();
        assert!(
            reaches.is_empty(),
            "the gateway uses more of {service} than its OpenAPI document: {reaches:#?}"
        );
    }
}

/// The console reads each consumer group's lag on the topics the group reads: its table must
/// be the services' own subscriptions, or a lag would go unseen.
#[test]
fn the_console_watches_every_consumer_group_on_the_topics_it_reads() {
    let settings = platform::Settings::load().unwrap_or_else(|e| panic!("{e}"));
    let db = &settings.postgres.databases;
    let mut services: BTreeMap<String, BTreeSet<String>> = [
        order::definition(&db.order, 0).consumer,
        stock::definition(&settings, &db.stock, 0).consumer,
        payment::definition(&settings, &db.payment, 0).consumer,
    ]
    .into_iter()
    .map(|c| (c.name, c.topics.into_iter().collect()))
    .collect();
    for store in [projections::REDIS_CONSUMER, projections::MONGO_CONSUMER] {
        services.insert(
            store.to_owned(),
            [contracts::topics::ORDERS.to_owned()].into(),
        );
    }
    let console: BTreeMap<String, BTreeSet<String>> = console::lag::GROUPS
        .iter()
        .map(|(group, topics)| {
            (
                (*group).to_owned(),
                topics.iter().map(|t| (*t).to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(console, services);
}

/// What `./dev` grants a principal on the SASL_SSL node (`./dev kafka-acls --print`), as
/// `OPERATION TYPE NAME` lines, under the prefix `p.`.
fn kafka_acls() -> BTreeMap<String, BTreeSet<String>> {
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dev");
    let output = Command::new(dev)
        .args(["kafka-acls", "--print", "p."])
        .output()
        .unwrap_or_else(|e| panic!("running ./dev kafka-acls --print: {e}"));
    assert!(output.status.success(), "{output:?}");
    let mut acls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some((user, acl)) = line.strip_prefix("allow ").and_then(|l| l.split_once(' ')) {
            acls.entry(user.to_owned())
                .or_default()
                .insert(acl.to_owned());
        }
    }
    acls
}

/// The ACLs a service needs: write what it publishes and the dead letters, read what it
/// consumes, create all of them (it makes them at start), and read its group.
fn service_acls<H: messaging::consumer::Handler>(
    definition: &service::Definition<H>,
) -> BTreeSet<String> {
    let mut acls: BTreeSet<String> = (definition.topics().iter())
        .map(|t| format!("CREATE TOPIC p.{t}"))
        .collect();
    for topic in definition
        .publishes
        .iter()
        .chain([&messaging::topics::DEAD_LETTERS])
    {
        acls.insert(format!("WRITE TOPIC p.{topic}"));
    }
    for topic in &definition.consumer.topics {
        acls.insert(format!("READ TOPIC p.{topic}"));
    }
    acls.insert(format!("READ GROUP p.{}", definition.consumer.name));
    acls
}

/// The SASL_SSL node's ACLs give each service's principal exactly what its definition touches,
/// the projections theirs, and the console what its lag table and dead-letter redrive read and
/// write: a topic or group added to the code without its ACL fails here, not on a cluster with
/// ACLs.
#[test]
fn the_kafka_acls_of_dev_grant_each_principal_what_its_code_touches() {
    let settings = platform::Settings::load().unwrap_or_else(|e| panic!("{e}"));
    let db = &settings.postgres.databases;
    let acls = kafka_acls();
    let granted = |user: &str| acls.get(user).cloned().unwrap_or_default();
    assert_eq!(
        granted("order"),
        service_acls(&order::definition(&db.order, 0))
    );
    assert_eq!(
        granted("stock"),
        service_acls(&stock::definition(&settings, &db.stock, 0))
    );
    assert_eq!(
        granted("payment"),
        service_acls(&payment::definition(&settings, &db.payment, 0))
    );

    let (orders, dead) = (contracts::topics::ORDERS, messaging::topics::DEAD_LETTERS);
    let mut projections: BTreeSet<String> = [
        format!("READ TOPIC p.{orders}"),
        format!("CREATE TOPIC p.{orders}"),
        format!("WRITE TOPIC p.{dead}"),
        format!("CREATE TOPIC p.{dead}"),
    ]
    .into();
    for group in [projections::REDIS_CONSUMER, projections::MONGO_CONSUMER] {
        projections.insert(format!("READ GROUP p.{group}"));
    }
    assert_eq!(granted("projections"), projections);

    let console = granted("console");
    for topic in messaging::topics::ALL {
        assert!(
            console.contains(&format!("READ TOPIC p.{topic}")),
            "{topic}"
        );
        // A dead letter is redriven to the topic it came from.
        let redrive = format!("WRITE TOPIC p.{topic}");
        assert_eq!(console.contains(&redrive), topic != dead, "{redrive}");
    }
    for (group, _) in console::lag::GROUPS {
        let describe = format!("DESCRIBE GROUP p.{group}");
        assert!(console.contains(&describe), "{describe}");
    }
}

/// The console's journey expects an inbox row from each consumer for each message type, except
/// those its handler ignores: its table must be the handlers' own `ignores`.
#[test]
fn the_console_knows_which_messages_each_consumer_ignores() {
    use messaging::consumer::{Handler as _, IncomingMessage};
    let message = |topic: &str, kind: &str| IncomingMessage {
        topic: topic.to_owned(),
        partition: 0,
        offset: 0,
        key: None,
        message_type: kind.to_owned(),
        schema_version: 1,
        payload: Vec::new(),
        metadata: messaging::outbox::Metadata {
            message_id: uuid::Uuid::nil(),
            correlation_id: uuid::Uuid::nil(),
            causation_id: None,
            traceparent: None,
            occurred_at: chrono::Utc::now(),
        },
    };
    use contracts::topics::{CATALOG, ORDERS, PAYMENTS, STOCK};
    let types: [(&str, &[&str]); 4] = [
        (
            ORDERS,
            &[
                "OrderPlaced",
                "OrderLinesChanged",
                "OrderCompleted",
                "OrderFailed",
            ],
        ),
        (
            STOCK,
            &["StockReserved", "StockReservationFailed", "StockReleased"],
        ),
        (PAYMENTS, &["PaymentCaptured", "PaymentDeclined"]),
        (CATALOG, &["ProductChanged"]),
    ];
    let settings = platform::Settings::load().unwrap_or_else(|e| panic!("{e}"));
    let ignores = |consumer: &str, m: &IncomingMessage| match consumer {
        "order" => order::consumer::OrderHandler.ignores(m),
        "stock" => stock::handler::StockHandler.ignores(m),
        "payment" => payment::handler::PaymentHandler {
            starting_credit: settings.payment.starting_credit,
        }
        .ignores(m),
        other => panic!("unknown consumer {other}"),
    };
    let mut ignored = Vec::new();
    for (consumer, topics) in console::lag::GROUPS {
        if consumer.starts_with("projections") {
            continue;
        }
        for (topic, kinds) in types {
            if !topics.contains(&topic) {
                continue;
            }
            for kind in kinds {
                if ignores(consumer, &message(topic, kind)) {
                    ignored.push((*consumer, *kind));
                }
            }
        }
    }
    ignored.sort_unstable();
    let mut expected = console::journey::IGNORED.to_vec();
    expected.sort_unstable();
    assert_eq!(ignored, expected);
}
