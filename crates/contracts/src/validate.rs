//! The ranges of the values messages carry, checked when a message is decoded.
//!
//! A payload that parses is not yet a message a handler may act on: a negative or overflowing
//! amount, an absurd quantity or revision would make a handler compute nonsense (or panic), and
//! retrying it can never help. So every contract type states its ranges ([`Validate`]) and
//! `decode` refuses a value out of range as [`DecodeError::OutOfRange`](crate::DecodeError),
//! which consumers dead-letter as a permanent failure. Handlers downstream can rely on the
//! bounds below; they still use checked arithmetic, as the last line of defence.
//!
//! The bounds are those of the order domain, which produces every line and total (an order
//! whose lines break them is refused at the HTTP edge with 422), and of the `numeric(14,2)`
//! columns money is stored in. They are repeated here because `contracts` depends on no
//! service: change them together with `order::domain::values`, and only upwards, since a bound
//! lowered here would refuse the messages of orders accepted under the old one. The revision
//! bound must stay above the most changes a pending order accepts. Rules that say what a
//! message means rather than its ranges:
//!
//! - an order message (placed, lines changed, completed, failed) carries the order's whole set
//!   of lines, which is never empty (the order refuses an empty order and the removal of its last
//!   unit), and its `total`, which is exactly `Σ quantity × unitPrice` of those lines (the order
//!   computes it from them): a total that disagrees is refused, since stock passes it on to
//!   payment as the amount to capture;
//! - an amount (a capture, a decline, a reservation's) is an order's total: from 0 to
//!   [`MAX_TOTAL`]; credit left is stored money: from 0 to [`MAX_MONEY`];
//! - money has at most two decimal places (`"12.50"`; `"12.500"` is the same amount and passes).

use rust_decimal::Decimal;

use crate::Line;

/// Lines of one order, at most (the order domain's `MAX_LINES`).
pub const MAX_LINES: usize = 50;
/// Units of one line, at most (the order domain's `MAX_QUANTITY`).
pub const MAX_QUANTITY: u32 = 1_000;
/// The largest unit price: 1,000,000.00 (the order domain's `MAX_UNIT_PRICE`).
pub const MAX_UNIT_PRICE: Decimal = Decimal::from_parts(100_000_000, 0, 0, false, 2);
/// The largest order total: [`MAX_LINES`] × [`MAX_QUANTITY`] × [`MAX_UNIT_PRICE`] =
/// 50,000,000,000.00.
pub const MAX_TOTAL: Decimal = Decimal::from_parts(658_067_456, 1_164, 0, false, 2);
/// The largest amount of money stored anywhere: 999,999,999,999.99, the `numeric(14,2)` bound.
pub const MAX_MONEY: Decimal = Decimal::from_parts(276_447_231, 23_283, 0, false, 2);
/// The largest revision of an order's lines. An order starts at 1 and grows by one per change,
/// so a pending order would need ten thousand changes to reach it.
pub const MAX_REVISION: u32 = 10_000;
/// The largest payload `decode` parses; the largest real message (fifty lines) is a few KiB.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Decimal places money may have.
const MONEY_PLACES: u32 = 2;

/// Which field of a message is out of range, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field as it is named on the wire, e.g. `lines[2].unitPrice`.
    pub field: String,
    pub reason: String,
}

impl Invalid {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same failure, for a field nested in `parent`.
    fn within(self, parent: &str) -> Self {
        Self {
            field: format!("{parent}.{}", self.field),
            ..self
        }
    }
}

/// The ranges of a message type's values. `decode` calls it on every message it parses.
pub trait Validate {
    fn validate(&self) -> Result<(), Invalid>;
}

/// `1..=MAX_REVISION`.
pub(crate) fn revision(value: u32) -> Result<(), Invalid> {
    if (1..=MAX_REVISION).contains(&value) {
        Ok(())
    } else {
        Err(Invalid::new(
            "revision",
            format!("{value} is not from 1 to {MAX_REVISION}"),
        ))
    }
}

/// Money from 0 to `max`, with at most two decimal places.
pub(crate) fn money(field: &str, value: Decimal, max: Decimal) -> Result<(), Invalid> {
    if value.normalize().scale() > MONEY_PLACES {
        return Err(Invalid::new(
            field,
            format!("{value} has more than {MONEY_PLACES} decimal places"),
        ));
    }
    if value < Decimal::ZERO {
        return Err(Invalid::new(field, format!("{value} is negative")));
    }
    if value > max {
        return Err(Invalid::new(field, format!("{value} exceeds {max}")));
    }
    Ok(())
}

