//! One insights row as Meta sends it: only the requested fields (plus `date_start` and
//! `date_stop`), numbers as strings, and the purchases under the three action types a
//! consumer must choose from.

use serde::Serialize;

use super::names::{ad_name, adset_name, campaign_name};
use super::request::Fields;
use super::{Account, IDS};
use crate::ad_accounts::AdDayRow;
use crate::ad_day::AdDay;
use crate::money::money_trimmed;

#[derive(Serialize)]
struct ActionValue {
    action_type: &'static str,
    value: String,
}

#[derive(Serialize, Default)]
pub(super) struct Row<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_currency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adset_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adset_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ad_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ad_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    impressions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clicks: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reach: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ctr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actions: Option<Vec<ActionValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action_values: Option<Vec<ActionValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purchase_roas: Option<Vec<ActionValue>>,
    date_start: String,
    date_stop: String,
}

impl<'a> Row<'a> {
    /// The requested `fields` of one report row of `account`.
    pub(super) fn of(account: &'a Account, row: AdDayRow, fields: Fields) -> Self {
        let AdDayRow {
            date,
            ad,
            ids,
            numbers: day,
        } = row;
        let spec = &account.spec;
        let spend = day.spend_cents as f64 / 100.0;
        let date_text = date.format("%Y-%m-%d").to_string();
        Row {
            account_id: fields.has("account_id").then_some(spec.id.as_str()),
            account_name: fields.has("account_name").then_some(spec.name.as_str()),
            account_currency: fields
                .has("account_currency")
                .then_some(spec.currency.as_str()),
            campaign_id: fields.has("campaign_id").then_some(ids.campaign),
            campaign_name: fields
                .has("campaign_name")
                .then(|| campaign_name(account.key, IDS.campaign_of(ad))),
            adset_id: fields.has("adset_id").then_some(ids.adset),
            adset_name: fields
                .has("adset_name")
                .then(|| adset_name(account.key, IDS.adset_of(ad))),
            ad_id: fields.has("ad_id").then_some(ids.ad),
            ad_name: fields.has("ad_name").then(|| ad_name(account.key, ad)),
            spend: fields.has("spend").then(|| money_trimmed(day.spend_cents)),
            impressions: fields
                .has("impressions")
                .then(|| day.impressions.to_string()),
            clicks: fields.has("clicks").then(|| day.clicks.to_string()),
            reach: fields.has("reach").then(|| day.reach.to_string()),
            ctr: fields
                .has("ctr")
                .then(|| ratio(day.clicks as f64 * 100.0, day.impressions as f64))
                .flatten(),
            cpc: fields
                .has("cpc")
                .then(|| ratio(spend, day.clicks as f64))
                .flatten(),
            cpm: fields
                .has("cpm")
                .then(|| ratio(spend * 1000.0, day.impressions as f64))
                .flatten(),
            actions: fields.has("actions").then(|| actions(&day)).flatten(),
            action_values: fields
                .has("action_values")
                .then(|| action_values(&day))
                .flatten(),
            purchase_roas: fields
                .has("purchase_roas")
                .then(|| purchase_roas(&day))
                .flatten(),
            date_start: date_text.clone(),
            date_stop: date_text,
        }
    }
}

/// The purchase action types Meta reports the same purchases under.
const PURCHASE_TYPES: [&str; 3] = [
    "offsite_conversion.fb_pixel_purchase",
    "purchase",
    "omni_purchase",
];

fn actions(day: &AdDay) -> Option<Vec<ActionValue>> {
    let counts = [
        ("link_click", day.link_clicks),
        ("landing_page_view", day.landing_page_views),
        ("add_to_cart", day.add_to_carts),
        (PURCHASE_TYPES[0], day.purchases),
        (PURCHASE_TYPES[1], day.purchases),
        (PURCHASE_TYPES[2], day.purchases),
    ];
    let list: Vec<ActionValue> = counts
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(action_type, count)| ActionValue {
            action_type,
            value: count.to_string(),
        })
        .collect();
    (!list.is_empty()).then_some(list)
}

fn action_values(day: &AdDay) -> Option<Vec<ActionValue>> {
    (day.purchases > 0).then(|| {
        PURCHASE_TYPES
            .iter()
            .map(|action_type| ActionValue {
                action_type,
                value: money_trimmed(day.purchase_value_cents),
            })
            .collect()
    })
}

fn ratio(numerator: f64, denominator: f64) -> Option<String> {
    (denominator > 0.0).then(|| format!("{:.6}", numerator / denominator))
}

/// Purchase value per unit of spend, under `omni_purchase` only, on days with purchases.
fn purchase_roas(day: &AdDay) -> Option<Vec<ActionValue>> {
    (day.purchases > 0).then(|| {
        vec![ActionValue {
            action_type: "omni_purchase",
            value: format!(
                "{:.6}",
                day.purchase_value_cents as f64 / day.spend_cents.max(1) as f64
            ),
        }]
    })
}
