//! Layered settings: built-in defaults → an optional TOML file → `SHOP_*` environment variables.
//!
//! Every default points at the local stack that `./dev up` starts, so a developer never has to
//! configure anything. Nested keys use a double underscore in the environment:
//! `SHOP_KAFKA__BROKERS=host:9092`, `SHOP_POSTGRES__URL=postgres://…`.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub postgres: PostgresSettings,
    pub kafka: KafkaSettings,
    pub redis: RedisSettings,
    pub mongodb: MongoSettings,
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub payment: PaymentSettings,
    pub auth: AuthSettings,
    pub saga: SagaSettings,
    pub console: ConsoleSettings,
    pub gateway: GatewaySettings,
}

/// Where the gateway finds the instances of each component, and how it treats one it cannot
/// reach.
#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySettings {
    /// Base URLs of the order service's instances, comma-separated
    /// (`http://10.0.0.5:8081,http://10.0.0.6:8081`). Empty: one instance, at `http.host` on
    /// `http.order_port`.
    pub order_urls: String,
    /// The same for the stock service.
    pub stock_urls: String,
    /// The same for the payment service.
    pub payment_urls: String,
    /// The same for the projections.
    pub projections_urls: String,
    /// How long an instance that refused a connection is tried only after the others of its
    /// component, in milliseconds.
    pub unreachable_rest_ms: u64,
}

impl GatewaySettings {
    /// The base URLs of `component`'s instances (`order`, `stock`, `payment`,
    /// `projections`): the configured list, or the one instance at the component's port on
    /// `http.host`.
    pub fn urls(&self, http: &HttpSettings, component: &str) -> Vec<String> {
        let (configured, port) = match component {
            "order" => (&self.order_urls, http.order_port),
            "stock" => (&self.stock_urls, http.stock_port),
            "payment" => (&self.payment_urls, http.payment_port),
            _ => (&self.projections_urls, http.projections_port),
        };
        let urls: Vec<String> = configured
            .split(',')
            .map(|url| url.trim().trim_end_matches('/'))
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            vec![format!("http://{}:{port}", http.host)]
        } else {
            urls
        }
    }
}

/// The operator console (`console` crate), served by the gateway.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsoleSettings {
    /// Serve the console and its `/api/ops` routes from the gateway (`SHOP_CONSOLE__ENABLED`).
    /// Off, the gateway holds none of its connections (its database, its Kafka clients) and
    /// answers its paths 404: for a deployment that exposes the entry point and runs no console.
    pub enabled: bool,
    /// The `Host` values the console answers besides the gateway's own address and
    /// `localhost`/`127.0.0.1` on its port, comma-separated (`shop.example.com`). Any other
    /// `Host` is refused, so a page of another site cannot reach the console through a DNS name
    /// it rebinds to this address.
    pub hosts: String,
    /// How long a login lasts.
    pub session_minutes: u32,
    /// Mark the session cookie `Secure` (sent over HTTPS only): set it when a TLS proxy is in
    /// front of the gateway.
    pub secure_cookie: bool,
    /// How long a pending order may wait before the console lists it as stuck.
    pub stuck_after_seconds: u32,
}

/// The order service's watch over its sagas.
#[derive(Debug, Clone, Deserialize)]
pub struct SagaSettings {
    /// A saga not settled this many seconds after its order was placed fails the order with
    /// `timed_out` (`SHOP_SAGA__DEADLINE_SECONDS`).
    pub deadline_seconds: u64,
    /// How often the order service looks for sagas past their deadline, in milliseconds: the
    /// most a timeout comes late.
    pub deadline_poll_millis: u64,
}

