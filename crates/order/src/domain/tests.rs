//! Given events, when a command, then events or an error.

use contracts::orders::FailureReason;
use uuid::Uuid;

use super::*;

fn line(product: i64, quantity: i64, price: &str) -> Line {
    Line {
        product_id: ProductId::parse(product).unwrap(),
        quantity: Quantity::parse(quantity).unwrap(),
        unit_price: Price::parse(price).unwrap(),
    }
}

fn customer() -> CustomerId {
    CustomerId(Uuid::from_u128(7))
}

fn placed(lines: Vec<Line>) -> Event {
    Event::OrderPlaced {
        customer_id: customer(),
        lines,
    }
}

/// Runs `when` against the fold of `given`.
fn given(events: &[Event]) -> Order {
    Order::from_events(events)
}

fn payment_id() -> Uuid {
    Uuid::from_u128(99)
}

#[test]
fn placing_an_order_records_its_lines() {
    let lines = vec![line(1, 2, "10.00"), line(2, 1, "5.50")];
    let events = given(&[])
        .decide(Command::Place {
            customer_id: customer(),
            lines: lines.clone(),
        })
        .unwrap();
    assert_eq!(events, vec![placed(lines)]);

    let order = given(&events);
    assert_eq!(order.status, Status::Pending);
    assert_eq!(order.total().to_string(), "25.50");
    assert_eq!((order.version, order.revision), (1, 1));
}

#[test]
fn an_order_needs_a_line() {
    let result = given(&[]).decide(Command::Place {
        customer_id: customer(),
        lines: vec![],
    });
    assert_eq!(result, Err(DomainError::EmptyOrder));
}

#[test]
fn placing_merges_lines_of_the_same_product_and_price() {
    let events = given(&[])
        .decide(Command::Place {
            customer_id: customer(),
            lines: vec![line(1, 2, "10.00"), line(1, 3, "10.00"), line(1, 1, "9.00")],
        })
        .unwrap();
    assert_eq!(
        events,
        vec![placed(vec![line(1, 5, "10.00"), line(1, 1, "9.00")])]
    );
}

#[test]
fn a_line_cannot_exceed_the_quantity_bound_even_when_merged() {
    let result = given(&[]).decide(Command::Place {
        customer_id: customer(),
        lines: vec![line(1, i64::from(MAX_QUANTITY), "1.00"), line(1, 1, "1.00")],
    });
    assert_eq!(result, Err(DomainError::QuantityTooLarge));

    let order = given(&[placed(vec![line(1, i64::from(MAX_QUANTITY), "1.00")])]);
    assert_eq!(
        order.decide(Command::AddItem(line(1, 1, "1.00"))),
        Err(DomainError::QuantityTooLarge)
    );
}

#[test]
fn an_order_holds_a_bounded_number_of_lines() {
    let lines: Vec<Line> = (1..=MAX_LINES as i64 + 1)
        .map(|p| line(p, 1, "1.00"))
        .collect();
    let result = given(&[]).decide(Command::Place {
        customer_id: customer(),
        lines,
    });
    assert_eq!(result, Err(DomainError::TooManyLines));

    let full: Vec<Line> = (1..=MAX_LINES as i64).map(|p| line(p, 1, "1.00")).collect();
    let order = given(&[placed(full)]);
    assert_eq!(
        order.decide(Command::AddItem(line(999, 1, "1.00"))),
        Err(DomainError::TooManyLines)
    );
}

#[test]
fn an_order_is_placed_once() {
    let order = given(&[placed(vec![line(1, 1, "1.00")])]);
    let result = order.decide(Command::Place {
        customer_id: customer(),
        lines: vec![line(1, 1, "1.00")],
    });
    assert_eq!(result, Err(DomainError::AlreadyPlaced));
}

