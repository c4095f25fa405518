//! I9 containment (SYSTEM.md §5, §6): messages that no correct producer sends, published
//! straight to every topic of a running stack. Each one is parked in the dead-letter topic with
//! a reason by every consumer that reads it; no component crashes or restarts (same PIDs);
//! orders on both partitions go on; and the hostile messages change no order, stock or payment.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use contracts::headers as h;
use contracts::topics;
use serde_json::{Value, json};
use test_support::kafka::{RawProducer, Record};
use test_support::stack::{Stack, item};
use uuid::Uuid;

use crate::common::SHOP;
use crate::common::invariants::{check, snapshot};

const WITHIN: Duration = Duration::from_secs(30);

/// One kind of hostile message: where it goes, what it carries, and which consumers must park
/// it (every consumer of the topic that would act on such a message).
struct Case {
    name: &'static str,
    topic: &'static str,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
    parked_by: &'static [&'static str],
}

/// The headers the relay writes, for a message of `message_type` at `version`.
pub(crate) fn headers(message_type: &str, version: &str) -> Vec<(String, String)> {
    vec![
        (h::MESSAGE_ID.into(), Uuid::new_v4().to_string()),
        (h::MESSAGE_TYPE.into(), message_type.into()),
        (h::SCHEMA_VERSION.into(), version.into()),
        (h::CORRELATION_ID.into(), Uuid::new_v4().to_string()),
        (h::OCCURRED_AT.into(), chrono::Utc::now().to_rfc3339()),
    ]
}

fn without(mut headers: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    headers.retain(|(k, _)| k != name);
    headers
}

fn with(mut headers: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    headers.retain(|(k, _)| k != name);
    headers.push((name.into(), value.into()));
    headers
}

fn placed(order_id: Uuid, lines: Value, total: &str) -> Vec<u8> {
    json!({
        "orderId": order_id, "customerId": Uuid::new_v4(), "revision": 1,
        "lines": lines, "total": total,
    })
    .to_string()
    .into_bytes()
}

pub(crate) fn reserved(order_id: Uuid, revision: Value, amount: &str) -> Vec<u8> {
    json!({
        "orderId": order_id, "customerId": Uuid::new_v4(), "revision": revision,
        "amount": amount,
    })
    .to_string()
    .into_bytes()
}

fn captured(order_id: Uuid, revision: u32, amount: &str) -> Vec<u8> {
    json!({
        "orderId": order_id, "paymentId": Uuid::new_v4(), "customerId": Uuid::new_v4(),
        "revision": revision, "amount": amount,
    })
    .to_string()
    .into_bytes()
}

