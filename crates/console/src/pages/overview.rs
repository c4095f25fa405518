//! The overview (`/console`): saga outcomes and latency, components, outbox backlog, consumer
//! and read-model lag, dead letters waiting and the oldest stuck sagas, live.

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{layout, number, page, rate, seconds};
use super::stuck::stuck_table;
use crate::Console;
use crate::overview::Overview;
use crate::session::Session;

pub(crate) async fn overview(State(console): State<Console>, session: Session) -> Response {
    let figures = console.overview_now(&session.authorization()).await;
    let body = html! {
        h1 { "Overview" }
        div #overview-figures data-live { (overview_figures(&figures)) }
        h2 { "Stuck sagas" }
        div #overview-stuck data-live { (stuck_table(&figures.stuck, figures.more_stuck)) }
    };
    page(layout(
        Some(&session),
        "overview",
        "Overview",
        Some(("overview", None)),
        body,
    ))
}

/// The figures of the overview: the part of the page that updates live.
pub(crate) fn overview_figures(o: &Overview) -> Markup {
    html! {
        @for problem in &o.problems { p.error { "Could not read " (problem) } }
        div.cards {
            div.card { div.label { "Completed" } div.value.ok { (rate(o.sagas.completed_per_second)) } div.muted { (number(Some(o.sagas.completed))) " in all" } }
            div.card { div.label { "Failed" } div.value.bad { (rate(o.sagas.failed_per_second)) } div.muted { (number(Some(o.sagas.failed))) " in all" } }
            div.card { div.label { "Saga latency p50" } div.value { (seconds(o.sagas.latency_p50)) } }
            div.card { div.label { "Saga latency p99" } div.value { (seconds(o.sagas.latency_p99)) } }
            div.card {
                div.label { "Dead letters waiting" }
                div.value.bad[o.dead_letters_waiting.is_some_and(|n| n > 0)] {
                    a href="/console/dead-letters" { (o.dead_letters_waiting.map_or_else(|| "–".to_owned(), |n| n.to_string())) }
                }
            }
            div.card { div.label { "Stuck sagas" } div.value.warn[!o.stuck.is_empty()] { (o.stuck.len()) @if o.more_stuck { "+" } } }
        }
        h2 { "Components" }
        p {
            @for c in &o.components {
                @let answering = c.instances.iter().filter(|i| i.up).count();
                span.ok[c.up].bad[!c.up] {
                    (c.name) (if c.up { " ✓" } else { " ✗ unreachable" })
                    @if c.instances.len() > 1 { " (" (answering) " of " (c.instances.len()) " instances)" }
                } " "
            }
        }
        h2 { "Failures by reason" }
        p {
            @for r in &o.sagas.failed_by_reason { (r.reason) ": " (number(Some(r.count))) " · " }
        }
        h2 { "Outbox backlog" }
        div.table-wrap { table {
            thead { tr { th { "service" } th.num { "rows waiting" } th.num { "oldest" } } }
            tbody { @for b in &o.outbox { tr {
                td { (b.service) } td.num { (number(b.pending)) } td.num { (seconds(b.oldest_age_seconds)) }
            } } }
        } }
        h2 { "Consumer lag" }
        div.table-wrap { table {
            thead { tr { th { "group" } th { "topic" } th.num { "partition" } th.num { "messages" } th.num { "behind" } } }
            tbody { @for l in &o.lag { tr {
                td { (l.group) } td { (l.topic) } td.num { (l.partition) }
                td.num.warn[l.messages > 0] { (l.messages) } td.num { (seconds(l.seconds)) }
            } } }
        } }
        h2 { "Read models" }
        div.table-wrap { table {
            thead { tr { th { "store" } th.num { "partition" } th.num { "events behind" } } }
            tbody { @for r in &o.read_models { tr {
                td { (r.store) } td.num { (r.partition) } td.num { (number(Some(r.events))) }
            } } }
        } }
        p.muted { "As of " (o.at.format("%H:%M:%S UTC")) }
    }
}