#[test]
fn commands_on_a_missing_order_are_refused() {
    assert_eq!(
        given(&[]).decide(Command::AddItem(line(1, 1, "1.00"))),
        Err(DomainError::NotPlaced)
    );
    assert_eq!(
        given(&[]).decide(Command::DeclinePayment { revision: 1 }),
        Err(DomainError::NotPlaced)
    );
}

#[test]
fn adding_a_product_while_pending_grows_the_order_and_its_revision() {
    let mut events = vec![placed(vec![line(1, 1, "10.00")])];
    let new = given(&events)
        .decide(Command::AddItem(line(2, 2, "3.00")))
        .unwrap();
    assert_eq!(new, vec![Event::ItemAdded(line(2, 2, "3.00"))]);
    events.extend(new);

    let order = given(&events);
    assert_eq!(order.lines, vec![line(1, 1, "10.00"), line(2, 2, "3.00")]);
    assert_eq!(order.total().to_string(), "16.00");
    assert_eq!(order.revision, 2);
}

#[test]
fn removing_takes_units_from_the_newest_lines_of_the_product_first() {
    let events = vec![
        placed(vec![line(1, 2, "10.00"), line(2, 1, "1.00")]),
        Event::ItemAdded(line(1, 3, "12.00")),
    ];
    let order = given(&events);
    let quantity = Quantity::parse(4).unwrap();
    let product_id = ProductId::parse(1).unwrap();
    let new = order
        .decide(Command::RemoveItem {
            product_id,
            quantity,
        })
        .unwrap();
    assert_eq!(
        new,
        vec![Event::ItemRemoved {
            product_id,
            quantity
        }]
    );

    let order = order.apply(&new[0]);
    assert_eq!(order.lines, vec![line(1, 1, "10.00"), line(2, 1, "1.00")]);
    assert_eq!(order.revision, 3);
}

#[test]
fn removing_more_than_the_order_holds_is_refused() {
    let order = given(&[placed(vec![line(1, 2, "10.00"), line(2, 1, "1.00")])]);
    let result = order.decide(Command::RemoveItem {
        product_id: ProductId::parse(1).unwrap(),
        quantity: Quantity::parse(3).unwrap(),
    });
    assert_eq!(
        result,
        Err(DomainError::NotEnoughToRemove {
            product: 1,
            held: 2,
            requested: 3
        })
    );

    let absent = order.decide(Command::RemoveItem {
        product_id: ProductId::parse(3).unwrap(),
        quantity: Quantity::parse(1).unwrap(),
    });
    assert_eq!(
        absent,
        Err(DomainError::NotEnoughToRemove {
            product: 3,
            held: 0,
            requested: 1
        })
    );
}

#[test]
fn removing_every_unit_is_refused_because_an_order_cannot_be_empty() {
    let order = given(&[placed(vec![line(1, 2, "10.00")])]);
    let result = order.decide(Command::RemoveItem {
        product_id: ProductId::parse(1).unwrap(),
        quantity: Quantity::parse(2).unwrap(),
    });
    assert_eq!(result, Err(DomainError::WouldBeEmpty));
}

#[test]
fn saga_replies_for_an_older_revision_are_ignored() {
    let order = given(&[
        placed(vec![line(1, 2, "10.00")]),
        Event::ItemAdded(line(2, 1, "1.00")),
    ]);
    assert_eq!(
        order.decide(Command::ConfirmPayment {
            revision: 1,
            payment_id: payment_id(),
        }),
        Ok(vec![])
    );
    assert_eq!(
        order.decide(Command::RejectStock {
            revision: 1,
            reason: FailureReason::OutOfStock
        }),
        Ok(vec![])
    );
}

