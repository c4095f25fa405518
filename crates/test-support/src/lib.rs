//! Test scaffolding for the real servers of the local stack (`./dev test` starts them).
//!
//! Isolation comes from names, not from fakes: every test gets a fresh PostgreSQL database, a
//! random Kafka topic prefix and consumer group, a random Redis key prefix and Mongo database.
//!
//! The heavier harnesses are features, so a crate builds only what its tests use: `browser` (a
//! headless Chromium), `stack` (the system as processes of the `shop` executable),
//! `in-process` (order, stock and payment in the test's own process) and `handler` (a batch of
//! messages through a consumer handler).

#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "handler")]
pub mod handler;
#[cfg(feature = "in-process")]
pub mod in_process;
pub mod kafka;
#[cfg(feature = "stack")]
pub mod stack;

use std::time::Duration;

use anyhow::Context;
use platform::Settings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use sqlx::PgPool;

/// The settings the tests run with: the same defaults and `SHOP_*` overrides as the services,
/// except that pools open connections only when needed: a test neither needs a warm pool nor
/// should hold a fixed one per database it creates.
pub fn settings() -> Settings {
    let mut settings = Settings::load().expect("settings load from defaults and SHOP_* variables");
    settings.postgres.min_connections = 0;
    settings.auth = auth_settings();
    settings
}

/// The token settings of every test: the default issuer and audience, verified with the test
/// key pair in `crates/platform/tests/keys` (Ed25519, `kid` "test-a"), which [`token`] signs
/// with. Spawned processes get the same through [`auth_env`].
pub fn auth_settings() -> platform::settings::AuthSettings {
    let mut auth = Settings::load()
        .expect("settings load from defaults and SHOP_* variables")
        .auth;
    auth.jwks_url = None;
    auth.public_key_file = test_key("ed25519-a.pub.pem");
    auth.private_key_file = test_key("ed25519-a.pem");
    auth.key_id = "test-a".to_owned();
    auth
}

/// [`auth_settings`] as `SHOP_AUTH__*` variables, for a component run as a child process.
pub fn auth_env() -> Vec<(&'static str, String)> {
    let auth = auth_settings();
    vec![
        ("SHOP_AUTH__PUBLIC_KEY_FILE", auth.public_key_file),
        ("SHOP_AUTH__PRIVATE_KEY_FILE", auth.private_key_file),
        ("SHOP_AUTH__KEY_ID", auth.key_id),
        ("SHOP_AUTH__JWKS_URL", String::new()),
    ]
}

