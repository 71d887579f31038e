//! Revenue facts from subscription snapshots: monthly recurring revenue and the kind of each
//! change, for the metrics agent.
//!
//! MRR counts subscriptions that are `active` or `past_due` (still billed; trials, incomplete,
//! unpaid, paused and canceled ones count 0). Each item contributes unit amount × quantity,
//! normalised to one month: a year divides by 12, a week multiplies by 52/12, a day by 365/12,
//! and `interval_count` divides further. A subscription-level coupon (`discount.coupon`)
//! applies: `percent_off` scales the total; `amount_off` (same currency, per billing interval
//! of the first item) is normalised like a price. Amounts stay exact decimals in the
//! currency's minor unit.
//!
//! Every amount comes from the event, so every step is checked: a unit amount or quantity
//! whose product does not fit an exact decimal (28 digits) is an [`Overflow`], a permanent
//! fault of that event, never a panic.

use rust_decimal::Decimal;
use serde_json::Value;

/// Statuses whose subscriptions are billed.
const BILLED: &[&str] = &["active", "past_due"];

fn decimal(value: Option<&Value>) -> Option<Decimal> {
    match value? {
        Value::Number(number) => number
            .as_i64()
            .map(Decimal::from)
            .or_else(|| number.as_f64().and_then(|f| Decimal::try_from(f).ok())),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

/// A subscription whose amounts do not fit an exact decimal; names the step that overflowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the subscription's MRR overflows an exact decimal at {0}")]
pub struct Overflow(pub(crate) &'static str);

/// Months in one billing interval; `None` for an interval we do not know.
fn months(interval: &str, count: Decimal) -> Result<Option<Decimal>, Overflow> {
    let per_unit = match interval {
        "month" => Decimal::ONE,
        "year" => Decimal::from(12),
        "week" => Decimal::from(12) / Decimal::from(52),
        "day" => Decimal::from(12) / Decimal::from(365),
        _ => return Ok(None),
    };
    per_unit
        .checked_mul(count)
        .map(Some)
        .ok_or(Overflow("interval × interval_count"))
}

fn monthly(amount: Decimal, recurring: &Value) -> Result<Decimal, Overflow> {
    let interval = recurring
        .get("interval")
        .and_then(Value::as_str)
        .unwrap_or("month");
    let count = decimal(recurring.get("interval_count"))
        .filter(|c| !c.is_zero())
        .unwrap_or(Decimal::ONE);
    match months(interval, count)? {
        None => Ok(Decimal::ZERO),
        // `checked_div` also refuses a divisor that rounded to zero.
        Some(months) => amount
            .checked_div(months)
            .ok_or(Overflow("amount ÷ months per interval")),
    }
}

/// The subscription's MRR in minor units, rounded to four decimals.
pub fn mrr(subscription: &Value) -> Result<Decimal, Overflow> {
    let status = subscription
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !BILLED.contains(&status) {
        return Ok(Decimal::ZERO);
    }
    let items = subscription
        .pointer("/items/data")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut total = Decimal::ZERO;
    for item in items {
        let Some(price) = item.get("price").or_else(|| item.get("plan")) else {
            continue;
        };
        let unit = decimal(price.get("unit_amount_decimal"))
            .or_else(|| decimal(price.get("unit_amount")))
            .unwrap_or_default();
        let quantity = decimal(item.get("quantity")).unwrap_or(Decimal::ONE);
        let recurring = price.get("recurring").unwrap_or(price);
        let amount = unit
            .checked_mul(quantity)
            .ok_or(Overflow("unit amount × quantity"))?;
        total = total
            .checked_add(monthly(amount, recurring)?)
            .ok_or(Overflow("the sum of the items"))?;
    }
    if let Some(coupon) = subscription
        .pointer("/discount/coupon")
        .filter(|c| c.is_object())
    {
        let discount = if let Some(percent) = decimal(coupon.get("percent_off")) {
            total
                .checked_mul(percent)
                .and_then(|scaled| scaled.checked_div(Decimal::ONE_HUNDRED))
                .ok_or(Overflow("percent_off"))?
        } else if let Some(amount) = decimal(coupon.get("amount_off")) {
            let first_recurring = items
                .first()
                .and_then(|item| item.get("price"))
                .and_then(|price| price.get("recurring"))
                .unwrap_or(&Value::Null);
            monthly(amount, first_recurring)?
        } else {
            Decimal::ZERO
        };
        total = total.checked_sub(discount).ok_or(Overflow("the coupon"))?;
    }
    Ok(total.max(Decimal::ZERO).round_dp(4))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    New,
    Expansion,
    Contraction,
    Churn,
    Reactivation,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::New => "new",
            ChangeKind::Expansion => "expansion",
            ChangeKind::Contraction => "contraction",
            ChangeKind::Churn => "churn",
            ChangeKind::Reactivation => "reactivation",
        }
    }
}

/// What a move from `before` to `after` is; `ever_active` says whether the subscription had
/// MRR at some point before (so 0 → x is a reactivation, not new business).
pub fn classify(before: Decimal, after: Decimal, ever_active: bool) -> Option<ChangeKind> {
    match (before.is_zero(), after.is_zero()) {
        _ if before == after => None,
        (true, false) if ever_active => Some(ChangeKind::Reactivation),
        (true, false) => Some(ChangeKind::New),
        (false, true) => Some(ChangeKind::Churn),
        _ if after > before => Some(ChangeKind::Expansion),
        _ => Some(ChangeKind::Contraction),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(amount: i64, quantity: i64, interval: &str, count: i64) -> Value {
        json!({"quantity": quantity, "price": {"unit_amount": amount, "recurring": {"interval": interval, "interval_count": count}}})
    }

    fn subscription(status: &str, items: Vec<Value>, discount: Value) -> Value {
        json!({"object": "subscription", "status": status, "items": {"data": items}, "discount": discount})
    }

    #[test]
    fn normalises_every_interval_to_a_month() {
        let s = subscription(
            "active",
            vec![
                item(1000, 2, "month", 1),
                item(12000, 1, "year", 1),
                item(3000, 1, "month", 3),
                item(100, 1, "week", 1),
            ],
            Value::Null,
        );
        // 2000 + 1000 + 1000 + 100 × 52 / 12 (433.3333)
        assert_eq!(mrr(&s), Ok(Decimal::new(44_333_333, 4)));
    }

    #[test]
    fn only_billed_statuses_count() {
        for (status, expected) in [
            ("active", 1000),
            ("past_due", 1000),
            ("trialing", 0),
            ("canceled", 0),
            ("incomplete", 0),
        ] {
            assert_eq!(
                mrr(&subscription(
                    status,
                    vec![item(1000, 1, "month", 1)],
                    Value::Null
                )),
                Ok(Decimal::from(expected)),
                "{status}"
            );
        }
    }

    #[test]
    fn coupons_reduce_mrr() {
        let percent = subscription(
            "active",
            vec![item(1000, 1, "month", 1)],
            json!({"coupon": {"percent_off": 25}}),
        );
        assert_eq!(mrr(&percent), Ok(Decimal::from(750)));
        let amount = subscription(
            "active",
            vec![item(12000, 1, "year", 1)],
            json!({"coupon": {"amount_off": 1200}}),
        );
        assert_eq!(mrr(&amount), Ok(Decimal::from(900)));
    }

    #[test]
    fn money_that_overflows_is_an_error_not_a_panic() {
        const MAX: &str = "79228162514264337593543950335";
        let item = |unit: &str, quantity: Value, interval: &str, count: Value| {
            json!({"quantity": quantity, "price": {"unit_amount_decimal": unit,
                "recurring": {"interval": interval, "interval_count": count}}})
        };
        let product = subscription(
            "active",
            vec![item(MAX, json!(2), "month", json!(1))],
            Value::Null,
        );
        assert_eq!(mrr(&product), Err(Overflow("unit amount × quantity")));
        let sum = subscription(
            "active",
            vec![
                item(MAX, json!(1), "month", json!(1)),
                item(MAX, json!(1), "month", json!(1)),
            ],
            Value::Null,
        );
        assert_eq!(mrr(&sum), Err(Overflow("the sum of the items")));
        let per_day = subscription(
            "active",
            vec![item(MAX, json!(1), "day", json!(1))],
            Value::Null,
        );
        assert_eq!(mrr(&per_day), Err(Overflow("amount ÷ months per interval")));
        let count = subscription(
            "active",
            vec![item("1", json!(1), "year", json!(MAX))],
            Value::Null,
        );
        assert_eq!(mrr(&count), Err(Overflow("interval × interval_count")));
        let coupon = subscription(
            "active",
            vec![item(
                "1000000000000000000000000",
                json!(1),
                "month",
                json!(1),
            )],
            json!({"coupon": {"percent_off": 100000}}),
        );
        assert_eq!(mrr(&coupon), Err(Overflow("percent_off")));
    }

    #[test]
    fn changes_are_classified() {
        let (zero, ten, twenty) = (Decimal::ZERO, Decimal::from(10), Decimal::from(20));
        assert_eq!(classify(zero, ten, false), Some(ChangeKind::New));
        assert_eq!(classify(zero, ten, true), Some(ChangeKind::Reactivation));
        assert_eq!(classify(ten, twenty, true), Some(ChangeKind::Expansion));
        assert_eq!(classify(twenty, ten, true), Some(ChangeKind::Contraction));
        assert_eq!(classify(ten, zero, true), Some(ChangeKind::Churn));
        assert_eq!(classify(ten, ten, true), None);
    }
}
