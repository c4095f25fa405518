//! Orders (`/console/orders`): one order with its events, a search by customer and status, and
//! every stuck saga, live.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{age, layout, page, text, urlencode};
use super::stuck::stuck_table;
use crate::Console;
use crate::session::Session;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrdersQuery {
    order_id: Option<String>,
    customer_id: Option<String>,
    status: Option<String>,
    /// The stuck list's threshold, in seconds.
    older_than: Option<String>,
}

pub(crate) async fn orders(
    State(console): State<Console>,
    session: Session,
    Query(query): Query<OrdersQuery>,
) -> Response {
    let auth = session.authorization();
    let nonempty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let order_id = nonempty(&query.order_id);
    let customer_id = nonempty(&query.customer_id);
    let status = nonempty(&query.status);
    let order = match &order_id {
        Some(id) => Some(order_with_events(&console, &auth, id).await),
        None => None,
    };
    let search = if customer_id.is_some() || status.is_some() {
        let mut url = "/api/orders?limit=50".to_owned();
        if let Some(c) = &customer_id {
            url.push_str(&format!("&customerId={}", urlencode(c)));
        }
        if let Some(s) = &status {
            url.push_str(&format!("&status={}", urlencode(s)));
        }
        Some(crate::upstream::get(&console, &auth, "order", &url).await)
    } else {
        None
    };
    let older_than = query
        .older_than
        .as_deref()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(console.settings().console.stuck_after_seconds);
    let stuck = console.stuck(&auth, older_than, 100).await;
    let body = html! {
        h1 { "Orders" }
        form.filters method="get" action="/console/orders" {
            label { "Order id" input name="orderId" value=[order_id.as_deref()] placeholder="uuid"; }
            label { "Customer id" input name="customerId" value=[customer_id.as_deref()] placeholder="uuid"; }
            label { "Status" select name="status" {
                option value="" { "any" }
                @for s in ["pending", "completed", "failed"] { option value=(s) selected[status.as_deref() == Some(s)] { (s) } }
            } }
            label { "Stuck for at least (s)" input type="number" name="olderThan" min="0" max="2592000" value=(older_than) size="6"; }
            button type="submit" { "Search" }
        }
        @if let Some(order) = &order { (order) }
        @if let Some(search) = &search {
            h2 { "Orders found" }
            @match search {
                Ok(Value::Array(found)) if !found.is_empty() => {
                    div.table-wrap { table {
                        thead { tr { th { "order" } th { "customer" } th { "status" } th.num { "total" } th { "placed" } } }
                        tbody { @for o in found { tr {
                            td { a href={ "/console/orders/" (text(o, "orderId")) } { code { (text(o, "orderId")) } } }
                            td { code { (text(o, "customerId")) } }
                            td { (text(o, "status")) " " (text(o, "failureReason")) }
                            td.num { (text(o, "total")) }
                            td { (age(text(o, "createdAt"))) }
                        } } }
                    } }
                }
                Ok(_) => { p.muted { "No order matches." } }
                Err(e) => { p.error { (e) } }
            }
        }
        h2 { "Stuck sagas (pending over " (older_than) " s, oldest first)" }
        div #stuck-list data-live {
            @match &stuck {
                Ok((orders, more)) => { (stuck_table(orders, *more)) }
                Err(e) => { p.error { (e) } }
            }
        }
    };
    let threshold = older_than.to_string();
    page(layout(
        Some(&session),
        "orders",
        "Orders",
        Some(("orders", Some(&threshold))),
        body,
    ))
}

/// One order as the order service shows it, with its events.
async fn order_with_events(console: &Console, auth: &str, id: &str) -> Markup {
    let base = format!("/api/orders/{}", urlencode(id));
    let events_path = format!("{base}/events?limit=1000");
    let (order, events) = tokio::join!(
        crate::upstream::get(console, auth, "order", &base),
        crate::upstream::get(console, auth, "order", &events_path),
    );
    html! {
        @match order {
            Err(e) => { p.error { (e) } }
            Ok(order) => {
                h2 { "Order " code { (text(&order, "orderId")) } " · " a href={ "/console/orders/" (text(&order, "orderId")) } { "its journey" } }
                div.cards {
                    div.card { div.label { "status" } div.value { (text(&order, "status")) } div.muted { (text(&order, "failureReason")) } }
                    div.card { div.label { "total" } div.value { (text(&order, "total")) } }
                    div.card { div.label { "customer" } div { code { (text(&order, "customerId")) } } }
                    div.card { div.label { "placed" } div { (age(text(&order, "createdAt"))) } }
                }
                h2 { "Events" }
                @match events {
                    Ok(Value::Array(events)) => {
                        div.table-wrap { table {
                            thead { tr { th.num { "version" } th { "type" } th { "recorded" } th { "data" } } }
                            tbody { @for e in &events { tr {
                                td.num { (e.get("version").and_then(Value::as_i64).unwrap_or_default()) }
                                td { (text(e, "type")) }
                                td { (text(e, "recordedAt")) }
                                td { code { (e.get("data").map(Value::to_string).unwrap_or_default()) } }
                            } } }
                        } }
                    }
                    Ok(_) => { p.muted { "No events." } }
                    Err(e) => { p.error { (e) } }
                }
            }
        }
    }
}
