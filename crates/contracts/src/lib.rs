//! The messages the services exchange over Kafka, and nothing else.
//!
//! These types are the public, versioned wire format. They are deliberately separate from each
//! service's domain types: a domain may change shape freely, a contract only by adding a new
//! version. Serde only; no I/O.
//!
//! Every message travels as a JSON payload with the metadata in Kafka headers (see
//! [`headers`]); the record key is the order id, so all messages of one order stay on one
//! partition, in order (the catalog's are keyed by product, see [`catalog`]).
//!
//! Decoding validates: a payload that parses but carries a value out of range (see
//! [`validate`]) is a [`DecodeError`], like one that does not parse.

pub mod catalog;
pub mod headers;
pub mod orders;
pub mod payments;
pub mod stock;
pub mod validate;

pub use validate::{Invalid, Validate};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Logical topic names. The deployed name is `{prefix}{name}` (see `KafkaSettings`).
pub mod topics {
    /// Facts of the order service: placed, lines changed, completed, failed.
    pub const ORDERS: &str = "shop.orders";
    /// Facts of the stock service: reserved, reservation failed, released.
    pub const STOCK: &str = "shop.stock";
    /// Facts of the payment service: captured, declined.
    pub const PAYMENTS: &str = "shop.payments";
    /// Messages a consumer could not process, with the reason in a header.
    pub const DEAD_LETTERS: &str = "shop.dead-letters";
    /// Facts of the catalog (owned by the stock service): products added, renamed, repriced.
    /// Keyed by product, not by order, and compacted.
    pub const CATALOG: &str = "shop.catalog";
}

/// A message type of the wire contract: its name and schema version travel in headers, and it
/// states the ranges of its values ([`Validate`]).
pub trait Contract: Serialize + DeserializeOwned + Validate {
    /// The `message-type` header value.
    const TYPE: &'static str;
    /// The `schema-version` header value. A breaking change adds a new type or version.
    const VERSION: u16;
    /// The logical topic the message is published to.
    const TOPIC: &'static str;
}

/// A payload that could not be turned into a known message. Consumers dead-letter these.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown message type {message_type:?} (schema version {version}) on {topic}")]
    UnknownType {
        topic: String,
        message_type: String,
        version: u16,
    },
    #[error("malformed {message_type} payload: {source}")]
    Malformed {
        message_type: &'static str,
        source: serde_json::Error,
    },
    /// Well-formed, but a value is out of the contract's range (see [`validate`]).
    #[error("{message_type} out of range: {field}: {reason}")]
    OutOfRange {
        message_type: &'static str,
        field: String,
        reason: String,
    },
    #[error("{message_type} payload of {size} bytes exceeds {limit} bytes")]
    TooLarge {
        message_type: &'static str,
        size: usize,
        limit: usize,
    },
}

/// Parses and validates a payload as `T`. The size is checked first, so that an oversized
/// payload costs no allocation.
pub(crate) fn decode_as<T: Contract>(payload: &[u8]) -> Result<T, DecodeError> {
    if payload.len() > validate::MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge {
            message_type: T::TYPE,
            size: payload.len(),
            limit: validate::MAX_PAYLOAD_BYTES,
        });
    }
    let message: T = serde_json::from_slice(payload).map_err(|source| DecodeError::Malformed {
        message_type: T::TYPE,
        source,
    })?;
    message
        .validate()
        .map_err(|Invalid { field, reason }| DecodeError::OutOfRange {
            message_type: T::TYPE,
            field,
            reason,
        })?;
    Ok(message)
}

/// Declares a topic's message enum with `decode` (type + version + payload → a validated
/// variant) and `message_type`. One arm per contract keeps the topic's vocabulary in one readable list. An
/// arm may name its schema version (`Variant(Type) = 2`); without one it is version 1.
macro_rules! topic_messages {
    (@version) => { 1 };
    (@version $version:literal) => { $version };
    ($(#[$meta:meta])* $name:ident, $topic:expr, { $($variant:ident($ty:ty) $(= $version:literal)?),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $($variant($ty)),+
        }

        impl $name {
            /// Decodes a payload by its `message-type` and `schema-version` headers.
            pub fn decode(message_type: &str, version: u16, payload: &[u8]) -> Result<Self, $crate::DecodeError> {
                $(
                    if message_type == <$ty as $crate::Contract>::TYPE && version == <$ty as $crate::Contract>::VERSION {
                        return $crate::decode_as::<$ty>(payload).map(Self::$variant);
                    }
                )+
                Err($crate::DecodeError::UnknownType {
                    topic: $topic.to_owned(),
                    message_type: message_type.to_owned(),
                    version,
                })
            }

            pub fn message_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$ty as $crate::Contract>::TYPE),+
                }
            }

            pub fn order_id(&self) -> uuid::Uuid {
                match self {
                    $(Self::$variant(m) => m.order_id),+
                }
            }
        }

        $(
            impl $crate::Contract for $ty {
                const TYPE: &'static str = stringify!($variant);
                const VERSION: u16 = topic_messages!(@version $($version)?);
                const TOPIC: &'static str = $topic;
            }
        )+
    };
}
pub(crate) use topic_messages;

/// One order line on the wire. Prices are decimal strings with two places (`"12.50"`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub product_id: i64,
    pub quantity: u32,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: rust_decimal::Decimal,
}

#[cfg(test)]
mod tests {
    use super::orders::OrderMessage;
    use super::{Contract, DecodeError};

    const PLACED: &str = r#"{"orderId": "018f2b6e-0000-7000-8000-000000000001",
        "customerId": "018f2b6e-0000-7000-8000-000000000002", "revision": 1,
        "lines": [{"productId": 1, "quantity": 2, "unitPrice": "5.00"}], "total": "10.00"}"#;

    #[test]
    fn a_message_decodes_by_its_type_and_current_schema_version() {
        let message = OrderMessage::decode("OrderPlaced", 2, PLACED.as_bytes()).unwrap();
        let OrderMessage::OrderPlaced(placed) = message else {
            panic!("{message:?}");
        };
        assert_eq!(placed.total, "10.00".parse().unwrap());
        assert_eq!(super::stock::StockReserved::VERSION, 2);
        assert_eq!(super::orders::OrderCompleted::VERSION, 1);
    }

    #[test]
    fn an_older_schema_version_is_unknown_and_a_missing_field_is_malformed() {
        let older = OrderMessage::decode("OrderPlaced", 1, PLACED.as_bytes());
        assert!(
            matches!(older, Err(DecodeError::UnknownType { version: 1, .. })),
            "{older:?}"
        );
        let without_total = PLACED.replace(r#", "total": "10.00""#, "");
        let malformed = OrderMessage::decode("OrderPlaced", 2, without_total.as_bytes());
        assert!(
            matches!(malformed, Err(DecodeError::Malformed { .. })),
            "{malformed:?}"
        );
    }
}
