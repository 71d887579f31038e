//! Revenue facts from subscription snapshots: monthly recurring revenue and the kind of each
//! change, for the metrics agent.
//!
//! MRR counts subscriptions that are `active` or `past_due` (still billed; trials, incomplete,
//! unpaid, paused and canceled ones count 0). Each item contributes its price for its
//! quantity ([`item_amount`]), normalised to one month: a year divides by 12, a week
//! multiplies by 52/12, a day by 365/12, and `interval_count` divides further. The price for
//! a quantity depends on the billing scheme:
//!
//! * `per_unit`: unit amount (`unit_amount_decimal` when present) × quantity, the quantity
//!   first divided by `transform_quantity.divide_by` and rounded as it says;
//! * `tiered`, `volume`: the one tier the whole quantity falls in (the first whose `up_to` is
//!   at least the quantity; `null` is unbounded): quantity × its unit amount + its flat amount;
//! * `tiered`, `graduated`: each tier's share of the quantity × its unit amount, plus the flat
//!   amount of every tier the quantity reaches;
//! * `metered` (`recurring.usage_type`): 0 — the usage is unknown until it is invoiced, and
//!   the item's `quantity` means nothing for it.
//!
//! Discounts stack, in the order Stripe lists them: an item's own `discounts` apply to that
//! item, the subscription's `discounts` (expanded discount objects; ids alone say nothing)
//! to the total — or, in the older shape, its single `discount`. `percent_off` scales what is
//! left; `amount_off` (same currency, per billing interval of the first item) is normalised
//! like a price and subtracted. The total never goes below 0. Amounts stay exact decimals in
//! the currency's minor unit.
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

/// The amount one billing interval of `item` costs before discounts.
fn item_amount(item: &Value, price: &Value) -> Result<Decimal, Overflow> {
    let recurring = price.get("recurring").unwrap_or(price);
    if recurring.get("usage_type").and_then(Value::as_str) == Some("metered") {
        return Ok(Decimal::ZERO);
    }
    let quantity = decimal(item.get("quantity")).unwrap_or(Decimal::ONE);
    if price.get("billing_scheme").and_then(Value::as_str) == Some("tiered") {
        let tiers = price
            .get("tiers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        return match price.get("tiers_mode").and_then(Value::as_str) {
            Some("volume") => volume(tiers, quantity),
            _ => graduated(tiers, quantity),
        };
    }
    let unit = decimal(price.get("unit_amount_decimal"))
        .or_else(|| decimal(price.get("unit_amount")))
        .unwrap_or_default();
    unit.checked_mul(transformed(quantity, price)?)
        .ok_or(Overflow("unit amount × quantity"))
}

/// The quantity billed after `transform_quantity` (e.g. packs of 10, rounded up).
fn transformed(quantity: Decimal, price: &Value) -> Result<Decimal, Overflow> {
    let Some(transform) = price.get("transform_quantity").filter(|t| t.is_object()) else {
        return Ok(quantity);
    };
    let Some(divide_by) = decimal(transform.get("divide_by")).filter(|d| *d > Decimal::ZERO) else {
        return Ok(quantity);
    };
    let divided = quantity
        .checked_div(divide_by)
        .ok_or(Overflow("quantity ÷ divide_by"))?;
    Ok(match transform.get("round").and_then(Value::as_str) {
        Some("down") => divided.floor(),
        _ => divided.ceil(),
    })
}

/// A tier's unit and flat amounts.
fn tier_amounts(tier: &Value) -> (Decimal, Decimal) {
    let unit = decimal(tier.get("unit_amount_decimal"))
        .or_else(|| decimal(tier.get("unit_amount")))
        .unwrap_or_default();
    let flat = decimal(tier.get("flat_amount_decimal"))
        .or_else(|| decimal(tier.get("flat_amount")))
        .unwrap_or_default();
    (unit, flat)
}

/// A tier's upper bound; `None` for the last, unbounded one.
fn up_to(tier: &Value) -> Option<Decimal> {
    decimal(tier.get("up_to"))
}

fn volume(tiers: &[Value], quantity: Decimal) -> Result<Decimal, Overflow> {
    let Some(tier) = tiers
        .iter()
        .find(|tier| up_to(tier).is_none_or(|bound| quantity <= bound))
        .or_else(|| tiers.last())
    else {
        return Ok(Decimal::ZERO);
    };
    let (unit, flat) = tier_amounts(tier);
    unit.checked_mul(quantity)
        .and_then(|amount| amount.checked_add(flat))
        .ok_or(Overflow("volume tier"))
}

fn graduated(tiers: &[Value], quantity: Decimal) -> Result<Decimal, Overflow> {
    let mut total = Decimal::ZERO;
    let mut floor = Decimal::ZERO;
    for tier in tiers {
        if quantity <= floor {
            break;
        }
        let ceiling = up_to(tier).map_or(quantity, |bound| bound.min(quantity));
        let units = (ceiling - floor).max(Decimal::ZERO);
        let (unit, flat) = tier_amounts(tier);
        total = unit
            .checked_mul(units)
            .and_then(|amount| amount.checked_add(flat))
            .and_then(|amount| total.checked_add(amount))
            .ok_or(Overflow("graduated tiers"))?;
        floor = ceiling;
    }
    Ok(total)
}

