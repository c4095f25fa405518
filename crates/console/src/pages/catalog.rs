//! Catalog and stock (`/console/catalog`): prices, units available and reserved; reprice and
//! restock for operators.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::layout::{NoticeQuery, layout, page, text, urlencode};
use crate::Console;
use crate::session::Session;

pub(crate) async fn catalog(
    State(console): State<Console>,
    session: Session,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let auth = session.authorization();
    let (products, units) = tokio::join!(
        crate::upstream::get(&console, &auth, "stock", "/api/products?limit=1000"),
        crate::upstream::get(&console, &auth, "stock", "/api/stock?limit=1000"),
    );
    let units: Vec<Value> = match &units {
        Ok(Value::Array(units)) => units.clone(),
        _ => Vec::new(),
    };
    let held = |id: i64| {
        units
            .iter()
            .find(|u| u.get("productId").and_then(Value::as_i64) == Some(id))
            .map(|u| {
                (
                    u.get("available")
                        .and_then(Value::as_i64)
                        .unwrap_or_default(),
                    u.get("reserved")
                        .and_then(Value::as_i64)
                        .unwrap_or_default(),
                )
            })
    };
    let body = html! {
        h1 { "Catalog and stock" }
        @if !query.notice.is_empty() { p.notice role="status" { (query.notice) } }
        @if let Err(e) = &units_error(&products) { p.error { (e) } }
        @if let Ok(Value::Array(products)) = &products {
            div.table-wrap { table {
                thead { tr {
                    th.num { "product" } th { "name" } th.num { "price" } th.num { "available" } th.num { "reserved" }
                    @if session.ops { th { "reprice" } th { "restock" } }
                } }
                tbody { @for p in products {
                    @let id = p.get("productId").and_then(Value::as_i64).unwrap_or_default();
                    @let (available, reserved) = held(id).unwrap_or_default();
                    tr {
                        td.num { (id) } td { (text(p, "name")) } td.num { (text(p, "unitPrice")) }
                        td.num { (available) } td.num { (reserved) }
                        @if session.ops {
                            td { form.filters method="post" action={ "/console/catalog/" (id) "/price" } {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="hidden" name="name" value=(text(p, "name"));
                                input name="unitPrice" value=(text(p, "unitPrice")) size="9" aria-label={ "new price of product " (id) } required pattern=r"[0-9]+(\.[0-9]{1,2})?";
                                button type="submit" { "Reprice" }
                            } }
                            td { form.filters method="post" action={ "/console/catalog/" (id) "/restock" } {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="number" name="quantity" min="1" max="1000000" size="7" aria-label={ "units to add to product " (id) } required;
                                button type="submit" { "Restock" }
                            } }
                        }
                    }
                } }
            } }
        }
    };
    page(layout(Some(&session), "catalog", "Catalog", None, body))
}

fn units_error(products: &Result<Value, String>) -> Result<(), String> {
    products.as_ref().map(|_| ()).map_err(Clone::clone)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PriceForm {
    csrf: String,
    name: String,
    unit_price: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RestockForm {
    csrf: String,
    quantity: String,
}

/// Reprices a product through the stock service, which checks the role again, audits the
/// change and announces it.
pub(crate) async fn reprice(
    State(console): State<Console>,
    session: Session,
    Path(product): Path<i64>,
    Form(form): Form<PriceForm>,
) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf).and(session.require_ops()) {
        return refused.into_response();
    }
    let path = format!("/api/products/{product}");
    let body = serde_json::json!({ "name": form.name, "unitPrice": form.unit_price.trim() });
    let answer = crate::upstream::send(
        &console,
        &session.authorization(),
        reqwest::Method::PUT,
        "stock",
        &path,
        &body,
    )
    .await;
    catalog_done(
        answer,
        &format!("Product {product} now costs {}.", form.unit_price.trim()),
    )
}

pub(crate) async fn restock(
    State(console): State<Console>,
    session: Session,
    Path(product): Path<i64>,
    Form(form): Form<RestockForm>,
) -> Response {
    if let Err(refused) = session.check_csrf(&form.csrf).and(session.require_ops()) {
        return refused.into_response();
    }
    let Ok(quantity) = form.quantity.trim().parse::<i64>() else {
        return catalog_done(Err("the quantity must be a whole number".to_owned()), "");
    };
    let path = format!("/api/products/{product}/restock");
    let body = serde_json::json!({ "quantity": quantity });
    let answer = crate::upstream::send(
        &console,
        &session.authorization(),
        reqwest::Method::POST,
        "stock",
        &path,
        &body,
    )
    .await;
    catalog_done(
        answer,
        &format!("Product {product}: {quantity} units added."),
    )
}

fn catalog_done(answer: Result<Value, String>, done: &str) -> Response {
    let notice = match answer {
        Ok(_) => done.to_owned(),
        Err(e) => format!("Refused: {e}"),
    };
    Redirect::to(&format!("/console/catalog?notice={}", urlencode(&notice))).into_response()
}