/// A positive integer id.
pub(crate) fn product_id(field: &str, value: i64) -> Result<(), Invalid> {
    if value > 0 {
        Ok(())
    } else {
        Err(Invalid::new(field, format!("{value} is not positive")))
    }
}

impl Validate for Line {
    fn validate(&self) -> Result<(), Invalid> {
        product_id("productId", self.product_id)?;
        if !(1..=MAX_QUANTITY).contains(&self.quantity) {
            return Err(Invalid::new(
                "quantity",
                format!("{} is not from 1 to {MAX_QUANTITY}", self.quantity),
            ));
        }
        money("unitPrice", self.unit_price, MAX_UNIT_PRICE)?;
        if self.unit_price.is_zero() {
            return Err(Invalid::new("unitPrice", "a price is greater than 0"));
        }
        Ok(())
    }
}

impl Line {
    /// `quantity × unitPrice`; `None` if it does not fit a decimal (never, for a valid line).
    pub fn checked_total(&self) -> Option<Decimal> {
        self.unit_price.checked_mul(Decimal::from(self.quantity))
    }
}

/// An order's whole set of lines and its total: 1 to [`MAX_LINES`] valid lines, and a total of
/// exactly `Σ quantity × unitPrice`.
pub(crate) fn order_lines(lines: &[Line], total: Decimal) -> Result<(), Invalid> {
    if lines.is_empty() {
        return Err(Invalid::new("lines", "an order has at least one line"));
    }
    if lines.len() > MAX_LINES {
        return Err(Invalid::new(
            "lines",
            format!("{} lines exceed {MAX_LINES}", lines.len()),
        ));
    }
    let mut sum = Decimal::ZERO;
    for (i, line) in lines.iter().enumerate() {
        line.validate()
            .map_err(|invalid| invalid.within(&format!("lines[{i}]")))?;
        sum = line
            .checked_total()
            .and_then(|line_total| sum.checked_add(line_total))
            .ok_or_else(|| Invalid::new("lines", "the lines' total overflows"))?;
    }
    money("total", total, MAX_TOTAL)?;
    if sum != total {
        return Err(Invalid::new(
            "total",
            format!("{total} is not the lines' total {sum}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DecodeError;
    use crate::orders::{FailureReason, OrderMessage};
    use crate::payments::PaymentMessage;
    use crate::stock::StockMessage;

    const ORDER: &str = "018f2b6e-0000-7000-8000-000000000001";
    const CUSTOMER: &str = "018f2b6e-0000-7000-8000-000000000002";

    fn placed(revision: &str, lines: &str, total: &str) -> String {
        format!(
            r#"{{"orderId": "{ORDER}", "customerId": "{CUSTOMER}", "revision": {revision},
                "lines": [{lines}], "total": "{total}"}}"#
        )
    }

    fn line(product: &str, quantity: &str, price: &str) -> String {
        format!(r#"{{"productId": {product}, "quantity": {quantity}, "unitPrice": "{price}"}}"#)
    }

    fn decode_placed(payload: &str) -> Result<OrderMessage, DecodeError> {
        OrderMessage::decode("OrderPlaced", 2, payload.as_bytes())
    }

    /// The field an out-of-range payload was refused for.
    fn refused<T: std::fmt::Debug>(decoded: Result<T, DecodeError>) -> String {
        match decoded {
            Err(DecodeError::OutOfRange { field, .. }) => field,
            other => panic!("not out of range: {other:?}"),
        }
    }

    fn reserved(revision: &str, amount: &str) -> Result<StockMessage, DecodeError> {
        let payload = format!(
            r#"{{"orderId": "{ORDER}", "customerId": "{CUSTOMER}", "revision": {revision},
                "amount": "{amount}"}}"#
        );
        StockMessage::decode("StockReserved", 2, payload.as_bytes())
    }

    #[test]
    fn the_bounds_are_the_amounts_they_name() {
        assert_eq!(MAX_UNIT_PRICE.to_string(), "1000000.00");
        assert_eq!(MAX_TOTAL.to_string(), "50000000000.00");
        assert_eq!(
            Some(MAX_TOTAL),
            MAX_UNIT_PRICE
                .checked_mul(Decimal::from(MAX_QUANTITY))
                .and_then(|line| line.checked_mul(Decimal::from(MAX_LINES as u64)))
        );
        assert_eq!(MAX_MONEY.to_string(), "999999999999.99");
    }

    #[test]
    fn a_valid_order_at_the_bounds_decodes() {
        let lines = vec![line("1", "1000", "1000000.00"); MAX_LINES].join(",");
        let at_bounds = placed("10000", &lines, "50000000000.00");
        assert!(decode_placed(&at_bounds).is_ok());
        let small = placed("1", &line("1", "3", "0.10"), "0.3");
        assert!(decode_placed(&small).is_ok(), "0.3 is 0.30");
        let trailing_zeros = placed("1", &line("1", "3", "0.100"), "0.300");
        assert!(decode_placed(&trailing_zeros).is_ok());
    }

    #[test]
    fn revisions_run_from_one_to_the_bound() {
        let one_line = line("1", "1", "1.00");
        assert_eq!(
            refused(decode_placed(&placed("0", &one_line, "1.00"))),
            "revision"
        );
        assert_eq!(
            refused(decode_placed(&placed("10001", &one_line, "1.00"))),
            "revision"
        );
        assert_eq!(refused(reserved("0", "1.00")), "revision");
        // Beyond u32 the payload does not even parse.
        let huge = decode_placed(&placed("4294967296", &one_line, "1.00"));
        assert!(
            matches!(huge, Err(DecodeError::Malformed { .. })),
            "{huge:?}"
        );
    }

    #[test]
    fn an_order_has_one_to_fifty_valid_lines() {
        assert_eq!(refused(decode_placed(&placed("1", "", "0.00"))), "lines");
        let too_many = vec![line("1", "1", "1.00"); MAX_LINES + 1].join(",");
        assert_eq!(
            refused(decode_placed(&placed("1", &too_many, "51.00"))),
            "lines"
        );

        let cases = [
            (line("0", "1", "1.00"), "lines[1].productId"),
            (line("-5", "1", "1.00"), "lines[1].productId"),
            (line("2", "0", "1.00"), "lines[1].quantity"),
            (line("2", "1001", "1.00"), "lines[1].quantity"),
            (line("2", "1", "0.00"), "lines[1].unitPrice"),
            (line("2", "1", "-1.00"), "lines[1].unitPrice"),
            (line("2", "1", "1.001"), "lines[1].unitPrice"),
            (line("2", "1", "1000000.01"), "lines[1].unitPrice"),
        ];
        for (bad, field) in cases {
            let lines = format!("{},{bad}", line("1", "1", "1.00"));
            assert_eq!(refused(decode_placed(&placed("1", &lines, "2.00"))), field);
        }
    }

    #[test]
    fn a_total_must_be_the_lines_total() {
        let lines = format!("{},{}", line("1", "2", "5.00"), line("2", "1", "0.50"));
        assert!(decode_placed(&placed("1", &lines, "10.50")).is_ok());
        assert_eq!(
            refused(decode_placed(&placed("1", &lines, "10.49"))),
            "total"
        );
        assert_eq!(
            refused(decode_placed(&placed("1", &lines, "-10.50"))),
            "total"
        );
        assert_eq!(
            refused(decode_placed(&placed("1", &lines, "10.501"))),
            "total"
        );

        let changed = placed("2", &lines, "99.00");
        let decoded = OrderMessage::decode("OrderLinesChanged", 2, changed.as_bytes());
        assert_eq!(refused(decoded), "total");
        let failed = format!(
            r#"{{"orderId": "{ORDER}", "customerId": "{CUSTOMER}", "reason": "timed_out",
                "lines": [{lines}], "total": "1.00"}}"#
        );
        let decoded = OrderMessage::decode("OrderFailed", 1, failed.as_bytes());
        assert_eq!(refused(decoded), "total");
        let completed = format!(
            r#"{{"orderId": "{ORDER}", "customerId": "{CUSTOMER}", "paymentId": "{ORDER}",
                "lines": [], "total": "0.00"}}"#
        );
        let decoded = OrderMessage::decode("OrderCompleted", 1, completed.as_bytes());
        assert_eq!(refused(decoded), "lines");
    }

    #[test]
    fn an_amount_is_a_total_negative_overflowing_over_precise_or_huge_is_refused() {
        assert!(reserved("1", "0.00").is_ok());
        assert!(reserved("1", "50000000000.00").is_ok());
        // The amount that once made payment panic ("Subtraction overflowed").
        assert_eq!(
            refused(reserved("1", "-79228162514264337593543950335")),
            "amount"
        );
        assert_eq!(
            refused(reserved("1", "79228162514264337593543950335")),
            "amount"
        );
        assert_eq!(refused(reserved("1", "-0.01")), "amount");
        assert_eq!(refused(reserved("1", "0.001")), "amount");
        assert_eq!(
            refused(reserved("1", "0.0000000000000000000000000001")),
            "amount"
        );
        assert_eq!(refused(reserved("1", "50000000000.01")), "amount");
        // Beyond what a decimal holds the payload does not parse.
        let beyond = reserved("1", "79228162514264337593543950336");
        assert!(
            matches!(beyond, Err(DecodeError::Malformed { .. })),
            "{beyond:?}"
        );
    }

    fn payment(message_type: &str, revision: &str, amount: &str, credit: &str) -> String {
        let payload = format!(
            r#"{{"orderId": "{ORDER}", "paymentId": "{ORDER}", "customerId": "{CUSTOMER}",
                "revision": {revision}, "amount": "{amount}", "availableCredit": "{credit}"}}"#
        );
        match PaymentMessage::decode(message_type, 1, payload.as_bytes()) {
            Err(DecodeError::OutOfRange { field, .. }) => field,
            Ok(_) => "ok".to_owned(),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn payments_carry_amounts_in_range() {
        assert_eq!(payment("PaymentCaptured", "1", "10.00", "0"), "ok");
        assert_eq!(payment("PaymentCaptured", "1", "-10.00", "0"), "amount");
        assert_eq!(payment("PaymentCaptured", "0", "10.00", "0"), "revision");
        assert_eq!(
            payment("PaymentDeclined", "1", "10.00", "999999999999.99"),
            "ok"
        );
        assert_eq!(
            payment("PaymentDeclined", "1", "10.00", "-1"),
            "availableCredit"
        );
        assert_eq!(
            payment("PaymentDeclined", "1", "10.00", "1000000000000.00"),
            "availableCredit"
        );
        assert_eq!(payment("PaymentDeclined", "1", "1.234", "5"), "amount");
    }

    fn reservation_failed(
        revision: &str,
        reason: &str,
        ids: &str,
    ) -> Result<StockMessage, DecodeError> {
        let payload = format!(
            r#"{{"orderId": "{ORDER}", "revision": {revision}, "reason": "{reason}",
                "productIds": [{ids}]}}"#
        );
        StockMessage::decode("StockReservationFailed", 1, payload.as_bytes())
    }

    #[test]
    fn a_failed_reservation_names_a_few_real_products() {
        assert!(reservation_failed("1", "out_of_stock", "1, 2").is_ok());
        assert_eq!(
            refused(reservation_failed("1", "out_of_stock", "1, 0")),
            "productIds[1]"
        );
        let many = vec!["1"; MAX_LINES + 1].join(",");
        assert_eq!(
            refused(reservation_failed("1", "out_of_stock", &many)),
            "productIds"
        );
        assert_eq!(
            refused(reservation_failed("0", "out_of_stock", "1")),
            "revision"
        );
        let unknown = reservation_failed("1", "on_fire", "1");
        assert!(
            matches!(unknown, Err(DecodeError::Malformed { .. })),
            "{unknown:?}"
        );
    }

    #[test]
    fn failure_reasons_are_a_closed_set_timed_out_included() {
        let failed = |reason: &str| {
            let payload = format!(
                r#"{{"orderId": "{ORDER}", "customerId": "{CUSTOMER}", "reason": "{reason}",
                    "lines": [{}], "total": "1.00"}}"#,
                line("1", "1", "1.00")
            );
            OrderMessage::decode("OrderFailed", 1, payload.as_bytes())
        };
        let Ok(OrderMessage::OrderFailed(timed_out)) = failed("timed_out") else {
            panic!("{:?}", failed("timed_out"));
        };
        assert_eq!(timed_out.reason, FailureReason::TimedOut);
        assert_eq!(FailureReason::TimedOut.as_str(), "timed_out");
        let unknown = failed("bored");
        assert!(
            matches!(unknown, Err(DecodeError::Malformed { .. })),
            "{unknown:?}"
        );
    }

    #[test]
    fn an_oversized_payload_is_refused_before_it_is_parsed() {
        let padding = " ".repeat(MAX_PAYLOAD_BYTES);
        let payload = format!("{padding}{}", placed("1", &line("1", "1", "1.00"), "1.00"));
        let decoded = decode_placed(&payload);
        assert!(
            matches!(decoded, Err(DecodeError::TooLarge { size, .. }) if size == payload.len()),
            "{decoded:?}"
        );
        let decoded = StockMessage::decode("StockReleased", 1, format!("{padding} ").as_bytes());
        assert!(
            matches!(decoded, Err(DecodeError::TooLarge { .. })),
            "{decoded:?}"
        );
        // The reason a dead letter carries names the field.
        let message = reserved("1", "-1.00").unwrap_err().to_string();
        assert_eq!(
            message,
            "StockReserved out of range: amount: -1.00 is negative"
        );
    }
}