#[test]
fn lines_change_until_the_order_completes() {
    let order = given(&[placed(vec![line(1, 2, "10.00")])]);
    let events = order.decide(Command::AddItem(line(2, 1, "1.00"))).unwrap();
    let order = order.apply(&events[0]);
    assert_eq!(order.revision, 2);
    let events = order
        .decide(Command::RemoveItem {
            product_id: ProductId::parse(1).unwrap(),
            quantity: Quantity::parse(1).unwrap(),
        })
        .unwrap();
    let order = order.apply(&events[0]);
    assert_eq!(order.revision, 3);
    assert_eq!(order.total(), Price::parse("11.00").unwrap().money());
    assert_eq!(order.status, Status::Pending);
}

#[test]
fn a_rejected_reservation_fails_the_order_with_its_reason() {
    let order = given(&[placed(vec![line(9, 1, "1.00")])]);
    let events = order
        .decide(Command::RejectStock {
            revision: 1,
            reason: FailureReason::UnknownProduct,
        })
        .unwrap();
    assert_eq!(
        events,
        vec![Event::OrderFailed {
            reason: FailureReason::UnknownProduct
        }]
    );
    let order = order.apply(&events[0]);
    assert_eq!(order.status, Status::Failed);
    assert_eq!(order.failure_reason, Some(FailureReason::UnknownProduct));
}

#[test]
fn a_captured_payment_completes_the_order() {
    let order = given(&[placed(vec![line(1, 1, "10.00")])]);
    let events = order
        .decide(Command::ConfirmPayment {
            revision: 1,
            payment_id: payment_id(),
        })
        .unwrap();
    assert_eq!(
        events,
        vec![Event::OrderCompleted {
            payment_id: payment_id()
        }]
    );
    assert_eq!(order.apply(&events[0]).status, Status::Completed);
}

#[test]
fn a_declined_payment_fails_the_order_whatever_revision_it_answers() {
    let order = given(&[placed(vec![line(1, 1, "10.00")])]);
    let events = order
        .decide(Command::DeclinePayment { revision: 1 })
        .unwrap();
    assert_eq!(
        events,
        vec![Event::OrderFailed {
            reason: FailureReason::PaymentDeclined
        }]
    );
    // Payment never captures for an order it declined, so a newer revision cannot save it.
    let changed = order.clone().apply(&Event::ItemAdded(line(2, 1, "1.00")));
    assert_eq!(
        changed.decide(Command::DeclinePayment { revision: 1 }),
        Ok(events)
    );
}

#[test]
fn terminal_states_are_final_and_repeated_terminal_facts_are_no_ops() {
    let completed = given(&[
        placed(vec![line(1, 1, "10.00")]),
        Event::OrderCompleted {
            payment_id: payment_id(),
        },
    ]);
    assert_eq!(
        completed.decide(Command::ConfirmPayment {
            revision: 1,
            payment_id: payment_id()
        }),
        Ok(vec![])
    );
    assert_eq!(
        completed.decide(Command::DeclinePayment { revision: 1 }),
        Ok(vec![])
    );
    assert_eq!(
        completed.decide(Command::AddItem(line(2, 1, "1.00"))),
        Err(DomainError::NotPending(Status::Completed))
    );

    let failed = given(&[
        placed(vec![line(1, 1, "10.00")]),
        Event::OrderFailed {
            reason: FailureReason::OutOfStock,
        },
    ]);
    assert_eq!(
        failed.decide(Command::RejectStock {
            revision: 1,
            reason: FailureReason::OutOfStock
        }),
        Ok(vec![])
    );
    assert_eq!(
        failed.decide(Command::ConfirmPayment {
            revision: 1,
            payment_id: payment_id()
        }),
        Ok(vec![])
    );
    assert_eq!(
        failed.decide(Command::RemoveItem {
            product_id: ProductId::parse(1).unwrap(),
            quantity: Quantity::parse(1).unwrap()
        }),
        Err(DomainError::NotPending(Status::Failed))
    );
}

#[test]
fn events_serialise_with_their_type_and_camel_case_data() {
    let event = Event::ItemRemoved {
        product_id: ProductId::parse(2).unwrap(),
        quantity: Quantity::parse(3).unwrap(),
    };
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type": "ItemRemoved", "data": {"productId": 2, "quantity": 3}})
    );
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back, event);
}

