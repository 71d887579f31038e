//! Report metrics as TikTok writes them: every value a string, money with two decimals,
//! rates as percentages, costs per unit, and `"-"` where TikTok has no value — the payment
//! metrics of an ad without payment tracking.

use serde::Serialize;
use serde::ser::SerializeMap;

use super::{Advertiser, IDS};
use crate::ad_accounts::AdDayRow;
use crate::money::money;
use crate::seeded::mix64;

/// One ad in ten has no payment tracking: its payment metrics are `"-"`.
pub(super) fn tracks_payments(advertiser_key: u64, ad: u64) -> bool {
    !mix64(advertiser_key ^ ad ^ 0x9A7).is_multiple_of(10)
}

const MISSING: &str = "-";

fn percent(numerator: f64, denominator: f64) -> String {
    if denominator > 0.0 {
        format!("{:.2}", numerator * 100.0 / denominator)
    } else {
        "0.00".into()
    }
}

fn per(spend_cents: i64, count: u64) -> String {
    if count > 0 {
        money((spend_cents as f64 / count as f64).round() as i64)
    } else {
        "0.00".into()
    }
}

/// One metric of one row, as TikTok formats it.
pub(super) fn metric(name: &str, advertiser: &Advertiser, row: &AdDayRow) -> String {
    let day = &row.numbers;
    let tracked = tracks_payments(advertiser.key, row.ad);
    match name {
        "spend" => money(day.spend_cents),
        "impressions" => day.impressions.to_string(),
        "clicks" => day.clicks.to_string(),
        "reach" => day.reach.to_string(),
        "ctr" => percent(day.clicks as f64, day.impressions as f64),
        "cpc" => per(day.spend_cents, day.clicks),
        "cpm" => per(day.spend_cents * 1000, day.impressions),
        "conversion" => day.purchases.to_string(),
        "cost_per_conversion" => per(day.spend_cents, day.purchases),
        "conversion_rate" => percent(day.purchases as f64, day.clicks as f64),
        "complete_payment" if tracked => day.purchases.to_string(),
        "total_complete_payment_rate" if tracked => money(day.purchase_value_cents),
        "complete_payment_roas" if tracked => format!(
            "{:.2}",
            day.purchase_value_cents as f64 / day.spend_cents.max(1) as f64
        ),
        "cost_per_complete_payment" if tracked => per(day.spend_cents, day.purchases),
        "complete_payment"
        | "total_complete_payment_rate"
        | "complete_payment_roas"
        | "cost_per_complete_payment" => MISSING.into(),
        "campaign_id" => row.ids.campaign.clone(),
        "campaign_name" => format!("Spark | Conversions #{}", IDS.campaign_of(row.ad) + 1),
        "adgroup_id" => row.ids.adset.clone(),
        "adgroup_name" => format!("Ad group {} – Auto placement", IDS.adset_of(row.ad) + 1),
        "ad_name" => format!("TikTok creative {:03}", row.ad + 1),
        "currency" => advertiser.spec.currency.clone(),
        _ => MISSING.into(),
    }
}

/// Serialises as a JSON object in the requested order.
pub(super) struct Metrics(pub(super) Vec<(&'static str, String)>);

impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}
