//! Request bodies and queries, and their parsing into domain values: 400 for malformed JSON or
//! wrong types, 422 for values the domain refuses.
//!
//! Integer fields accept a JSON number with an integral value in any spelling (`3`, `3.0`,
//! `1e3`): JSON Schema's `integer` allows them, and generic clients (Schemathesis among them)
//! send them. A number with a fraction (`2.5`) is a wrong type: 400.

use std::fmt;

use axum::http::StatusCode;
use platform::http::{FieldError, Problem};
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize};

use crate::domain::{
    DomainError, MAX_LINES, MAX_QUANTITY, Price, ProductId, Quantity, Status, ValueError,
};

/// The largest integer a JSON number carries exactly everywhere (2^53 − 1); product ids above
/// it are not declared, and no catalog product has one.
pub const MAX_PRODUCT_ID: i64 = 9_007_199_254_740_991;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "items": [{"productId": 1, "quantity": 2, "unitPrice": "45.00"}]
}))]
pub struct PlaceOrderRequest {
    /// Optional: the caller's own customer id (the token's subject). The order's customer is
    /// always the caller; another id is refused with 403.
    #[schema(format = Uuid, value_type = Option<String>)]
    pub customer_id: Option<String>,
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<ItemRequest>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"productId": 1, "quantity": 2, "unitPrice": "45.00"}))]
pub struct ItemRequest {
    /// A product of the catalog (`GET /api/products`).
    #[serde(deserialize_with = "integral")]
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_i64, format = Int64)]
    pub product_id: i64,
    #[serde(deserialize_with = "integral")]
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
    /// Optional: the price the customer saw, a decimal string with at most two places. The
    /// line is priced from the catalog; a stated price that differs from the current one is
    /// refused with 409 `price-changed`.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = r"^[0-9]+(\.[0-9]{1,2})?$", example = "45.00")]
    pub unit_price: Option<PriceInput>,
}

/// Prices travel as decimal strings (`"12.50"`); a JSON number is read from its text, so
/// `12.345` is refused for its precision rather than rounded.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PriceInput {
    Text(String),
    Number(serde_json::Number),
}

impl PriceInput {
    fn parse(&self) -> Result<Price, ValueError> {
        match self {
            PriceInput::Text(text) => Price::parse(text),
            PriceInput::Number(number) => Price::parse(&number.to_string()),
        }
    }
}

/// A line as the customer asked for it, before pricing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedLine {
    pub product_id: ProductId,
    pub quantity: Quantity,
    /// The price the customer saw, if they said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Price>,
}

impl ItemRequest {
    pub fn parse(&self, at: &str, errors: &mut Vec<FieldError>) -> Option<RequestedLine> {
        let product_id = field(
            parse_product(self.product_id),
            &format!("{at}productId"),
            errors,
        );
        let quantity = field(
            Quantity::parse(self.quantity),
            &format!("{at}quantity"),
            errors,
        );
        let unit_price = match &self.unit_price {
            Some(price) => Some(field(price.parse(), &format!("{at}unitPrice"), errors)?),
            None => None,
        };
        Some(RequestedLine {
            product_id: product_id?,
            quantity: quantity?,
            unit_price,
        })
    }
}

pub fn parse_product(raw: i64) -> Result<ProductId, ValueError> {
    if raw > MAX_PRODUCT_ID {
        return Err(ValueError::ProductId);
    }
    ProductId::parse(raw)
}

pub fn field<T>(
    result: Result<T, ValueError>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    result
        .map_err(|e| {
            errors.push(FieldError {
                field: name.to_owned(),
                message: e.to_string(),
            })
        })
        .ok()
}

pub fn invalid(errors: Vec<FieldError>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-order",
        "The request breaks a rule of the order",
    )
    .errors(errors)
}

