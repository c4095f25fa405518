//! The console's dead letters against the real Kafka and PostgreSQL: letters parked the way the
//! readers park them (`messaging::dead_letters`), listed with each filter, inspected, redriven
//! to their origin topic (read back from it), discarded, audited, and every route answering
//! each role.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use console::dead_letters::{
    DeadLetters, Error, Filter, Letter, LetterId, Outcome, Payload, ResolutionKind, Selection,
    State,
};
use contracts::headers as h;
use messaging::dead_letters::Record;
use platform::Settings;
use platform::auth::Verifier;
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::TestDatabase;
use test_support::kafka::{RawProducer, read_until};

const WAIT: Duration = Duration::from_secs(20);

struct TestApp {
    settings: Settings,
    db: TestDatabase,
    dead_letters: DeadLetters,
    base: String,
    http: reqwest::Client,
}

/// What a test parks: the original record as a reader received it.
struct Original {
    topic: &'static str,
    partition: i32,
    offset: i64,
    key: Option<&'static str>,
    payload: Option<Vec<u8>>,
    message_type: Option<&'static str>,
}

impl Original {
    fn new(topic: &'static str, message_type: &'static str, payload: &str) -> Self {
        Original {
            topic,
            partition: 1,
            offset: 4711,
            key: Some("0192f0c1-7d2e-7b3a-9c4d-000000000001"),
            payload: Some(payload.as_bytes().to_vec()),
            message_type: Some(message_type),
        }
    }
}

impl TestApp {
    async fn start() -> TestApp {
        let settings = test_support::isolated_settings();
        messaging::topics::ensure(&settings.kafka, &messaging::topics::ALL)
            .await
            .expect("the topics are created");
        let db = TestDatabase::create().await.expect("a test database");
        console::MIGRATOR
            .run(&db.pool)
            .await
            .expect("the console's migrations run");
        let dead_letters =
            DeadLetters::new(&settings.kafka, db.pool.clone()).expect("the Kafka clients");
        let verifier = Verifier::from_settings(&settings.auth).expect("the test keys load");
        let app = console::dead_letters::api(dead_letters.clone())
            .layer(axum::Extension(verifier))
            .fallback(platform::http::no_route);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestApp {
            settings,
            db,
            dead_letters,
            base,
            http: test_support::http_client(),
        }
    }

    fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.settings.kafka.topic_prefix)
    }

    /// Parks `original` as `consumer` would, with `reason`; returns the message id it carries.
    async fn park(&self, consumer: &str, original: &Original, reason: &str) -> String {
        let message_id = uuid::Uuid::now_v7().to_string();
        let mut headers = vec![
            (
                h::MESSAGE_ID.to_owned(),
                Some(message_id.clone().into_bytes()),
            ),
            (
                h::CORRELATION_ID.to_owned(),
                Some(uuid::Uuid::now_v7().to_string().into_bytes()),
            ),
            (h::SCHEMA_VERSION.to_owned(), Some(b"1".to_vec())),
            (
                h::OCCURRED_AT.to_owned(),
                Some(b"2026-12-07T06:00:00.000000Z".to_vec()),
            ),
            // A header without a value, and one whose value is not UTF-8: both go back as
            // they came.
            ("x-empty".to_owned(), None),
            ("x-binary".to_owned(), Some(vec![0xfe, 0x00, 0xff])),
        ];
        if let Some(message_type) = original.message_type {
            headers.insert(
                1,
                (
                    h::MESSAGE_TYPE.to_owned(),
                    Some(message_type.as_bytes().to_vec()),
                ),
            );
        }
        let record = Record {
            kafka_topic: self.topic(original.topic),
            partition: original.partition,
            offset: original.offset,
            key: original.key.map(|k| k.as_bytes().to_vec()),
            payload: original.payload.clone(),
            headers,
        };
        let parker = messaging::dead_letters::DeadLetters::new(
            &self.settings.kafka,
            consumer,
            Duration::from_millis(100),
            Duration::from_secs(1),
        )
        .expect("a dead-letter publisher");
        let (_trigger, mut shutdown) = platform::shutdown::channel();
        parker
            .park(&record, reason, &mut shutdown)
            .await
            .expect("the letter is parked");
        message_id
    }

    async fn all(&self, state: State) -> Vec<Letter> {
        self.dead_letters
            .list(&Filter {
                state,
                limit: 1000,
                ..Filter::default()
            })
            .await
            .expect("the letters list")
    }

    async fn list(&self, filter: Filter) -> Vec<LetterId> {
        let letters = self
            .dead_letters
            .list(&filter)
            .await
            .expect("the letters list");
        letters.iter().map(|l| l.id).collect()
    }

    async fn audit(&self) -> Vec<messaging::audit::Entry> {
        let mut conn = self.db.pool.acquire().await.unwrap();
        messaging::audit::list(&mut conn, &Default::default(), None, 1000)
            .await
            .unwrap()
    }

    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        request.send().await.expect("the server answers")
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        request.send().await.expect("the server answers")
    }

    async fn stop(self) {
        let topics: Vec<String> = messaging::topics::ALL
            .iter()
            .map(|t| self.topic(t))
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let _ = test_support::delete_topics(&self.settings, &topics).await;
        let _ = self.db.drop_now().await;
    }
}