fn test_key(name: &str) -> String {
    format!(
        "{}/../platform/tests/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A bearer token (an hour) for `subject` with `roles`, signed with the test key.
pub fn token(subject: uuid::Uuid, roles: &[platform::auth::Role]) -> String {
    platform::auth::Signer::from_settings(&auth_settings())
        .expect("the test key signs")
        .token(subject, roles, Duration::from_secs(3600))
        .expect("a token signs")
}

/// `Authorization: Bearer` with a fresh customer's token; the customer id is returned too.
pub fn customer() -> (uuid::Uuid, String) {
    let id = uuid::Uuid::new_v4();
    (
        id,
        format!("Bearer {}", token(id, &[platform::auth::Role::Customer])),
    )
}

/// `Authorization: Bearer` for an operator (`ops`, which implies `viewer`).
pub fn operator() -> String {
    format!(
        "Bearer {}",
        token(uuid::Uuid::new_v4(), &[platform::auth::Role::Ops])
    )
}

/// `Authorization: Bearer` for a viewer.
pub fn viewer() -> String {
    format!(
        "Bearer {}",
        token(uuid::Uuid::new_v4(), &[platform::auth::Role::Viewer])
    )
}

/// Settings with a topic prefix of their own, so a test's services neither see nor feed the
/// topics and consumer groups of other tests or of a running local stack.
pub fn isolated_settings() -> Settings {
    let mut settings = settings();
    settings.kafka.topic_prefix = format!("{}.", unique("test"));
    settings
}

/// An HTTP client for the stack's servers. The servers close a connection that sat idle for
/// their header-read timeout (5 s by default); a client that reuses one idle longer can send a
/// request just as the server closes it and get no answer. Idle connections are dropped after
/// 1 s here, so a test that blocked for a while (stopping a server, say) never reuses one.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .expect("an HTTP client with default TLS and DNS settings builds")
}

/// A short random suffix for database, topic, group and key names.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// A fresh, empty database on the configured PostgreSQL server. It is dropped by
/// [`TestDatabase::drop_now`]; databases a failed test leaves behind are named `test_*` and are
/// wiped by `./dev reset`.
pub struct TestDatabase {
    pub name: String,
    pub pool: PgPool,
    settings: Settings,
}

impl TestDatabase {
    pub async fn create() -> anyhow::Result<Self> {
        let settings = settings();
        let name = unique("test");
        let pool = platform::postgres::connect(&settings.postgres, &name)
            .await
            .with_context(|| format!("creating test database {name}; is `./dev up` running?"))?;
        Ok(Self {
            name,
            pool,
            settings,
        })
    }

    pub async fn drop_now(self) -> anyhow::Result<()> {
        self.pool.close().await;
        platform::postgres::drop_database(&self.settings.postgres, &self.name).await?;
        Ok(())
    }
}

/// Creates topics with `partitions` partitions and waits until the broker reports them.
pub async fn create_topics(
    settings: &Settings,
    topics: &[&str],
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = platform::kafka::client_config(&settings.kafka)
        .create()
        .context("creating Kafka admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Deletes topics; ones already gone are fine. A broker's work grows with its partitions, so
/// whatever creates topics per run should delete them after.
pub async fn delete_topics(settings: &Settings, topics: &[&str]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = platform::kafka::client_config(&settings.kafka)
        .create()
        .context("creating Kafka admin client")?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_topics(topics, &options).await? {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => anyhow::bail!("deleting topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// The prefixes under which tests and benchmarks make their topics ([`unique`] names).
const RUN_PREFIXES: [&str; 4] = ["test", "t", "sys", "bench"];

/// A topic some test or benchmark made: `{prefix}_{12 hex digits}.` then its logical name.
pub fn is_run_topic(topic: &str) -> bool {
    let Some((prefix, rest)) = topic.split_once('_') else {
        return false;
    };
    RUN_PREFIXES.contains(&prefix)
        && rest.len() > 13
        && rest.as_bytes()[..12].iter().all(u8::is_ascii_hexdigit)
        && rest.as_bytes()[12] == b'.'
}

/// Deletes every topic earlier test and benchmark runs left on the broker and returns how
/// many there were. A broker restarted with thousands of partitions takes a minute to elect
/// their leaders, which the fault tests (they restart it) cannot tell from a lost broker.
pub async fn drop_run_topics(settings: &Settings) -> anyhow::Result<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let settings_for_list = settings.clone();
    let topics = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let consumer: BaseConsumer = platform::kafka::client_config(&settings_for_list.kafka)
            .create()
            .context("creating Kafka client")?;
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(30))
            .context("listing the broker's topics")?;
        Ok(metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|name| is_run_topic(name))
            .collect())
    })
    .await??;
    for chunk in topics.chunks(500) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        delete_topics(settings, &names).await?;
    }
    Ok(topics.len())
}

