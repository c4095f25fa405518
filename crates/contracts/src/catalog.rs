//! Facts published by the catalog (the stock service owns it) on
//! [`topics::CATALOG`](crate::topics::CATALOG).
//!
//! Unlike the saga's topics, this one is keyed by product ([`product_key`]): every change of one
//! product stays on one partition, in order, and the topic is compacted, so a new reader that
//! starts from the beginning finds the latest state of every product. The order service keeps a
//! local replica of it to price the lines it is asked to place.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::validate::{self, Invalid, MAX_UNIT_PRICE, Validate};
use crate::{Contract, DecodeError};

/// The longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The record key of a product's messages: its id in decimal.
pub fn product_key(product_id: i64) -> String {
    product_id.to_string()
}

/// Every message of the catalog topic.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogMessage {
    ProductChanged(ProductChanged),
}

/// A product was added, renamed or repriced. It carries the whole product as it is now;
/// `version` grows by one with every change of the product, so a reader keeps the highest
/// version it has seen and ignores an older or repeated one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductChanged {
    pub product_id: i64,
    pub name: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
    pub version: u32,
}

impl Contract for ProductChanged {
    const TYPE: &'static str = "ProductChanged";
    const VERSION: u16 = 1;
    const TOPIC: &'static str = crate::topics::CATALOG;
}

impl Validate for ProductChanged {
    fn validate(&self) -> Result<(), Invalid> {
        validate::product_id("productId", self.product_id)?;
        let chars = self.name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(Invalid {
                field: "name".into(),
                reason: format!("{chars} characters is not from 1 to {MAX_NAME_CHARS}"),
            });
        }
        validate::money("unitPrice", self.unit_price, MAX_UNIT_PRICE)?;
        if self.unit_price.is_zero() {
            return Err(Invalid {
                field: "unitPrice".into(),
                reason: "a price is greater than 0".into(),
            });
        }
        if self.version == 0 {
            return Err(Invalid {
                field: "version".into(),
                reason: "a version starts at 1".into(),
            });
        }
        Ok(())
    }
}

impl CatalogMessage {
    /// Decodes a payload by its `message-type` and `schema-version` headers.
    pub fn decode(message_type: &str, version: u16, payload: &[u8]) -> Result<Self, DecodeError> {
        if message_type == ProductChanged::TYPE && version == ProductChanged::VERSION {
            return crate::decode_as::<ProductChanged>(payload).map(Self::ProductChanged);
        }
        Err(DecodeError::UnknownType {
            topic: crate::topics::CATALOG.to_owned(),
            message_type: message_type.to_owned(),
            version,
        })
    }

    pub fn message_type(&self) -> &'static str {
        match self {
            Self::ProductChanged(_) => ProductChanged::TYPE,
        }
    }

    pub fn product_id(&self) -> i64 {
        match self {
            Self::ProductChanged(m) => m.product_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(payload: &str) -> Result<CatalogMessage, DecodeError> {
        CatalogMessage::decode("ProductChanged", 1, payload.as_bytes())
    }

    #[test]
    fn a_product_change_decodes_and_its_ranges_are_checked() {
        let ok =
            decode(r#"{"productId": 1, "name": "Keyboard", "unitPrice": "45.00", "version": 1}"#);
        assert!(
            matches!(ok, Ok(CatalogMessage::ProductChanged(ref p)) if p.unit_price == Decimal::new(4500, 2)),
            "{ok:?}"
        );
        for bad in [
            r#"{"productId": 0, "name": "Keyboard", "unitPrice": "45.00", "version": 1}"#,
            r#"{"productId": 1, "name": "", "unitPrice": "45.00", "version": 1}"#,
            r#"{"productId": 1, "name": "Keyboard", "unitPrice": "0.00", "version": 1}"#,
            r#"{"productId": 1, "name": "Keyboard", "unitPrice": "-1.00", "version": 1}"#,
            r#"{"productId": 1, "name": "Keyboard", "unitPrice": "1.001", "version": 1}"#,
            r#"{"productId": 1, "name": "Keyboard", "unitPrice": "45.00", "version": 0}"#,
        ] {
            assert!(
                matches!(decode(bad), Err(DecodeError::OutOfRange { .. })),
                "{bad}"
            );
        }
        let unknown = CatalogMessage::decode("ProductDeleted", 1, b"{}");
        assert!(
            matches!(unknown, Err(DecodeError::UnknownType { .. })),
            "{unknown:?}"
        );
    }
}