/// How bearer tokens are verified (see [`crate::auth`]). Locally a key pair under `.local/auth/`
/// that `./dev` creates; in production an OpenID Connect issuer's JWKS:
/// `SHOP_AUTH__ISSUER=https://id.example.com/ SHOP_AUTH__AUDIENCE=shop
/// SHOP_AUTH__JWKS_URL=https://id.example.com/.well-known/jwks.json SHOP_AUTH__ALGORITHMS=RS256`.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// The only accepted `iss`.
    pub issuer: String,
    /// The `aud` a token must name.
    pub audience: String,
    /// Accepted signature algorithms, comma-separated (`EdDSA`, `ES256`, `ES384`, `RS256`, …,
    /// `PS512`). HMAC algorithms and `none` are refused at start: the keys here are public.
    pub algorithms: String,
    /// The issuer's JSON Web Key Set; when set, `public_key_file` is not read.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A PEM public key (SPKI), used when no `jwks_url` is set. Relative to the working
    /// directory; `./dev` passes an absolute path.
    pub public_key_file: String,
    /// The `kid` of the local key pair: tokens name it, the verifier looks it up.
    pub key_id: String,
    /// The PKCS#8 PEM private key `shop token` signs with. Services never read it.
    pub private_key_file: String,
    /// The claim holding the roles: a JSON array of strings (or a space-separated string).
    /// A dotted name walks into objects, e.g. `realm_access.roles`.
    pub role_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// Least time between two fetches of the key set; a token naming an unknown `kid` triggers
    /// a fetch only once per interval, so bogus kids cannot hammer the issuer.
    pub jwks_refetch_seconds: u64,
    /// Age after which the key set is fetched again on use, so a key the issuer withdrew stops
    /// verifying.
    pub jwks_max_age_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentSettings {
    /// Credit of a customer the payment service sees for the first time.
    #[serde(with = "rust_decimal::serde::str")]
    pub starting_credit: rust_decimal::Decimal,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PostgresSettings {
    /// Server URL without a database name; each service appends its own database.
    pub url: String,
    pub max_connections: u32,
    /// Connections opened at start and kept open (the default: all of them, a fixed-size pool).
    /// A pool that grows under load opens new backends just when the load arrives, and each
    /// starts with cold caches and no prepared statements.
    pub min_connections: u32,
    /// The database each service owns on that server.
    pub databases: Databases,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Databases {
    pub order: String,
    pub stock: String,
    pub payment: String,
    /// The console's own: its sessions, the dead letters' resolutions and its audit trail.
    pub console: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    /// Comma-separated bootstrap servers.
    pub brokers: String,
    /// Prepended to every topic name, so several systems (or tests) can share one cluster.
    pub topic_prefix: String,
    /// Partitions of the topics the services create. Orders spread over them by key, and a
    /// consumer group can keep at most this many instances busy. Each one costs latency on a
    /// small machine: librdkafka puts one partition in a produce request, so a relay batch over
    /// more partitions is more requests for the broker. The default, 2, lets two instances of
    /// each consumer share the work (docs/decisions/0002-two-kafka-partitions.md).
    pub partitions: i32,
    /// Replication factor of created topics (1 on a single local broker, 3 in `./dev up
    /// --cluster`).
    pub replication: i32,
    /// `min.insync.replicas` of created topics: how many replicas must hold a record before an
    /// `acks=all` producer (every producer here) hears it was written. Unset, a topic takes the
    /// broker's default. With a replication of 3, 2 lets one broker be down without stopping
    /// writes, and no acknowledged record lives on one broker alone.
    #[serde(default)]
    pub min_insync_replicas: Option<i32>,
    /// librdkafka's `security.protocol`: `plaintext` (unset, the local broker), `ssl`,
    /// `sasl_plaintext` or `sasl_ssl` (a managed cluster, or `./dev start kafka-secure`).
    #[serde(default)]
    pub security_protocol: Option<String>,
    /// `sasl.mechanism` with a SASL protocol: `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`.
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    /// The SASL user: one principal per component, so the cluster's ACLs give each only its own
    /// topics and consumer groups.
    #[serde(default)]
    pub username: Option<String>,
    /// The SASL password. Prefer `password_file`, which keeps it out of the environment;
    /// [`Settings::load`] reads that file into this field.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the SASL password (trailing whitespace is ignored).
    #[serde(default)]
    pub password_file: Option<String>,
    /// PEM file of the certificate authorities the brokers' certificates must chain to
    /// (`ssl.ca.location`). Unset, OpenSSL's default roots.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// A credential: deserialized like a string, printed as `***` by `Debug`, so settings can be
/// logged whole.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl KafkaSettings {
    /// Reads `password_file` into `password`, so every Kafka client of the process is built
    /// from a password in memory and none fails later on an unreadable file.
    pub fn read_password_file(&mut self) -> Result<(), config::ConfigError> {
        let Some(path) = &self.password_file else {
            return Ok(());
        };
        let password = std::fs::read_to_string(path).map_err(|e| {
            config::ConfigError::Message(format!(
                "reading the Kafka password file {path} (SHOP_KAFKA__PASSWORD_FILE): {e}; \
                 point it at a readable file holding the SASL password, or unset it"
            ))
        })?;
        self.password = Some(Secret::new(password.trim_end()));
        Ok(())
    }
}

/// Where the projections keep the products read model (see [`crate::redis::client`]).
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// `redis://host:port`, or over TLS with an ACL user as managed services require:
    /// `rediss://user:password@host:port`.
    pub url: String,
    /// Prepended to every key the projections write.
    pub key_prefix: String,
    /// The PEM certificate(s) of the authority that signed the server's certificate, for a
    /// `rediss://` server whose certificate the system's roots do not verify (`./dev`'s
    /// `.local/tls/ca.pem`). Unset: the system's roots.
    #[serde(default)]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MongoSettings {
    pub url: String,
    pub database: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// Where the components listen, and where the gateway finds them. The default, loopback,
    /// keeps the components and their internal routes (`/metrics`, `/health/*`) off the
    /// network: only the gateway and operators on the host reach them.
    pub host: String,
    /// Where the gateway, the one public entry point, listens.
    pub gateway_host: String,
    pub gateway_port: u16,
    pub order_port: u16,
    pub stock_port: u16,
    pub payment_port: u16,
    pub projections_port: u16,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Longest a client may take to send a request's headers (and longest an idle kept-alive
    /// connection stays open), in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Longest pause between two pieces of a request body, in milliseconds: a client that
    /// trickles its body is cut off.
    pub body_read_timeout_ms: u64,
    /// Longest a request may take until its answer starts, in milliseconds; past it the answer
    /// is 504.
    pub request_timeout_ms: u64,
    /// Requests served at once by one process; past it a request is shed with 503 and
    /// `Retry-After` rather than queued.
    pub max_in_flight: usize,
    /// Open connections one process accepts; past it new connections wait in the listen queue.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// `tracing_subscriber::EnvFilter` syntax.
    pub log_filter: String,
    /// Emit JSON lines instead of human-readable logs.
    pub json_logs: bool,
    /// OTLP/HTTP collector base URL (e.g. `http://127.0.0.1:4318`); spans are exported only
    /// when set.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// OpenTelemetry spans and trace propagation. Off only to measure their overhead.
    #[serde(default = "enabled")]
    pub traces: bool,
    /// The Prometheus recorder behind `/metrics`. Off only to measure its overhead.
    #[serde(default = "enabled")]
    pub metrics: bool,
}

fn enabled() -> bool {
    true
}

const DEFAULTS: &str = r#"
[postgres]
# The Unix socket of `./dev`'s server (in /tmp); `postgres://postgres@127.0.0.1:5432` is the same
# server over TCP.
url = "postgres://postgres@%2Ftmp:5432"
max_connections = 16
min_connections = 16

[postgres.databases]
order = "shop_order"
stock = "shop_stock"
payment = "shop_payment"
console = "shop_console"

[kafka]
brokers = "127.0.0.1:9092"
topic_prefix = ""
partitions = 2
replication = 1

[redis]
url = "redis://127.0.0.1:6379"
key_prefix = "shop:"

[mongodb]
url = "mongodb://127.0.0.1:27017"
database = "shop"

[http]
host = "127.0.0.1"
gateway_host = "127.0.0.1"
gateway_port = 8080
order_port = 8081
stock_port = 8082
payment_port = 8083
projections_port = 8084
body_limit = 65536
header_read_timeout_ms = 5000
body_read_timeout_ms = 5000
request_timeout_ms = 15000
max_in_flight = 512
max_connections = 4096

[telemetry]
log_filter = "info"
json_logs = false

[payment]
starting_credit = "10000.00"

[auth]
issuer = "urn:shop:dev"
audience = "shop"
algorithms = "EdDSA"
public_key_file = ".local/auth/public.pem"
key_id = "local"
private_key_file = ".local/auth/private.pem"
role_claim = "roles"
leeway_seconds = 30
jwks_refetch_seconds = 30
jwks_max_age_seconds = 3600

[saga]
deadline_seconds = 60
deadline_poll_millis = 1000

[console]
enabled = true
hosts = ""
session_minutes = 480
secure_cookie = false
stuck_after_seconds = 5

[gateway]
order_urls = ""
stock_urls = ""
payment_urls = ""
projections_urls = ""
unreachable_rest_ms = 2000
"#;

impl Settings {
    /// Defaults, then the file named by `SHOP_CONFIG` (if set), then `SHOP_*` variables; then
    /// the files that settings name (`kafka.password_file`) are read.
    pub fn load() -> Result<Self, config::ConfigError> {
        let mut settings = Self::layered()?;
        settings.kafka.read_password_file()?;
        Ok(settings)
    }

    fn layered() -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Ok(path) = std::env::var("SHOP_CONFIG") {
            builder = builder.add_source(config::File::with_name(&path));
        }
        builder
            .add_source(
                config::Environment::with_prefix("SHOP")
                    .prefix_separator("_")
                    .separator("__"),
            )
            .build()?
            .try_deserialize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_at_the_local_stack() {
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .expect("built-in defaults deserialize");
        assert_eq!(settings.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(settings.postgres.url, "postgres://postgres@%2Ftmp:5432");
        assert_eq!(settings.http.gateway_port, 8080);
        // Components listen where only this host (the gateway, operators) reaches them.
        assert_eq!(settings.http.host, "127.0.0.1");
        assert_eq!(settings.http.body_limit, 64 * 1024);
        // Two instances per consumer group, and no more produce requests per relay batch than
        // that (see `KafkaSettings::partitions`).
        assert_eq!(settings.kafka.partitions, 2);
        // The local key pair of `./dev`, and no JWKS unless configured.
        assert_eq!(settings.auth.public_key_file, ".local/auth/public.pem");
        assert_eq!(settings.auth.jwks_url, None);
        assert_eq!(settings.saga.deadline_seconds, 60);
        // One instance of each component, at its port; topics take the broker's own
        // `min.insync.replicas`.
        assert_eq!(
            settings.gateway.urls(&settings.http, "order"),
            ["http://127.0.0.1:8081"]
        );
        assert_eq!(settings.kafka.min_insync_replicas, None);
        // Plaintext to the local broker unless configured otherwise.
        assert_eq!(settings.kafka.security_protocol, None);
        assert_eq!(settings.kafka.password, None);
        // Plain Redis on loopback, no CA of its own.
        assert_eq!(settings.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(settings.redis.ca_file, None);
    }

    #[test]
    fn a_component_may_have_several_instances() {
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .set_override(
                "gateway.stock_urls",
                " http://127.0.0.1:8082/, http://127.0.0.1:8182 ,",
            )
            .and_then(|b| b.set_override("kafka.min_insync_replicas", "2"))
            .and_then(|builder| builder.build())
            .and_then(config::Config::try_deserialize)
            .expect("defaults with overrides deserialize");
        assert_eq!(
            settings.gateway.urls(&settings.http, "stock"),
            ["http://127.0.0.1:8082", "http://127.0.0.1:8182"]
        );
        assert_eq!(
            settings.gateway.urls(&settings.http, "payment"),
            ["http://127.0.0.1:8083"]
        );
        assert_eq!(settings.kafka.min_insync_replicas, Some(2));
    }
}
