//! The catalog over HTTP: `GET /api/products` (public), `PUT /api/products/{productId}` and
//! `POST /api/products/{productId}/restock` (ops). The rules and the writes are
//! [`crate::catalog`]'s; this module parses requests and answers.
//!
//! A price travels as a decimal string with at most two places and no sign or leading zero
//! (`"45.00"`, `"0.5"`), from 0.01 to 1,000,000.00, the contract's bounds
//! (`contracts::validate::MAX_UNIT_PRICE`): [`PRICE_PATTERN`] says exactly which strings pass,
//! and [`parse_price`] accepts exactly those, so the OpenAPI document and the server agree.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use contracts::Validate;
use contracts::catalog::{MAX_NAME_CHARS, ProductChanged};
use contracts::validate::MAX_UNIT_PRICE;
use platform::auth::{Identity, Role};
use platform::http::{FieldError, Problem, Query};
use platform::pagination::IdPageQuery;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::{AppState, Refusal, unavailable};
use crate::catalog::{self, MAX_RESTOCK, Product, Put};

/// The prices [`parse_price`] accepts: 0.01 to 1000000.00, at most two places, no sign, no
/// leading zero.
pub const PRICE_PATTERN: &str =
    r"^(1000000(\.0{1,2})?|[1-9][0-9]{0,5}(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?))$";

/// `PUT /api/products/{productId}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"name": "Keyboard", "unitPrice": "45.00"}))]
pub struct PutProduct {
    /// 1 to 200 characters, none of them NUL (U+0000).
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000]*$")]
    pub name: String,
    /// The price from now on: a decimal string, 0.01 to 1000000.00, at most two places.
    #[schema(
        pattern = r"^(1000000(\.0{1,2})?|[1-9][0-9]{0,5}(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?))$",
        example = "45.00"
    )]
    pub unit_price: String,
}

/// `POST /api/products/{productId}/restock`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"quantity": 10}))]
pub struct Restock {
    /// Units to add, 1 to 1,000,000. An integral number (`10`, or `10.0`).
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000)]
    pub quantity: serde_json::Number,
}

/// A price as [`PRICE_PATTERN`] states it, or why not.
pub fn parse_price(text: &str) -> Result<Decimal, &'static str> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = digits(whole)
        && !(whole.len() > 1 && whole.starts_with('0'))
        && fraction.is_none_or(|f| digits(f) && f.len() <= 2);
    if !well_formed {
        return Err("a price is a decimal string with at most two places, like \"45.00\"");
    }
    let price: Decimal = text.parse().map_err(|_| "a price is at most 1000000.00")?;
    if price <= Decimal::ZERO {
        return Err("a price is greater than 0");
    }
    if price > MAX_UNIT_PRICE {
        return Err("a price is at most 1000000.00");
    }
    Ok(price)
}

/// A JSON number that is an integer (`10` or `10.0`: JSON Schema's `integer` admits both).
fn integral(number: &serde_json::Number) -> Option<i64> {
    if let Some(n) = number.as_i64() {
        return Some(n);
    }
    if number.is_u64() {
        return None;
    }
    let float = number.as_f64()?;
    // Within ±2^53 a float is an integer exactly when it has no fraction.
    #[allow(clippy::cast_possible_truncation)]
    (float.fract() == 0.0 && float.abs() <= 9_007_199_254_740_992.0).then_some(float as i64)
}

/// The product id of the path: an integer (else 400), positive (else 422).
fn product_id(path: Result<Path<String>, PathRejection>) -> Result<i64, Problem> {
    let Ok(Path(raw)) = path else {
        return Err(Problem::bad_request("the product id is not an integer"));
    };
    let id: i64 = raw
        .parse()
        .map_err(|_| Problem::bad_request("the product id is not an integer"))?;
    if id < 1 {
        return Err(invalid(
            "invalid-product",
            "The request breaks a rule of the catalog",
            "productId",
            "a product id is a positive integer",
        ));
    }
    Ok(id)
}

