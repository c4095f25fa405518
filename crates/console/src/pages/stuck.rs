//! The stuck-saga list, on the overview and the orders page and in their live sections.

use maud::{Markup, html};
use serde_json::Value;

use super::layout::{age, text};

/// Stuck sagas, oldest first.
pub(super) fn stuck_table(orders: &[Value], more: bool) -> Markup {
    html! {
        @if orders.is_empty() {
            p.ok { "No saga is stuck." }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "order" } th { "customer" } th { "placed" } } }
                tbody { @for o in orders { tr {
                    td { a href={ "/console/orders/" (text(o, "orderId")) } { code { (text(o, "orderId")) } } }
                    td { code { (text(o, "customerId")) } }
                    td.warn { (age(text(o, "placedAt"))) }
                } } }
            } }
            @if more { p.muted { "More are stuck: " a href="/console/orders" { "see every stuck saga" } } }
        }
    }
}