fn cases(order_id: Uuid) -> Vec<Case> {
    let line = json!([{ "productId": 1, "quantity": 1, "unitPrice": "45.00" }]);
    // About 900 KB: under the broker's 1 MB record limit, far over any real message.
    let huge_lines: Vec<Value> = (0..12_000)
        .map(|i| json!({ "productId": 1 + i % 3, "quantity": 1, "unitPrice": "45.00" }))
        .collect();
    vec![
        Case {
            name: "invalid JSON",
            topic: topics::ORDERS,
            headers: headers("OrderPlaced", "2"),
            payload: b"{\"orderId\": not json".to_vec(),
            parked_by: &["stock"],
        },
        Case {
            name: "unknown type",
            topic: topics::ORDERS,
            headers: headers("OrderShipped", "1"),
            payload: b"{}".to_vec(),
            parked_by: &["stock"],
        },
        Case {
            name: "unknown version",
            topic: topics::ORDERS,
            headers: headers("OrderPlaced", "99"),
            payload: placed(order_id, line.clone(), "45.00"),
            parked_by: &["stock"],
        },
        Case {
            name: "negative quantity",
            topic: topics::ORDERS,
            headers: headers("OrderPlaced", "2"),
            payload: placed(
                order_id,
                json!([{ "productId": 1, "quantity": -5, "unitPrice": "45.00" }]),
                "-225.00",
            ),
            parked_by: &["stock"],
        },
        Case {
            name: "absurd quantity",
            topic: topics::ORDERS,
            headers: headers("OrderPlaced", "2"),
            payload: placed(
                order_id,
                json!([{ "productId": 1, "quantity": 4_000_000_000u32, "unitPrice": "45.00" }]),
                "180000000000.00",
            ),
            parked_by: &["stock"],
        },
        Case {
            name: "oversized payload",
            topic: topics::ORDERS,
            headers: headers("OrderPlaced", "2"),
            payload: placed(order_id, Value::Array(huge_lines), "540000.00"),
            parked_by: &["stock"],
        },
        Case {
            name: "missing message id",
            topic: topics::ORDERS,
            headers: without(headers("OrderPlaced", "2"), h::MESSAGE_ID),
            payload: placed(order_id, line.clone(), "45.00"),
            parked_by: &["stock"],
        },
        Case {
            name: "overflowing amount",
            topic: topics::STOCK,
            headers: headers("StockReserved", "2"),
            payload: reserved(order_id, json!(1), "-79228162514264337593543950335"),
            parked_by: &["payment"],
        },
        Case {
            name: "over-precise amount",
            topic: topics::STOCK,
            headers: headers("StockReserved", "2"),
            payload: reserved(order_id, json!(1), "10.001"),
            parked_by: &["payment"],
        },
        Case {
            name: "zero revision",
            topic: topics::STOCK,
            headers: headers("StockReserved", "2"),
            payload: reserved(order_id, json!(0), "45.00"),
            parked_by: &["payment"],
        },
        Case {
            name: "absurd revision",
            topic: topics::STOCK,
            headers: headers("StockReserved", "2"),
            payload: reserved(order_id, json!(u32::MAX), "45.00"),
            parked_by: &["payment"],
        },
        Case {
            name: "unknown type on the stock topic",
            topic: topics::STOCK,
            headers: headers("StockCounted", "1"),
            payload: b"{}".to_vec(),
            parked_by: &["order", "payment"],
        },
        Case {
            name: "forged schema version",
            topic: topics::PAYMENTS,
            headers: with(
                headers("PaymentDeclined", "1"),
                h::SCHEMA_VERSION,
                "1; DROP",
            ),
            payload: b"{}".to_vec(),
            parked_by: &["order", "stock"],
        },
        Case {
            name: "forged message id",
            topic: topics::PAYMENTS,
            headers: with(
                headers("PaymentCaptured", "1"),
                h::MESSAGE_ID,
                "../../etc/passwd",
            ),
            payload: captured(order_id, 1, "45.00"),
            parked_by: &["order"],
        },
        Case {
            name: "invalid JSON on the payments topic",
            topic: topics::PAYMENTS,
            headers: headers("PaymentDeclined", "1"),
            payload: b"[[[[[[[[[[[[[[[[".to_vec(),
            parked_by: &["order", "stock"],
        },
        // Well-formed and in range, but for an order that does not exist: the order's handler
        // refuses it on every attempt.
        Case {
            name: "capture of an order that was never placed",
            topic: topics::PAYMENTS,
            headers: headers("PaymentCaptured", "1"),
            payload: captured(order_id, 1, "45.00"),
            parked_by: &["order"],
        },
    ]
}