/// The coupons of expanded discount objects (`discounts` lists ids unless expanded).
fn coupons(discounts: Option<&Value>) -> Vec<&Value> {
    discounts
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|discount| discount.get("coupon").filter(|c| c.is_object()))
        .collect()
}

/// `amount` after `coupons`, one after the other; `recurring` normalises an `amount_off`.
fn discounted(
    mut amount: Decimal,
    coupons: &[&Value],
    recurring: &Value,
) -> Result<Decimal, Overflow> {
    for coupon in coupons {
        let off = if let Some(percent) = decimal(coupon.get("percent_off")) {
            amount
                .checked_mul(percent)
                .and_then(|scaled| scaled.checked_div(Decimal::ONE_HUNDRED))
                .ok_or(Overflow("percent_off"))?
        } else if let Some(off) = decimal(coupon.get("amount_off")) {
            monthly(off, recurring)?
        } else {
            Decimal::ZERO
        };
        amount = amount.checked_sub(off).ok_or(Overflow("the coupon"))?;
    }
    Ok(amount)
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
        let recurring = price.get("recurring").unwrap_or(price);
        let amount = discounted(
            item_amount(item, price)?,
            &coupons(item.get("discounts")),
            recurring,
        )?
        .max(Decimal::ZERO);
        total = total
            .checked_add(monthly(amount, recurring)?)
            .ok_or(Overflow("the sum of the items"))?;
    }
    let mut stacked = coupons(subscription.get("discounts"));
    if stacked.is_empty()
        && let Some(coupon) = subscription
            .pointer("/discount/coupon")
            .filter(|c| c.is_object())
    {
        stacked.push(coupon);
    }
    let first_recurring = items
        .first()
        .and_then(|item| item.get("price"))
        .and_then(|price| price.get("recurring"))
        .unwrap_or(&Value::Null);
    total = discounted(total, &stacked, first_recurring)?;
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

    fn priced(price: Value, quantity: i64) -> Value {
        subscription(
            "active",
            vec![json!({"quantity": quantity, "price": price})],
            Value::Null,
        )
    }

    #[test]
    fn volume_tiers_price_the_whole_quantity_at_one_tier() {
        let price = json!({"billing_scheme": "tiered", "tiers_mode": "volume",
            "recurring": {"interval": "month", "interval_count": 1},
            "tiers": [{"up_to": 10, "unit_amount": 500, "flat_amount": 1000},
                      {"up_to": null, "unit_amount": 400, "flat_amount": 0}]});
        assert_eq!(mrr(&priced(price.clone(), 10)), Ok(Decimal::from(6_000)));
        assert_eq!(mrr(&priced(price, 11)), Ok(Decimal::from(4_400)));
    }

    #[test]
    fn graduated_tiers_price_each_share_at_its_tier() {
        let price = json!({"billing_scheme": "tiered", "tiers_mode": "graduated",
            "recurring": {"interval": "year", "interval_count": 1},
            "tiers": [{"up_to": 5, "unit_amount_decimal": "1200", "flat_amount": 600},
                      {"up_to": null, "unit_amount": 600, "flat_amount": null}]});
        // (5 × 1200 + 600) + 3 × 600 = 8400 a year → 700 a month.
        assert_eq!(mrr(&priced(price.clone(), 8)), Ok(Decimal::from(700)));
        // Only the first tier is reached: 3 × 1200 + 600 = 4200 → 350.
        assert_eq!(mrr(&priced(price, 3)), Ok(Decimal::from(350)));
    }

    #[test]
    fn metered_items_count_nothing_and_packs_round_as_stripe_says() {
        let metered = json!({"unit_amount": 25, "recurring": {"interval": "month",
            "interval_count": 1, "usage_type": "metered"}});
        assert_eq!(mrr(&priced(metered, 1)), Ok(Decimal::ZERO));
        let packs = json!({"unit_amount": 1000, "transform_quantity": {"divide_by": 10, "round": "up"},
            "recurring": {"interval": "month", "interval_count": 1}});
        assert_eq!(mrr(&priced(packs.clone(), 11)), Ok(Decimal::from(2_000)));
        let mut down = packs;
        down["transform_quantity"]["round"] = json!("down");
        assert_eq!(mrr(&priced(down, 11)), Ok(Decimal::from(1_000)));
    }

    #[test]
    fn discounts_stack_in_order_on_items_and_on_the_total() {
        let mut s = subscription(
            "active",
            vec![
                json!({"quantity": 1, "price": {"unit_amount": 10_000, "recurring": {"interval": "month", "interval_count": 1}},
                       "discounts": [{"object": "discount", "coupon": {"percent_off": 50}}]}),
                item(2_000, 1, "month", 1),
            ],
            // The older single field is ignored when `discounts` says more.
            json!({"coupon": {"percent_off": 90}}),
        );
        s["discounts"] = json!([
            {"object": "discount", "coupon": {"percent_off": 10}},
            {"object": "discount", "coupon": {"amount_off": 800}},
            "di_unexpanded"
        ]);
        // Items: 5000 + 2000 = 7000; −10% = 6300; −800 = 5500.
        assert_eq!(mrr(&s), Ok(Decimal::from(5_500)));
        s["discounts"] = json!(["di_only_ids"]);
        // Ids alone say nothing, so the older `discount` applies: 7000 − 90%.
        assert_eq!(mrr(&s), Ok(Decimal::from(700)));
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