fn invalid(kind: &'static str, title: &'static str, field: &str, message: &str) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, kind, title).errors(vec![FieldError {
        field: field.to_owned(),
        message: message.to_owned(),
    }])
}

fn store_error(what: &str, error: catalog::Error) -> Problem {
    match error {
        catalog::Error::NotFound => Problem::not_found("No such product"),
        catalog::Error::Overflow(what) => Problem::new(
            StatusCode::CONFLICT,
            "stock-overflow",
            "The product cannot take this change",
        )
        .detail(format!("{what} would leave its range")),
        catalog::Error::Database(e) => unavailable(what, &e),
    }
}

#[utoipa::path(
    get,
    path = "/api/products",
    operation_id = "listProducts",
    tag = "catalog",
    summary = "The catalog: every product with its price and units available",
    description = "Public (no token). By product id, paginated: follow `Link: rel=\"next\"` until it is absent.",
    params(IdPageQuery),
    responses(
        (status = 200, description = "The products, at most `limit`", body = Vec<Product>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"` (RFC 8288): the next page, same path and filters with `limit` and an `after` cursor; absent on the last page"))),
        (status = 400, description = "Malformed `limit` or `after`", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::InvalidLimit,
        (status = 503, description = "The stock store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Query(query): Query<IdPageQuery>,
    uri: Uri,
) -> Result<Response, Refusal> {
    let page = query.page()?;
    let after = page
        .cursor(|raw| raw.parse::<i64>().ok())?
        .unwrap_or(i64::MIN);
    let products = catalog::list(&state.pool, after, page.fetch())
        .await
        .map_err(|e| unavailable("listing products", &e))?;
    Ok(page.respond(&uri, products, |p| p.product_id.to_string()))
}

#[utoipa::path(
    put,
    path = "/api/products/{productId}",
    operation_id = "putProduct",
    tag = "catalog",
    summary = "Add a product, or rename or reprice it",
    description = "Operators. A new product starts with no units and version 1; a change of name or price makes version + 1 and applies to orders placed from then on (placed orders keep their prices). Every change is announced as `ProductChanged` on the catalog topic and audited. A put that changes nothing answers 200 and writes nothing.",
    params(("productId" = i64, Path, minimum = 1, description = "The product")),
    request_body = PutProduct,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product was changed, or already was so", body = Product),
        (status = 201, description = "The product was added", body = Product),
        (status = 400, description = "Malformed JSON, wrong types, or a product id that is not an integer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "The token has no ops role", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The product's version cannot grow further", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A name not of 1..=200 characters or with a NUL, a price out of 0.01..=1000000.00 or with more than two places, or a product id below 1", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The stock store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(super) async fn put(
    State(state): State<AppState>,
    identity: Identity,
    path: Result<Path<String>, PathRejection>,
    platform::http::Json(body): platform::http::Json<PutProduct>,
) -> Result<Response, Refusal> {
    identity.require(Role::Ops)?;
    let product_id = product_id(path)?;
    let mut errors = Vec::new();
    let chars = body.name.chars().count();
    if !(1..=MAX_NAME_CHARS).contains(&chars) {
        errors.push(FieldError {
            field: "name".to_owned(),
            message: format!("a name has 1 to {MAX_NAME_CHARS} characters, not {chars}"),
        });
    }
    // PostgreSQL's text and jsonb cannot hold NUL: refused here rather than failing the write.
    if body.name.contains('\0') {
        errors.push(FieldError {
            field: "name".to_owned(),
            message: "a name has no NUL character".to_owned(),
        });
    }
    let price = parse_price(&body.unit_price).map_err(|message| {
        errors.push(FieldError {
            field: "unitPrice".to_owned(),
            message: message.to_owned(),
        })
    });
    let refused = || {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-product",
            "The request breaks a rule of the catalog",
        )
    };
    let Ok(price) = price else {
        return Err(refused().errors(errors).into());
    };
    if !errors.is_empty() {
        return Err(refused().errors(errors).into());
    }
    // The contract's own check, so the catalog never announces what its readers would refuse.
    let announced = ProductChanged {
        product_id,
        name: body.name.clone(),
        unit_price: price,
        version: 1,
    };
    if let Err(e) = announced.validate() {
        return Err(refused()
            .errors(vec![FieldError {
                field: e.field,
                message: e.reason,
            }])
            .into());
    }
    let put = catalog::put(&state.pool, &identity.name, product_id, &body.name, price)
        .await
        .map_err(|e| store_error("putting a product", e))?;
    Ok(match put {
        Put::Added(product) => {
            state.doorbell.ring();
            (StatusCode::CREATED, Json(product)).into_response()
        }
        Put::Changed(product) => {
            state.doorbell.ring();
            Json(product).into_response()
        }
        Put::Unchanged(product) => Json(product).into_response(),
    })
}