impl PlaceOrderRequest {
    /// The body's `customerId` as sent (checked against the caller by the handler) and the
    /// requested lines.
    pub fn parse(&self) -> Result<(Option<uuid::Uuid>, Vec<RequestedLine>), Problem> {
        let mut errors = Vec::new();
        let customer = match &self.customer_id {
            None => None,
            Some(raw) => match uuid::Uuid::parse_str(raw) {
                Ok(id) => Some(id),
                Err(_) => {
                    errors.push(FieldError {
                        field: "customerId".into(),
                        message: "customerId must be a UUID".into(),
                    });
                    None
                }
            },
        };
        if self.items.is_empty() {
            return Err(super::errors::domain_problem(DomainError::EmptyOrder));
        }
        if self.items.len() > MAX_LINES {
            return Err(super::errors::domain_problem(DomainError::TooManyLines));
        }
        let lines: Vec<Option<RequestedLine>> = self
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| item.parse(&format!("items[{i}]."), &mut errors))
            .collect();
        match lines.into_iter().collect::<Option<Vec<_>>>() {
            Some(lines) if errors.is_empty() => Ok((customer, lines)),
            _ => Err(invalid(errors)),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Units to remove; without it, every unit of the product.
    #[param(minimum = 1, maximum = 1000)]
    pub quantity: Option<i64>,
}

/// The filters of `GET /api/orders` (pagination is `UuidPageQuery`, beside it).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ListFilters {
    /// Only this customer's orders. A customer may name only themselves (403 otherwise);
    /// viewers may name anyone.
    #[param(value_type = Option<String>, format = Uuid)]
    pub customer_id: Option<String>,
    /// Only orders in this state.
    #[param(value_type = Option<super::doc::OrderStatus>)]
    pub status: Option<String>,
}

impl ListFilters {
    pub fn parse(&self) -> Result<(Option<uuid::Uuid>, Option<Status>), Problem> {
        let customer = match &self.customer_id {
            None => None,
            Some(raw) => Some(
                uuid::Uuid::parse_str(raw)
                    .map_err(|_| Problem::bad_request("customerId must be a UUID"))?,
            ),
        };
        let status = match self.status.as_deref() {
            None => None,
            Some("pending") => Some(Status::Pending),
            Some("completed") => Some(Status::Completed),
            Some("failed") => Some(Status::Failed),
            Some(_) => {
                return Err(Problem::bad_request(
                    "status must be one of pending, completed, failed",
                ));
            }
        };
        Ok((customer, status))
    }
}

// The schema attributes above take literals; these keep them in step with the domain's bounds.
const _: () = assert!(MAX_QUANTITY == 1000);
const _: () = assert!(MAX_LINES == 50);

/// An `i64` from a JSON number with an integral value: `3`, `3.0` and `3e0` alike.
pub fn integral<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(Integral)
}

struct Integral;

/// 2^63: every finite float below it and at least −2^63 converts to an `i64` exactly when it
/// has no fraction.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

impl Visitor<'_> for Integral {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        if v.is_finite() && v.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&v) {
            // In range and integral, so the conversion is exact.
            #[allow(clippy::cast_possible_truncation)]
            Ok(v as i64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Number {
        #[serde(deserialize_with = "integral")]
        n: i64,
    }

    fn parse(json: &str) -> Option<i64> {
        serde_json::from_str::<Number>(json).ok().map(|v| v.n)
    }

    #[test]
    fn integral_floats_are_integers_and_fractions_are_not() {
        assert_eq!(parse(r#"{"n": 3}"#), Some(3));
        assert_eq!(parse(r#"{"n": -3}"#), Some(-3));
        assert_eq!(parse(r#"{"n": 140855433.0}"#), Some(140_855_433));
        assert_eq!(parse(r#"{"n": 1e3}"#), Some(1000));
        assert_eq!(parse(r#"{"n": 2.5}"#), None);
        assert_eq!(parse(r#"{"n": 1e300}"#), None);
        assert_eq!(parse(r#"{"n": 18446744073709551615}"#), None);
        assert_eq!(parse(r#"{"n": "3"}"#), None);
        assert_eq!(parse(r#"{"n": null}"#), None);
    }
}