/// Places orders of one unit of product 1 until both partitions of the orders topic have
/// seen one, and waits for all of them to complete. Returns their ids.
async fn orders_on_both_partitions(stack: &Stack) -> Vec<String> {
    let settings = test_support::settings();
    let topic = format!("{}{}", stack.prefix, topics::ORDERS);
    let customer = Uuid::new_v4();
    let mut ids = Vec::new();
    let mut partitions = BTreeSet::new();
    while partitions.len() < 2 {
        assert!(ids.len() < 40, "40 orders all landed on one partition");
        let order = stack.place(customer, json!([item(1, 1)])).await;
        let id = order["orderId"].as_str().unwrap().to_owned();
        let records = test_support::kafka::read_until(&settings, &topic, WITHIN, |records| {
            records.iter().any(|r| r.key.as_deref() == Some(&id))
        })
        .await
        .unwrap();
        let record = records
            .iter()
            .find(|r| r.key.as_deref() == Some(&id))
            .unwrap();
        partitions.insert(record.partition.unwrap());
        ids.push(id);
    }
    for id in &ids {
        let order = stack.settled(id, WITHIN).await;
        assert_eq!(order["status"], "completed", "order {id}: {order}");
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_messages_are_parked_and_every_other_order_goes_on() {
    let stack = Stack::start(SHOP).await;
    let settings = test_support::settings();
    let pids = stack.pids();

    let mut orders = orders_on_both_partitions(&stack).await;
    // An order that failed (out of stock), for the late messages below.
    let failed = stack.place(Uuid::new_v4(), json!([item(3, 26)])).await;
    let failed_id = failed["orderId"].as_str().unwrap().to_owned();
    let failed = stack.settled(&failed_id, WITHIN).await;
    assert_eq!(failed["failureReason"], "out_of_stock");
    orders.push(failed_id.clone());
    let before = snapshot(&stack, &orders).await;

    // Every case goes to each partition, under a key (an order id) of its own.
    let producer = RawProducer::new(&settings).unwrap();
    let mut expected: HashMap<String, (&'static str, &'static [&'static str])> = HashMap::new();
    for partition in 0..2 {
        let order_id = Uuid::new_v4();
        for case in cases(order_id) {
            let key = Uuid::new_v4().to_string();
            let topic = format!("{}{}", stack.prefix, case.topic);
            producer
                .send(
                    &topic,
                    &Record {
                        partition: Some(partition),
                        key: Some(key.clone()),
                        payload: Some(case.payload),
                        headers: case.headers,
                        ..Record::default()
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("publishing {}: {e:#}", case.name));
            expected.insert(key, (case.name, case.parked_by));
        }
    }

    // Late messages for the failed order, well-formed: a reservation reaches payment after the
    // order failed, and a capture reaches the order. Neither may leave a captured payment or
    // change the order (I3); neither is an error.
    let failed_uuid: Uuid = failed_id.parse().unwrap();
    for (topic, message_type, version, payload) in [
        (
            topics::STOCK,
            "StockReserved",
            "2",
            reserved(failed_uuid, json!(1), "11250.00"),
        ),
        (
            topics::PAYMENTS,
            "PaymentCaptured",
            "1",
            captured(failed_uuid, 1, "11250.00"),
        ),
    ] {
        producer
            .send(
                &format!("{}{topic}", stack.prefix),
                &Record {
                    key: Some(failed_id.clone()),
                    payload: Some(payload),
                    headers: headers(message_type, version),
                    ..Record::default()
                },
            )
            .await
            .unwrap();
    }

    // Every hostile message is parked, with a reason, by every consumer that must park it.
    let dead_letters = format!("{}{}", stack.prefix, topics::DEAD_LETTERS);
    let missing = |parked: &[Record]| -> Vec<String> {
        let mut missing = Vec::new();
        for (key, (name, parked_by)) in &expected {
            for consumer in *parked_by {
                let found = parked.iter().any(|r| {
                    r.key.as_deref() == Some(key.as_str())
                        && r.header(h::DEAD_LETTER_CONSUMER) == Some(*consumer)
                });
                if !found {
                    missing.push(format!("{name} (by {consumer})"));
                }
            }
        }
        missing
    };
    let parked = test_support::kafka::read_until(&settings, &dead_letters, WITHIN, |records| {
        missing(records).is_empty()
    })
    .await
    .unwrap();
    let mut not_parked = missing(&parked);
    not_parked.sort();
    assert!(not_parked.is_empty(), "not parked: {not_parked:?}");
    for letter in &parked {
        let reason = letter.header(h::DEAD_LETTER_REASON).unwrap_or_default();
        assert!(
            !reason.is_empty(),
            "a letter parked with no reason: {:?}",
            letter.headers
        );
        assert!(
            letter.header(h::DEAD_LETTER_ORIGIN).is_some(),
            "a letter parked without its origin: {:?}",
            letter.headers
        );
    }
    assert!(
        !parked
            .iter()
            .any(|r| r.key.as_deref() == Some(failed_id.as_str())),
        "late messages for a settled order are not errors"
    );

    // The same processes, still ready, and the hostile messages changed nothing.
    crate::common::replay::all_caught_up(&stack).await;
    assert_eq!(stack.pids(), pids, "a component restarted");
    for component in ["order", "stock", "payment"] {
        let ready = stack
            .client
            .get(stack.url(component, "/health/ready"))
            .send()
            .await
            .unwrap();
        assert!(ready.status().is_success(), "{component} is not ready");
    }
    assert_eq!(snapshot(&stack, &orders).await, before);

    // Orders on both partitions go on, and I1–I4 hold over every order.
    orders.extend(orders_on_both_partitions(&stack).await);
    check(&snapshot(&stack, &orders).await);
    assert_eq!(stack.pids(), pids, "a component restarted");
    stack.remove().await.unwrap();
}