/// Polls `check` until it returns `Some`, or fails after `timeout`. Tests never sleep blindly.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(match last_error {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow::anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whose turn it is among the tests of one binary: a test that stops a shared server, or
/// measures the whole process, runs [`alone`]; every other test that uses the servers holds a
/// [`shared`] turn. One binary per crate can then hold its fault drills too.
static TURNS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A test's turn, released when dropped. A test takes one turn only: a second shared turn
/// taken while a test waits to run alone would wait behind it for good.
#[must_use = "the turn ends when this is dropped"]
pub enum Turn {
    Shared(tokio::sync::RwLockReadGuard<'static, ()>),
    Alone(tokio::sync::RwLockWriteGuard<'static, ()>),
}

/// Waits until no other test of this binary runs, and keeps them out until dropped.
pub async fn alone() -> Turn {
    Turn::Alone(TURNS.write().await)
}

/// Waits until no test that runs alone does, and keeps those out until dropped.
pub async fn shared() -> Turn {
    Turn::Shared(TURNS.read().await)
}

/// Runs the repository's `./dev ARGS` (fault drills stop and start servers with it), failing
/// the test if it fails.
pub fn dev(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev");
    let status = std::process::Command::new(script)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running ./dev");
    assert!(status.success(), "./dev {args:?} failed");
}

/// A server stopped with `./dev stop`; dropping it starts the server again, so a failing drill
/// never leaves it down for the tests after it.
#[must_use = "the server starts again when this is dropped"]
pub struct Stopped(&'static str);

impl Stopped {
    pub fn server(name: &'static str) -> Self {
        dev(&["stop", name]);
        Stopped(name)
    }

    /// Starts the server again now.
    pub fn restart(self) {}
}

impl Drop for Stopped {
    fn drop(&mut self) {
        dev(&["start", self.0]);
    }
}

/// Sequential scans of `table` this session has made and not yet reported to the statistics
/// (`pg_stat_xact_user_tables`). Two readings inside one transaction bracket its statements,
/// since nothing is reported before it ends. A statement by key on a table that grew from empty
/// should need no scan; see ARCHITECTURE.md, "Generic plans".
pub async fn unreported_seq_scans(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> anyhow::Result<i64> {
    let scans: Option<i64> =
        sqlx::query_scalar("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = $1")
            .bind(table)
            .fetch_optional(conn)
            .await?;
    Ok(scans.unwrap_or(0))
}

/// Waits until an order service, whose database `order` is, prices from the whole seeded
/// catalog: stock publishes it when it first starts, and the order service's replica takes one
/// relay and one consumer hop to learn it (an order placed before that is refused with 422
/// unknown-product).
///
/// # Panics
///
/// When the replica does not hold the three seeded products within 30 s: the test fails.
pub async fn seeded_catalog_replicated(order: &sqlx::PgPool) {
    eventually(
        Duration::from_secs(30),
        "the order service's catalog replica to hold the seeded products",
        || async move {
            let known: i64 =
                sqlx::query_scalar("SELECT count(*) FROM catalog WHERE product_id IN (1, 2, 3)")
                    .fetch_one(order)
                    .await?;
            Ok((known == 3).then_some(()))
        },
    )
    .await
    .expect("the seeded catalog replicates");
}

/// The value of the sample `name{labels…}` in a Prometheus text exposition, where every given
/// `label="value"` pair is among the sample's labels; summed over the matching samples.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in exposition.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            *total.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::{is_run_topic, sample};

    #[test]
    fn a_sample_is_summed_over_the_series_with_the_given_labels() {
        let exposition = "\
# TYPE requests counter
requests{route=\"/a\",status=\"200\"} 3
requests{route=\"/b\",status=\"200\"} 4
requests{route=\"/b\",status=\"500\"} 1
requests_total 9
";
        assert_eq!(
            sample(exposition, "requests", &[("status", "200")]),
            Some(7.0)
        );
        assert_eq!(
            sample(exposition, "requests", &[("route", "/b")]),
            Some(5.0)
        );
        assert_eq!(sample(exposition, "requests_total", &[]), Some(9.0));
        assert_eq!(sample(exposition, "requests", &[("status", "404")]), None);
        assert_eq!(sample(exposition, "absent", &[]), None);
    }

    #[test]
    fn only_the_topics_of_test_and_benchmark_runs_are_run_topics() {
        for run in [
            "test_0123456789ab.shop.orders",
            "t_abcdef012345.shop.stock",
            "sys_646d85678af2.shop.dead-letters",
            "bench_646d85678af2.shop.payments",
        ] {
            assert!(is_run_topic(run), "{run}");
        }
        for kept in [
            "shop.orders",
            "gwconfirm.shop.orders",
            "test.smoke",
            "test_0123456789ab",
            "test_0123456789a.shop.orders",
            "test_0123456789ag.shop.orders",
            "mine_0123456789ab.shop.orders",
            "test_0123456789abc.shop",
        ] {
            assert!(!is_run_topic(kept), "{kept}");
        }
    }
}
