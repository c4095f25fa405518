//! The products report in Redis: per product, the quantity ordered at each unit price over
//! completed orders.
//!
//! Keys, under the configured prefix `P` (one read model = one generation `G`):
//!
//! - `P products:meta` — hash: `current` (the generation reports read; `0` when absent) and,
//!   while a rebuild runs, `building`;
//! - `P products:G:p:{productId}` — hash: unit price (`"12.50"`) → quantity, grown by `HINCRBY`;
//! - `P products:G:products` — set of the product ids that have a hash;
//! - `P products:G:seen` — set of the message ids already counted (the dedupe record).
//!
//! Every write and every read is one Lua script, so each is atomic against the others and
//! against a generation switch: a report never mixes generations, a count and its dedupe
//! record never come apart. The scripts name their keys from `ARGV`, which a single Redis
//! server (or a cluster with every key in one hash slot, e.g. a `{shop}` prefix) accepts.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Client, Script};
use rust_decimal::Decimal;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::facts::{Change, Fact};
use crate::live::{Applied, Generations, ReadModel, StoreError};

/// Applies a batch: `ARGV = [base, target, (messageId, nLines, (product, price, qty)*)*]`.
/// `target` empty: live (current + building); else a rebuild's generation, which must still be
/// the one building. Returns `{counted, duplicates}` as seen in the first target.
const APPLY: &str = r"
local meta = ARGV[1] .. ':meta'
local targets
if ARGV[2] == '' then
  local g = redis.call('HMGET', meta, 'current', 'building')
  targets = { g[1] or '0' }
  if g[2] and g[2] ~= targets[1] then targets[2] = g[2] end
else
  if redis.call('HGET', meta, 'building') ~= ARGV[2] then
    return redis.error_reply('SUPERSEDED generation ' .. ARGV[2] .. ' is no longer being built')
  end
  targets = { ARGV[2] }
end
local counted, dups = 0, 0
local i = 3
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  for t, gen in ipairs(targets) do
    local base = ARGV[1] .. ':' .. gen
    if redis.call('SADD', base .. ':seen', id) == 1 then
      for j = 0, n - 1 do
        local k = i + 2 + 3 * j
        redis.call('HINCRBY', base .. ':p:' .. ARGV[k], ARGV[k + 1], ARGV[k + 2])
        redis.call('SADD', base .. ':products', ARGV[k])
      end
      if t == 1 then counted = counted + 1 end
    elseif t == 1 then
      dups = dups + 1
    end
  end
  i = i + 2 + 3 * n
end
return { counted, dups }
";