#[test]
fn a_stream_with_the_retired_payment_request_still_loads_and_folds() {
    let json = serde_json::json!(
        {"type": "PaymentRequested", "data": {"revision": 1, "amount": "10.00"}}
    );
    let retired: Event = serde_json::from_value(json).unwrap();
    let order = given(&[placed(vec![line(1, 1, "10.00")]), retired]);
    assert_eq!(order.version, 2);
    assert_eq!(order.status, Status::Pending);
    assert_eq!(order.revision, 1);
}

#[test]
fn a_pending_order_past_its_deadline_fails_as_timed_out() {
    let order = given(&[
        placed(vec![line(1, 1, "10.00")]),
        Event::ItemAdded(line(2, 1, "1.00")),
    ]);
    let events = order.decide(Command::TimeOut).unwrap();
    assert_eq!(
        events,
        vec![Event::OrderFailed {
            reason: FailureReason::TimedOut
        }]
    );
    let order = order.apply(&events[0]);
    assert_eq!(order.status, Status::Failed);
    assert_eq!(order.failure_reason, Some(FailureReason::TimedOut));
}

#[test]
fn a_settled_order_does_not_time_out() {
    let completed = given(&[
        placed(vec![line(1, 1, "10.00")]),
        Event::OrderCompleted {
            payment_id: payment_id(),
        },
    ]);
    assert_eq!(completed.decide(Command::TimeOut), Ok(vec![]));

    let failed = given(&[
        placed(vec![line(1, 1, "10.00")]),
        Event::OrderFailed {
            reason: FailureReason::PaymentDeclined,
        },
    ]);
    assert_eq!(failed.decide(Command::TimeOut), Ok(vec![]));
    assert_eq!(
        given(&[]).decide(Command::TimeOut),
        Err(DomainError::NotPlaced)
    );
}

#[test]
fn replies_after_a_timeout_change_nothing() {
    let timed_out = given(&[
        placed(vec![line(1, 1, "10.00")]),
        Event::OrderFailed {
            reason: FailureReason::TimedOut,
        },
    ]);
    let late = [
        Command::ConfirmPayment {
            revision: 1,
            payment_id: payment_id(),
        },
        Command::RejectStock {
            revision: 1,
            reason: FailureReason::OutOfStock,
        },
        Command::DeclinePayment { revision: 1 },
        Command::TimeOut,
    ];
    for command in late {
        assert_eq!(timed_out.decide(command), Ok(vec![]));
    }
}

#[test]
fn a_pending_order_accepts_a_bounded_number_of_changes() {
    let mut events = vec![placed(vec![line(1, 1, "10.00")])];
    for n in 0..MAX_CHANGES {
        let command = if n % 2 == 0 {
            Command::AddItem(line(2, 1, "1.00"))
        } else {
            Command::RemoveItem {
                product_id: ProductId::parse(2).unwrap(),
                quantity: Quantity::parse(1).unwrap(),
            }
        };
        events.extend(given(&events).decide(command).unwrap());
    }
    let order = given(&events);
    assert_eq!(order.revision, MAX_CHANGES + 1);
    assert_eq!(
        order.decide(Command::AddItem(line(2, 1, "1.00"))),
        Err(DomainError::TooManyChanges)
    );
    assert_eq!(
        order.decide(Command::RemoveItem {
            product_id: ProductId::parse(1).unwrap(),
            quantity: Quantity::parse(1).unwrap(),
        }),
        Err(DomainError::TooManyChanges)
    );
    // The saga still settles it.
    assert_eq!(
        order.decide(Command::ConfirmPayment {
            revision: MAX_CHANGES + 1,
            payment_id: payment_id(),
        }),
        Ok(vec![Event::OrderCompleted {
            payment_id: payment_id()
        }])
    );
}
