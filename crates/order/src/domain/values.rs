//! Value types of the order domain, each valid by construction ("parse, don't validate"): once
//! a `Quantity` or a `Price` exists, no code downstream checks it again.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Bounds of what one order may hold.
pub const MAX_QUANTITY: u32 = 1_000;
pub const MAX_LINES: usize = 50;
/// Changes (items added or removed) one pending order accepts. Each change is a revision that
/// stock and payment answer in turn, so an order changed without end would keep its saga, and
/// the reservations and payments behind it, busy without end.
pub const MAX_CHANGES: u32 = 20;
/// The largest unit price accepted: 1,000,000.00.
pub const MAX_UNIT_PRICE: Decimal = Decimal::from_parts(100_000_000, 0, 0, false, 2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub Uuid);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerId(pub Uuid);

/// A product id. Which products exist is the catalog's knowledge, not the domain's: the HTTP
/// edge prices lines from the catalog replica and refuses a product it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductId(i64);

impl ProductId {
    pub fn parse(raw: i64) -> Result<Self, ValueError> {
        if raw > 0 {
            Ok(Self(raw))
        } else {
            Err(ValueError::ProductId)
        }
    }
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A quantity of units, `1..=MAX_QUANTITY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub fn parse(raw: i64) -> Result<Self, ValueError> {
        match u32::try_from(raw) {
            Ok(q) if (1..=MAX_QUANTITY).contains(&q) => Ok(Self(q)),
            _ => Err(ValueError::Quantity),
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }

    /// The sum, if it stays within the bounds.
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        Self::parse(i64::from(self.0) + i64::from(other.0)).ok()
    }

    /// What is left after taking `n` units; `None` when nothing is.
    pub fn checked_sub(self, n: u32) -> Option<Quantity> {
        Self::parse(i64::from(self.0) - i64::from(n)).ok()
    }
}

/// Money: an exact decimal with at most two places, never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    pub fn amount(self) -> Decimal {
        self.0
    }

    /// `unit × quantity`, exact.
    pub fn times(self, quantity: u32) -> Money {
        Money(self.0 * Decimal::from(quantity))
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

/// Always two places: `"12.50"`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = self.0;
        d.rescale(2);
        write!(f, "{d}")
    }
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Decimal::from_str(&s)
            .map(Money)
            .map_err(serde::de::Error::custom)
    }
}

/// A unit price: positive, at most two decimal places, at most [`MAX_UNIT_PRICE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Price(Money);

impl Price {
    /// Parses the decimal text of a price (`"12.5"`, `"12.50"`); more than two places, zero,
    /// negative or too large are refused.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let value = Decimal::from_str_exact(text.trim()).map_err(|_| ValueError::PriceFormat)?;
        Self::from_decimal(value)
    }

    pub fn from_decimal(value: Decimal) -> Result<Self, ValueError> {
        if value.normalize().scale() > 2 {
            return Err(ValueError::PricePrecision);
        }
        if value <= Decimal::ZERO || value > MAX_UNIT_PRICE {
            return Err(ValueError::PriceRange);
        }
        let mut value = value;
        value.rescale(2);
        Ok(Self(Money(value)))
    }

    pub fn money(self) -> Money {
        self.0
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a raw value is not a valid domain value. Each maps to a 422 at the HTTP edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("productId must be a positive integer")]
    ProductId,
    #[error("quantity must be an integer from 1 to {MAX_QUANTITY}")]
    Quantity,
    #[error("unitPrice must be a decimal number such as \"12.50\"")]
    PriceFormat,
    #[error("unitPrice may have at most two decimal places")]
    PricePrecision,
    #[error("unitPrice must be greater than 0 and at most {MAX_UNIT_PRICE}")]
    PriceRange,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_keep_two_places_and_refuse_more() {
        assert_eq!(
            Price::parse("12.5").map(|p| p.to_string()),
            Ok("12.50".to_owned())
        );
        assert_eq!(
            Price::parse("7").map(|p| p.to_string()),
            Ok("7.00".to_owned())
        );
        assert_eq!(
            Price::parse("12.500").map(|p| p.to_string()),
            Ok("12.50".to_owned())
        );
        assert_eq!(Price::parse("12.345"), Err(ValueError::PricePrecision));
        assert_eq!(Price::parse("-1.00"), Err(ValueError::PriceRange));
        assert_eq!(Price::parse("0"), Err(ValueError::PriceRange));
        assert_eq!(Price::parse("1000000.01"), Err(ValueError::PriceRange));
        assert_eq!(Price::parse("1e3"), Err(ValueError::PriceFormat));
        assert_eq!(Price::parse("abc"), Err(ValueError::PriceFormat));
    }

    #[test]
    fn quantities_are_bounded() {
        assert!(Quantity::parse(1).is_ok());
        assert!(Quantity::parse(i64::from(MAX_QUANTITY)).is_ok());
        assert_eq!(Quantity::parse(0), Err(ValueError::Quantity));
        assert_eq!(Quantity::parse(-3), Err(ValueError::Quantity));
        assert_eq!(
            Quantity::parse(i64::from(MAX_QUANTITY) + 1),
            Err(ValueError::Quantity)
        );
    }

    #[test]
    fn money_multiplies_exactly() {
        let price = Price::parse("0.10").map(Price::money).unwrap();
        assert_eq!(price.times(3).to_string(), "0.30");
    }
}