fn ids(letters: &[Letter]) -> Vec<LetterId> {
    letters.iter().map(|l| l.id).collect()
}

fn header<'a>(letter: &'a Letter, name: &str) -> Option<&'a str> {
    letter
        .headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
}

#[tokio::test]
async fn letters_list_newest_first_with_each_filter_and_page_by_cursor() {
    let app = TestApp::start().await;
    let stock_placed = app
        .park(
            "stock",
            &Original::new(contracts::topics::ORDERS, "OrderPlaced", r#"{"orderId":1}"#),
            "malformed OrderPlaced payload: missing field `lines`",
        )
        .await;
    app.park(
        "payment",
        &Original::new(
            contracts::topics::STOCK,
            "StockReserved",
            r#"{"total":"-1"}"#,
        ),
        "StockReserved out of range: total: negative",
    )
    .await;
    app.park(
        "stock",
        &Original::new(contracts::topics::ORDERS, "OrderFailed", "{}"),
        "handler panicked: index out of bounds",
    )
    .await;
    let binary = Original {
        payload: Some(vec![0x00, 0x9f, 0x92, 0x96, 0xff]),
        ..Original::new(contracts::topics::PAYMENTS, "PaymentCaptured", "")
    };
    app.park(
        "order",
        &binary,
        "malformed PaymentCaptured payload: not UTF-8",
    )
    .await;
    let bare = Original {
        payload: None,
        key: None,
        message_type: None,
        ..Original::new(contracts::topics::ORDERS, "", "")
    };
    app.park("projections-redis", &bare, "missing header message-id")
        .await;

    // Newest first, by the time parked and then by id.
    let all = app.all(State::Waiting).await;
    assert_eq!(all.len(), 5, "{all:#?}");
    let mut sorted = all.clone();
    sorted.sort_by_key(|l| std::cmp::Reverse((l.parked_at, l.id)));
    assert_eq!(ids(&all), ids(&sorted));
    assert_eq!(app.dead_letters.waiting().await.unwrap(), 5);

    // Each filter, alone.
    let matching = |f: &dyn Fn(&Letter) -> bool| -> Vec<LetterId> {
        all.iter().filter(|l| f(l)).map(|l| l.id).collect()
    };
    let by_consumer = app
        .list(Filter {
            consumer: Some("stock".to_owned()),
            ..Filter::default()
        })
        .await;
    assert_eq!(by_consumer, matching(&|l| l.consumer == "stock"));
    assert_eq!(by_consumer.len(), 2);
    let by_type = app
        .list(Filter {
            message_type: Some("StockReserved".to_owned()),
            ..Filter::default()
        })
        .await;
    assert_eq!(
        by_type,
        matching(&|l| l.message_type.as_deref() == Some("StockReserved"))
    );
    assert_eq!(by_type.len(), 1);
    let by_reason = app
        .list(Filter {
            reason: Some("MALFORMED".to_owned()),
            ..Filter::default()
        })
        .await;
    assert_eq!(by_reason, matching(&|l| l.reason.starts_with("malformed")));
    assert_eq!(by_reason.len(), 2);
    // A boundary between two distinct park times: `since` includes it, `until` excludes it.
    let mut times: Vec<DateTime<Utc>> = all.iter().map(|l| l.parked_at).collect();
    times.dedup();
    assert!(
        times.len() >= 2,
        "the parks share one millisecond: {times:?}"
    );
    let boundary = times[(times.len() - 1) / 2];
    let since = app
        .list(Filter {
            since: Some(boundary),
            ..Filter::default()
        })
        .await;
    assert_eq!(since, matching(&|l| l.parked_at >= boundary));
    let until = app
        .list(Filter {
            until: Some(boundary),
            ..Filter::default()
        })
        .await;
    assert_eq!(until, matching(&|l| l.parked_at < boundary));
    assert!(!since.is_empty() && !until.is_empty());
    assert_eq!(since.len() + until.len(), all.len());

    // Pages of two, each after the last of the one before, cover everything once.
    let mut paged = Vec::new();
    let mut after = None;
    for _ in 0..=all.len() {
        let page = app
            .list(Filter {
                limit: 2,
                after,
                ..Filter::default()
            })
            .await;
        assert!(page.len() <= 2);
        let Some(last) = page.last().copied() else {
            break;
        };
        paged.extend(page);
        after = Some(last);
    }
    assert_eq!(paged, ids(&all));

    // One letter: every header, the dead-letter ones too, and the payload.
    let placed = all
        .iter()
        .find(|l| l.message_id.as_deref() == Some(stock_placed.as_str()))
        .unwrap();
    let letter = app.dead_letters.get(placed.id).await.unwrap().unwrap();
    assert_eq!(&letter, placed);
    assert_eq!(letter.consumer, "stock");
    assert_eq!(
        letter.reason,
        "malformed OrderPlaced payload: missing field `lines`"
    );
    assert_eq!(
        letter.origin,
        format!("{}/1/4711", app.topic(contracts::topics::ORDERS))
    );
    assert_eq!(letter.message_type.as_deref(), Some("OrderPlaced"));
    assert_eq!(
        letter.key.as_deref(),
        Some("0192f0c1-7d2e-7b3a-9c4d-000000000001")
    );
    assert_eq!(letter.payload, Payload::Text(r#"{"orderId":1}"#.to_owned()));
    assert_eq!(header(&letter, h::DEAD_LETTER_CONSUMER), Some("stock"));
    assert_eq!(header(&letter, h::SCHEMA_VERSION), Some("1"));
    assert!(letter.headers.contains(&("x-empty".to_owned(), None)));
    assert_eq!(letter.resolution, None);

    let binary_letter = all.iter().find(|l| l.consumer == "order").unwrap();
    assert_eq!(
        binary_letter.payload,
        Payload::Base64(
            base64::engine::general_purpose::STANDARD.encode([0x00, 0x9f, 0x92, 0x96, 0xff])
        )
    );
    let bare_letter = all
        .iter()
        .find(|l| l.consumer == "projections-redis")
        .unwrap();
    assert_eq!(bare_letter.payload, Payload::Absent);
    assert_eq!(bare_letter.key, None);
    assert_eq!(bare_letter.message_type, None);

    // No such letter: an offset past the end, a partition that does not exist.
    let past = LetterId {
        partition: 0,
        offset: 1_000_000,
    };
    assert_eq!(app.dead_letters.get(past).await.unwrap(), None);
    let nowhere = LetterId {
        partition: 99,
        offset: 0,
    };
    assert_eq!(app.dead_letters.get(nowhere).await.unwrap(), None);
    app.stop().await;
}

#[tokio::test]
async fn a_redrive_republishes_the_original_to_its_origin_once_and_records_it() {
    let app = TestApp::start().await;
    let orders = app.topic(contracts::topics::ORDERS);
    for n in 0..3 {
        let payload = format!(r#"{{"n":{n}}}"#);
        let original = Original {
            partition: n % 2,
            offset: 100 + i64::from(n),
            ..Original::new(contracts::topics::ORDERS, "OrderPlaced", &payload)
        };
        app.park("stock", &original, "handler failed 5 times").await;
    }
    // Not to be redriven by the filter below: another consumer.
    app.park(
        "payment",
        &Original::new(contracts::topics::STOCK, "StockReserved", "{}"),
        "handler failed 5 times",
    )
    .await;
    let stock = Filter {
        consumer: Some("stock".to_owned()),
        ..Filter::default()
    };
    let operator = "0b9a3c2e-5f0e-4c55-9a43-1c2d3e4f5a6b";

    let dry = app
        .dead_letters
        .redrive(&Selection::Matching(stock.clone()), true, operator)
        .await
        .unwrap();
    assert_eq!(
        dry,
        Outcome {
            matched: 3,
            done: 0,
            refused: 0,
            unread: 0,
            dry_run: true
        }
    );
    assert_eq!(
        app.dead_letters.waiting().await.unwrap(),
        4,
        "a dry run changes nothing"
    );
    assert!(app.audit().await.is_empty(), "a dry run audits nothing");

    let done = app
        .dead_letters
        .redrive(&Selection::Matching(stock.clone()), false, operator)
        .await
        .unwrap();
    assert_eq!(
        done.done, dry.matched,
        "the dry run counted what the redrive did"
    );
    assert_eq!(done.matched, 3);

    // The origin topic holds each original again: its partition, key, payload and headers
    // without the dead-letter ones, plus where it came from.
    let letters = app.all(State::Redriven).await;
    assert_eq!(letters.len(), 3);
    let redriven = read_until(&app.settings, &orders, WAIT, |records| records.len() >= 3)
        .await
        .unwrap();
    assert_eq!(redriven.len(), 3, "{redriven:#?}");
    for letter in &letters {
        let record = redriven
            .iter()
            .find(|r| r.header(h::MESSAGE_ID) == letter.message_id.as_deref())
            .expect("each letter is on its origin topic again");
        let origin_partition: i32 = letter.origin.split('/').nth(1).unwrap().parse().unwrap();
        assert_eq!(record.partition, Some(origin_partition));
        assert_eq!(record.key, letter.key);
        assert_eq!(
            Some(Payload::Text(
                String::from_utf8(record.payload.clone().unwrap()).unwrap()
            )),
            Some(letter.payload.clone())
        );
        let expected: Vec<(String, String)> = letter
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with("dead-letter-"))
            .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
            .chain([(h::REDRIVEN_FROM.to_owned(), letter.id.to_string())])
            .collect();
        assert_eq!(record.headers, expected);
        let resolution = letter.resolution.as_ref().unwrap();
        assert_eq!(resolution.kind, ResolutionKind::Redriven);
        assert_eq!(resolution.actor, operator);
        assert_eq!(
            resolution.redriven_to.as_deref(),
            Some(format!("{orders}/{}/{}", origin_partition, record.offset).as_str())
        );
    }
    // Again, one by one and by filter: nothing is published or recorded twice.
    for letter in &letters {
        let again = app
            .dead_letters
            .redrive(&Selection::One(letter.id), false, operator)
            .await
            .unwrap();
        assert_eq!((again.matched, again.done), (0, 0));
    }
    let again = app
        .dead_letters
        .redrive(&Selection::Matching(stock.clone()), false, operator)
        .await
        .unwrap();
    assert_eq!((again.matched, again.done), (0, 0));
    // A record sent after the second attempts: once it is read, anything they published would
    // have been read before it.
    let producer = RawProducer::new(&app.settings).unwrap();
    for partition in 0..2 {
        producer
            .send(
                &orders,
                &test_support::kafka::Record {
                    partition: Some(partition),
                    key: Some("sentinel".to_owned()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let everything = read_until(&app.settings, &orders, WAIT, |records| {
        records
            .iter()
            .filter(|r| r.key.as_deref() == Some("sentinel"))
            .count()
            == 2
    })
    .await
    .unwrap();
    assert_eq!(everything.len(), 5, "{everything:#?}");

    // The states: three redriven, one still waiting; one audit row per letter, with its actor.
    assert_eq!(app.all(State::Waiting).await.len(), 1);
    assert_eq!(app.all(State::All).await.len(), 4);
    assert_eq!(app.all(State::Discarded).await.len(), 0);
    assert_eq!(app.dead_letters.waiting().await.unwrap(), 1);
    let audit = app.audit().await;
    assert_eq!(audit.len(), 3, "{audit:#?}");
    for letter in &letters {
        let entry = audit
            .iter()
            .find(|e| e.subject == format!("dead-letter:{}", letter.id))
            .unwrap();
        assert_eq!(entry.actor, operator);
        assert_eq!(entry.action, "dead-letter.redrive");
        assert_eq!(entry.before.as_ref().unwrap()["state"], "waiting");
        assert_eq!(entry.before.as_ref().unwrap()["consumer"], "stock");
        assert_eq!(entry.after.as_ref().unwrap()["state"], "redriven");
        assert_eq!(
            entry.after.as_ref().unwrap()["redrivenTo"].as_str(),
            letter.resolution.as_ref().unwrap().redriven_to.as_deref()
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_letter_from_outside_the_system_is_not_redriven() {
    let app = TestApp::start().await;
    let elsewhere = Original {
        topic: "not.ours",
        ..Original::new(contracts::topics::ORDERS, "OrderPlaced", "{}")
    };
    app.park("stock", &elsewhere, "unknown").await;
    let looping = Original::new(contracts::topics::DEAD_LETTERS, "OrderPlaced", "{}");
    app.park("stock", &looping, "unknown").await;
    let fine = Original::new(contracts::topics::ORDERS, "OrderPlaced", "{}");
    app.park("stock", &fine, "unknown").await;
    let letters = app.all(State::Waiting).await;
    let refused: Vec<LetterId> = letters
        .iter()
        .filter(|l| !l.origin.starts_with(&app.topic(contracts::topics::ORDERS)))
        .map(|l| l.id)
        .collect();
    assert_eq!(refused.len(), 2);
    for id in &refused {
        let error = app
            .dead_letters
            .redrive(&Selection::One(*id), true, "ops")
            .await
            .unwrap_err();
        assert!(matches!(error, Error::NotRedrivable { .. }), "{error:?}");
        let answer = app
            .post(
                "/api/ops/dead-letters/redrive",
                Some(&test_support::operator()),
                &json!({"letterId": id.to_string(), "dryRun": false}),
            )
            .await;
        assert_eq!(answer.status(), StatusCode::CONFLICT);
    }
    let outcome = app
        .dead_letters
        .redrive(&Selection::Matching(Filter::default()), false, "ops")
        .await
        .unwrap();
    assert_eq!((outcome.matched, outcome.refused, outcome.done), (3, 2, 1));
    let waiting = ids(&app.all(State::Waiting).await);
    assert_eq!(waiting.len(), 2);
    assert!(refused.iter().all(|id| waiting.contains(id)));
    // What cannot be redriven can be discarded.
    let discarded = app
        .dead_letters
        .discard(&Selection::Matching(Filter::default()), false, "ops")
        .await
        .unwrap();
    assert_eq!((discarded.matched, discarded.done), (2, 2));
    app.stop().await;
}

#[tokio::test]
async fn a_discard_records_and_audits_and_publishes_nothing() {
    let app = TestApp::start().await;
    for consumer in ["stock", "stock", "payment"] {
        app.park(
            consumer,
            &Original::new(contracts::topics::ORDERS, "OrderPlaced", "{}"),
            "poison",
        )
        .await;
    }
    let letters = app.all(State::Waiting).await;
    let one = letters.iter().find(|l| l.consumer == "stock").unwrap().id;
    let dry = app
        .dead_letters
        .discard(&Selection::One(one), true, "alice")
        .await
        .unwrap();
    assert_eq!((dry.matched, dry.done, dry.dry_run), (1, 0, true));
    let done = app
        .dead_letters
        .discard(&Selection::One(one), false, "alice")
        .await
        .unwrap();
    assert_eq!((done.matched, done.done), (1, 1));
    let letter = app.dead_letters.get(one).await.unwrap().unwrap();
    let resolution = letter.resolution.unwrap();
    assert_eq!(
        (
            resolution.kind,
            resolution.actor.as_str(),
            resolution.redriven_to
        ),
        (ResolutionKind::Discarded, "alice", None)
    );
    // Discarded, so neither redriven nor discarded again.
    let redrive = app
        .dead_letters
        .redrive(&Selection::One(one), false, "bob")
        .await
        .unwrap();
    assert_eq!((redrive.matched, redrive.done), (0, 0));
    assert_eq!(ids(&app.all(State::Discarded).await), vec![one]);
    assert_eq!(app.all(State::Waiting).await.len(), 2);
    assert_eq!(app.dead_letters.waiting().await.unwrap(), 2);
    let by_filter = app
        .dead_letters
        .discard(
            &Selection::Matching(Filter {
                consumer: Some("stock".to_owned()),
                ..Filter::default()
            }),
            false,
            "bob",
        )
        .await
        .unwrap();
    assert_eq!((by_filter.matched, by_filter.done), (1, 1));
    assert_eq!(app.dead_letters.waiting().await.unwrap(), 1);
    let audit = app.audit().await;
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("bob", "dead-letter.discard"),
            ("alice", "dead-letter.discard")
        ]
    );
    // Nothing went to the origin topic: a record sent to each partition now is the first one
    // there.
    let orders = app.topic(contracts::topics::ORDERS);
    let producer = RawProducer::new(&app.settings).unwrap();
    for partition in 0..2 {
        let sentinel = test_support::kafka::Record {
            partition: Some(partition),
            key: Some("sentinel".to_owned()),
            ..Default::default()
        };
        producer.send(&orders, &sentinel).await.unwrap();
    }
    let records = read_until(&app.settings, &orders, WAIT, |records| records.len() >= 2)
        .await
        .unwrap();
    let keys: Vec<Option<&str>> = records.iter().map(|r| r.key.as_deref()).collect();
    assert_eq!(keys, vec![Some("sentinel"); 2]);
    let error = app
        .dead_letters
        .discard(
            &Selection::One(LetterId {
                partition: 0,
                offset: 999_999,
            }),
            false,
            "bob",
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotFound(_)), "{error:?}");
    app.stop().await;
}

#[tokio::test]
async fn every_route_answers_each_role_and_refuses_bad_requests() {
    let app = TestApp::start().await;
    for n in 0..3 {
        let original = Original {
            offset: n,
            ..Original::new(contracts::topics::ORDERS, "OrderPlaced", "{}")
        };
        app.park("stock", &original, "poison").await;
    }
    let letter = app.all(State::Waiting).await[0].id;
    let ops = test_support::operator();
    let viewer = test_support::viewer();
    let (_, customer) = test_support::customer();
    let one = format!("/api/ops/dead-letters/{letter}");
    let reads = [
        "/api/ops/dead-letters",
        one.as_str(),
        "/api/ops/dead-letters/audit",
    ];
    let actions = [
        "/api/ops/dead-letters/redrive",
        "/api/ops/dead-letters/discard",
    ];
    let dry = json!({"letterId": letter.to_string(), "dryRun": true});

    for path in reads {
        let anonymous = app.get(path, None).await;
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(anonymous.headers().contains_key("www-authenticate"));
        assert_eq!(
            app.get(path, Some(&customer)).await.status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
        assert_eq!(
            app.get(path, Some(&viewer)).await.status(),
            StatusCode::OK,
            "{path}"
        );
        assert_eq!(
            app.get(path, Some(&ops)).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
    for path in actions {
        assert_eq!(
            app.post(path, None, &dry).await.status(),
            StatusCode::UNAUTHORIZED
        );
        for who in [&customer, &viewer] {
            let refused = app.post(path, Some(who), &dry).await;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
            assert_eq!(
                refused.headers()["content-type"],
                "application/problem+json"
            );
        }
        // The role is checked before the body is read.
        let malformed = app.post(path, Some(&viewer), &json!({"x": 1})).await;
        assert_eq!(malformed.status(), StatusCode::FORBIDDEN);
        let counted = app.post(path, Some(&ops), &dry).await;
        assert_eq!(counted.status(), StatusCode::OK, "{path}");
        let outcome: Outcome = counted.json().await.unwrap();
        assert_eq!(
            (outcome.matched, outcome.done, outcome.dry_run),
            (1, 0, true)
        );
    }

    // Listing: JSON camelCase, no headers or payload, pages linked.
    let page = app
        .get(
            "/api/ops/dead-letters?limit=2&consumer=stock",
            Some(&viewer),
        )
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let link = page.headers()["link"].to_str().unwrap().to_owned();
    assert!(page.headers().get("dead-letters-unread").is_none());
    let items: Vec<Value> = page.json().await.unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0]["parkedAt"].is_string() && items[0]["messageType"] == "OrderPlaced");
    assert!(items[0].get("payload").is_none());
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        next.contains("consumer=stock") && next.contains("after="),
        "{link}"
    );
    let rest = app.get(&next, Some(&viewer)).await;
    assert!(rest.headers().get("link").is_none());
    let rest: Vec<Value> = rest.json().await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_ne!(rest[0]["id"], items[0]["id"]);
    assert_ne!(rest[0]["id"], items[1]["id"]);

    // One letter, in full.
    let body: Value = app.get(&one, Some(&viewer)).await.json().await.unwrap();
    assert_eq!(body["id"], letter.to_string());
    assert_eq!(body["payload"], json!({"encoding": "text", "data": "{}"}));
    let headers = body["headers"].as_array().unwrap();
    assert!(headers.contains(&json!({"name": "dead-letter-consumer", "value": "stock"})));
    assert!(headers.contains(&json!({"name": "x-empty", "value": null})));

    // Bad requests are problems.
    let problem = |status: StatusCode| {
        move |r: &reqwest::Response| {
            r.status() == status
                && (r.headers().get("content-type"))
                    .is_some_and(|v| v == "application/problem+json")
        }
    };
    let bad_requests = [
        "/api/ops/dead-letters/12",
        "/api/ops/dead-letters/0-01",
        "/api/ops/dead-letters?after=x",
        "/api/ops/dead-letters?since=yesterday",
        "/api/ops/dead-letters?state=lost",
        "/api/ops/dead-letters?limit=many",
    ];
    for path in bad_requests {
        let r = app.get(path, Some(&viewer)).await;
        assert!(
            problem(StatusCode::BAD_REQUEST)(&r),
            "{path}: {}",
            r.status()
        );
    }
    let long = "x".repeat(201);
    let unprocessable = [
        "/api/ops/dead-letters?limit=0".to_owned(),
        "/api/ops/dead-letters?limit=1001".to_owned(),
        format!("/api/ops/dead-letters?reason={long}"),
    ];
    for path in &unprocessable {
        let r = app.get(path, Some(&viewer)).await;
        assert!(
            problem(StatusCode::UNPROCESSABLE_ENTITY)(&r),
            "{path}: {}",
            r.status()
        );
    }
    let missing = app
        .get("/api/ops/dead-letters/0-999999", Some(&viewer))
        .await;
    assert!(problem(StatusCode::NOT_FOUND)(&missing));

    let redrive = "/api/ops/dead-letters/redrive";
    let bodies_400 = [
        json!({"dryRun": true}),
        json!({"letterId": letter.to_string(), "filter": {}, "dryRun": true}),
        json!({"letterId": letter.to_string()}),
        json!({"letterId": letter.to_string(), "dryRun": "yes"}),
        json!({"filter": {"consumers": "stock"}, "dryRun": true}),
        json!({"letterId": letter.to_string(), "dryRun": true, "force": true}),
    ];
    for body in &bodies_400 {
        let r = app.post(redrive, Some(&ops), body).await;
        assert!(
            problem(StatusCode::BAD_REQUEST)(&r),
            "{body}: {}",
            r.status()
        );
    }
    let bodies_422 = [
        json!({"letterId": "zero", "dryRun": true}),
        json!({"filter": {"type": long}, "dryRun": true}),
    ];
    for body in &bodies_422 {
        let r = app.post(redrive, Some(&ops), body).await;
        assert!(
            problem(StatusCode::UNPROCESSABLE_ENTITY)(&r),
            "{body}: {}",
            r.status()
        );
    }
    let r = app
        .post(
            redrive,
            Some(&ops),
            &json!({"letterId": "0-999999", "dryRun": true}),
        )
        .await;
    assert!(problem(StatusCode::NOT_FOUND)(&r));

    // An action through the API: a filtered redrive after its dry run, audited with the
    // operator's name; the audit trail lists it.
    let filter = json!({"filter": {"consumer": "stock", "type": "OrderPlaced"}, "dryRun": true});
    let counted: Outcome = app
        .post(redrive, Some(&ops), &filter)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(counted.matched, 3);
    let mut act = filter.clone();
    act["dryRun"] = json!(false);
    let acted: Outcome = app
        .post(redrive, Some(&ops), &act)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((acted.done, acted.dry_run), (3, false));
    let trail = app
        .get("/api/ops/dead-letters/audit?limit=2", Some(&viewer))
        .await;
    assert!(trail.headers().contains_key("link"));
    let trail: Vec<Value> = trail.json().await.unwrap();
    assert_eq!(trail.len(), 2);
    assert_eq!(trail[0]["action"], "dead-letter.redrive");
    assert!(
        trail[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("dead-letter:")
    );
    let redriven: Vec<Value> = app
        .get("/api/ops/dead-letters?state=redriven", Some(&viewer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(redriven.len(), 3);
    assert_eq!(redriven[0]["resolution"]["kind"], "redriven");
    app.stop().await;
}

#[test]
fn the_openapi_document_describes_every_route_with_its_security_and_refusals() {
    let document = console::dead_letters::openapi();
    let path = std::env::temp_dir().join(format!("console-openapi-{}.json", std::process::id()));
    std::fs::write(&path, document.to_pretty_json().unwrap()).unwrap();
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("python3 runs (./dev test installs openapi-spec-validator)");
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let doc = serde_json::to_value(document).unwrap();
    let id_pattern = json!(console::dead_letters::LETTER_ID_PATTERN);
    let one = &doc["paths"]["/api/ops/dead-letters/{letterId}"]["get"]["parameters"][0];
    assert_eq!(one["schema"]["pattern"], id_pattern);
    let routes = [
        ("get", "/api/ops/dead-letters", ["401", "403", "422"]),
        (
            "get",
            "/api/ops/dead-letters/{letterId}",
            ["401", "403", "404"],
        ),
        (
            "post",
            "/api/ops/dead-letters/redrive",
            ["401", "403", "422"],
        ),
        (
            "post",
            "/api/ops/dead-letters/discard",
            ["401", "403", "422"],
        ),
        ("get", "/api/ops/dead-letters/audit", ["401", "403", "422"]),
    ];
    for (method, path, refusals) in routes {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path}");
        assert_eq!(
            operation["security"],
            json!([{"bearer": []}]),
            "{method} {path}"
        );
        for status in refusals {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {path} {status}"
            );
        }
    }
    let params = doc["paths"]["/api/ops/dead-letters"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in [
        "limit", "after", "consumer", "type", "reason", "since", "until", "state",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let after = params.iter().find(|p| p["name"] == "after").unwrap();
    assert_eq!(after["schema"]["pattern"], id_pattern);
    // Exactly one of the two shapes, each closed and each with a required dryRun.
    let shapes = doc["components"]["schemas"]["DeadLetterAction"]["oneOf"]
        .as_array()
        .unwrap();
    let required: Vec<&Value> = shapes.iter().map(|s| &s["required"]).collect();
    assert_eq!(
        required,
        vec![&json!(["letterId", "dryRun"]), &json!(["filter", "dryRun"])]
    );
    assert!(
        shapes
            .iter()
            .all(|s| s["additionalProperties"] == json!(false))
    );
    let request = &doc["paths"]["/api/ops/dead-letters/redrive"]["post"]["requestBody"];
    assert_eq!(
        request["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/DeadLetterAction"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