/// The current generation, flat: `product, nPairs, (price, qty)*` per product.
const READ: &str = r"
local gen = redis.call('HGET', ARGV[1] .. ':meta', 'current') or '0'
local base = ARGV[1] .. ':' .. gen
local out = {}
for _, p in ipairs(redis.call('SMEMBERS', base .. ':products')) do
  local pairs = redis.call('HGETALL', base .. ':p:' .. p)
  table.insert(out, p)
  table.insert(out, tostring(#pairs / 2))
  for _, v in ipairs(pairs) do table.insert(out, v) end
end
return out
";

/// Starts building `ARGV[2]`; returns the generation a previous, unfinished rebuild left (or
/// an empty string), for deletion.
const BEGIN: &str = r"
local meta = ARGV[1] .. ':meta'
local previous = redis.call('HGET', meta, 'building') or ''
redis.call('HSET', meta, 'building', ARGV[2])
return previous
";

/// Makes the built generation current; returns the generation it replaced.
const SWITCH: &str = r"
local meta = ARGV[1] .. ':meta'
if redis.call('HGET', meta, 'building') ~= ARGV[2] then
  return redis.error_reply('SUPERSEDED generation ' .. ARGV[2] .. ' is no longer being built')
end
local old = redis.call('HGET', meta, 'current') or '0'
redis.call('HSET', meta, 'current', ARGV[2])
redis.call('HDEL', meta, 'building')
return old
";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductReport {
    pub product_id: i64,
    pub prices: Vec<PriceQuantity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceQuantity {
    pub unit_price: String,
    pub quantity: i64,
}

/// The products read model. Cheap to clone; connects on first use and reconnects on its own.
#[derive(Clone)]
pub struct ProductsModel {
    client: Client,
    connection: Arc<OnceCell<ConnectionManager>>,
    /// `{key prefix}products`
    base: String,
    scripts: Arc<Scripts>,
}

struct Scripts {
    apply: Script,
    read: Script,
    begin: Script,
    switch: Script,
}

const TIMEOUT: Duration = Duration::from_secs(3);

impl ProductsModel {
    /// Parses the settings (and reads the CA file a TLS server is verified with); does not
    /// connect (Redis may be down at start).
    pub fn new(
        settings: &platform::settings::RedisSettings,
    ) -> Result<Self, platform::redis::RedisConfigError> {
        Ok(Self {
            client: platform::redis::client(settings)?,
            connection: Arc::new(OnceCell::new()),
            base: format!("{}products", settings.key_prefix),
            scripts: Arc::new(Scripts {
                apply: Script::new(APPLY),
                read: Script::new(READ),
                begin: Script::new(BEGIN),
                switch: Script::new(SWITCH),
            }),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        let manager = self
            .connection
            .get_or_try_init(|| {
                self.client
                    .get_connection_manager_with_config(config.clone())
            })
            .await
            .map_err(StoreError::redis)?;
        Ok(manager.clone())
    }

    /// The current generation, and the one a running rebuild builds.
    pub async fn generations(&self) -> Result<Generations, StoreError> {
        let mut con = self.connection().await?;
        let (current, building): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(format!("{}:meta", self.base))
            .arg("current")
            .arg("building")
            .query_async(&mut con)
            .await
            .map_err(StoreError::redis)?;
        Ok(Generations {
            current: current.unwrap_or_else(|| "0".to_owned()),
            building,
        })
    }

    /// `PING`, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut con = self.connection().await?;
        let _: String = redis::cmd("PING")
            .query_async(&mut con)
            .await
            .map_err(StoreError::redis)?;
        Ok(())
    }

    /// Applies completed orders to the live generations (`target` empty) or to a rebuild's.
    async fn apply_to(&self, target: &str, facts: &[Fact]) -> Result<Applied, StoreError> {
        let mut invocation = self.scripts.apply.prepare_invoke();
        invocation.arg(&self.base).arg(target);
        let mut any = false;
        for fact in facts {
            let Change::Completed(lines) = &fact.change else {
                continue;
            };
            any = true;
            invocation.arg(fact.message_id.to_string()).arg(lines.len());
            for line in lines {
                invocation
                    .arg(line.product_id)
                    .arg(&line.unit_price)
                    .arg(line.quantity);
            }
        }
        if !any {
            return Ok(Applied::default());
        }
        let mut con = self.connection().await?;
        let (counted, duplicates): (u64, u64) = invocation
            .invoke_async(&mut con)
            .await
            .map_err(StoreError::redis)?;
        Ok(Applied {
            counted,
            duplicates,
        })
    }

    /// The report from the current generation, sorted by product, then unit price.
    pub async fn report(&self) -> Result<Vec<ProductReport>, StoreError> {
        let mut con = self.connection().await?;
        let flat: Vec<String> = self
            .scripts
            .read
            .arg(&self.base)
            .invoke_async(&mut con)
            .await
            .map_err(StoreError::redis)?;
        parse_report(&flat).ok_or_else(|| StoreError::Corrupt("products report".to_owned()))
    }

    /// Starts a rebuild into a fresh generation and deletes what an unfinished earlier rebuild
    /// left. Returns the new generation.
    pub async fn begin_rebuild(&self) -> Result<String, StoreError> {
        let generation = new_generation();
        let mut con = self.connection().await?;
        let previous: String = self
            .scripts
            .begin
            .arg(&self.base)
            .arg(&generation)
            .invoke_async(&mut con)
            .await
            .map_err(StoreError::redis)?;
        if !previous.is_empty() {
            self.delete_generation(&previous).await?;
        }
        Ok(generation)
    }

    /// Applies facts read from the event store to the generation being built.
    pub async fn apply_rebuild(
        &self,
        generation: &str,
        facts: &[Fact],
    ) -> Result<Applied, StoreError> {
        self.apply_to(generation, facts).await
    }

    /// Makes `generation` current and deletes the one it replaces.
    pub async fn finish_rebuild(&self, generation: &str) -> Result<(), StoreError> {
        let mut con = self.connection().await?;
        let old: String = self
            .scripts
            .switch
            .arg(&self.base)
            .arg(generation)
            .invoke_async(&mut con)
            .await
            .map_err(StoreError::redis)?;
        self.delete_generation(&old).await
    }

    /// Deletes one generation's keys. Nothing writes to it any more: the scripts only write to
    /// the generations the meta hash names.
    async fn delete_generation(&self, generation: &str) -> Result<(), StoreError> {
        let mut con = self.connection().await?;
        let base = format!("{}:{generation}", self.base);
        let products: Vec<String> = con
            .smembers(format!("{base}:products"))
            .await
            .map_err(StoreError::redis)?;
        let mut keys: Vec<String> = products.iter().map(|p| format!("{base}:p:{p}")).collect();
        keys.push(format!("{base}:products"));
        keys.push(format!("{base}:seen"));
        for chunk in keys.chunks(500) {
            let _: () = con.unlink(chunk).await.map_err(StoreError::redis)?;
        }
        Ok(())
    }
}

impl ReadModel for ProductsModel {
    const STORE: &'static str = "redis";

    async fn apply(&self, facts: &[Fact]) -> Result<Applied, StoreError> {
        self.apply_to("", facts).await
    }
}

/// A generation name: ordered by time, unique per rebuild.
pub(crate) fn new_generation() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn parse_report(flat: &[String]) -> Option<Vec<ProductReport>> {
    let mut out = Vec::new();
    let mut rest = flat;
    while let [product, n, tail @ ..] = rest {
        let n: usize = n.parse().ok()?;
        let pairs = tail.get(..n * 2)?;
        let mut prices = pairs
            .chunks(2)
            .map(|pair| {
                let price: Decimal = pair[0].parse().ok()?;
                Some((
                    price,
                    PriceQuantity {
                        unit_price: pair[0].clone(),
                        quantity: pair[1].parse().ok()?,
                    },
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        prices.sort_by_key(|p| p.0);
        out.push(ProductReport {
            product_id: product.parse().ok()?,
            prices: prices.into_iter().map(|(_, p)| p).collect(),
        });
        rest = &tail[n * 2..];
    }
    out.sort_by_key(|p| p.product_id);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flat_report_parses_and_sorts_numerically() {
        let flat: Vec<String> = ["2", "1", "5.00", "3", "1", "2", "10.00", "1", "9.50", "4"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let report = parse_report(&flat).expect("parses");
        assert_eq!(report[0].product_id, 1);
        assert_eq!(report[0].prices[0].unit_price, "9.50");
        assert_eq!(report[0].prices[1].quantity, 1);
        assert_eq!(report[1].prices[0].quantity, 3);
    }
}