#[utoipa::path(
    post,
    path = "/api/products/{productId}/restock",
    operation_id = "restockProduct",
    tag = "catalog",
    summary = "Add units of a product",
    description = "Operators. The units are added under the same lock as the reservations of the saga, so no order is sold what is not there. Audited.",
    params(("productId" = i64, Path, minimum = 1, description = "The product")),
    request_body = Restock,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product with its new units", body = Product),
        (status = 400, description = "Malformed JSON, wrong types, or a product id that is not an integer", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        platform::openapi::Unauthorized,
        (status = 403, description = "The token has no ops role", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The units available would exceed 2147483647", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A quantity out of 1..=1000000, or a product id below 1", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The stock store is unavailable", body = platform::openapi::ProblemDoc, content_type = "application/problem+json"),
    )
)]
pub(super) async fn restock(
    State(state): State<AppState>,
    identity: Identity,
    path: Result<Path<String>, PathRejection>,
    platform::http::Json(body): platform::http::Json<Restock>,
) -> Result<Response, Refusal> {
    identity.require(Role::Ops)?;
    let product_id = product_id(path)?;
    let quantity = integral(&body.quantity)
        .and_then(|q| i32::try_from(q).ok())
        .filter(|q| (1..=MAX_RESTOCK).contains(q))
        .ok_or_else(|| {
            invalid(
                "invalid-restock",
                "The request breaks a rule of restocking",
                "quantity",
                "a quantity is an integer from 1 to 1000000",
            )
        })?;
    let product = catalog::restock(&state.pool, &identity.name, product_id, quantity)
        .await
        .map_err(|e| store_error("restocking", e))?;
    Ok(Json(product).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_is_two_places_at_most_from_one_cent_to_a_million() {
        for (text, cents) in [
            ("45.00", 4500),
            ("45", 4500),
            ("0.5", 50),
            ("0.01", 1),
            ("999999.99", 99_999_999),
            ("1000000.00", 100_000_000),
            ("1000000", 100_000_000),
        ] {
            assert_eq!(parse_price(text), Ok(Decimal::new(cents, 2)), "{text}");
        }
        for bad in [
            "",
            "0",
            "0.00",
            "0.0",
            "-1.00",
            "+1.00",
            "1.001",
            "01.00",
            "1.",
            ".5",
            "1e3",
            "1000000.01",
            "1000001",
            " 1.00",
            "1,00",
            "99999999999999999999999999999999",
        ] {
            assert!(parse_price(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_integral_number_is_an_integer_whatever_its_spelling() {
        let number = |text: &str| serde_json::from_str::<serde_json::Number>(text).ok();
        assert_eq!(number("10").as_ref().and_then(integral), Some(10));
        assert_eq!(number("10.0").as_ref().and_then(integral), Some(10));
        assert_eq!(number("1e3").as_ref().and_then(integral), Some(1000));
        assert_eq!(number("-2").as_ref().and_then(integral), Some(-2));
        assert_eq!(number("10.5").as_ref().and_then(integral), None);
        assert_eq!(
            number("18446744073709551615").as_ref().and_then(integral),
            None
        );
        assert_eq!(number("1e300").as_ref().and_then(integral), None);
    }
}
