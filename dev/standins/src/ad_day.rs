//! The numbers of one ad on one day, the same for Meta and TikTok: a per-ad profile
//! (budget, CPM, CTR, conversion rate, order value) drawn once from the account's key, and
//! a per-day draw around it with a weekly spend pattern. A restated day keeps spend,
//! impressions and clicks and adds late-attributed purchases, as the platforms' own
//! restatements do.

use chrono::{Datelike, NaiveDate};

use crate::seeded::{Draw, key};

/// The numbers of one ad on one day, before a platform formats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AdDay {
    pub spend_cents: i64,
    pub impressions: u64,
    pub clicks: u64,
    pub reach: u64,
    pub link_clicks: u64,
    pub landing_page_views: u64,
    pub add_to_carts: u64,
    pub purchases: u64,
    pub purchase_value_cents: i64,
}

/// The delivery metrics Meta and TikTok both report of an ad-day, under the same names:
/// an [`AdDay`]'s spend, impressions, clicks and reach, and the rates derived from them
/// (each platform formats them its own way).
pub(crate) const DELIVERY_METRICS: [&str; 7] = [
    "spend",
    "impressions",
    "clicks",
    "reach",
    "ctr",
    "cpc",
    "cpm",
];

/// Spend patterns by weekday (Mon..Sun): e-commerce spend peaks at the weekend.
const WEEKDAY: [f64; 7] = [1.0, 0.97, 0.98, 1.0, 1.05, 1.12, 1.1];

fn date_number(date: NaiveDate) -> u64 {
    u64::try_from(date.num_days_from_ce()).unwrap_or_default()
}

/// One ad-day of a platform account: `account_key` already folds seed, platform and
/// account; `version` is how many times the day was restated (late conversions).
pub(crate) fn ad_day(account_key: u64, ad_index: u64, date: NaiveDate, version: u32) -> AdDay {
    let mut profile = Draw::new(key(&[account_key, ad_index, 0xAD]));
    let budget = profile.unit();
    let daily_budget_cents = 500.0 + budget * budget * 24_500.0;
    let cpm_cents = profile.between(400.0, 2_500.0);
    let ctr = profile.between(0.004, 0.03);
    let cvr = profile.between(0.005, 0.05);
    let aov_cents = profile.between(2_500.0, 15_000.0);
    let frequency = profile.between(1.05, 1.6);

    let mut day = Draw::new(key(&[account_key, ad_index, date_number(date)]));
    let weekday = WEEKDAY[date.weekday().num_days_from_monday() as usize];
    let spend = daily_budget_cents * weekday * day.between(0.7, 1.3);
    let spend_cents = spend.round() as i64;
    let impressions = (spend / cpm_cents * 1_000.0 * day.between(0.9, 1.1)).round() as u64;
    let clicks = (impressions as f64 * ctr * day.between(0.8, 1.2)).round() as u64;
    let reach = (impressions as f64 / frequency).round() as u64;
    let link_clicks = (clicks as f64 * 0.85).round() as u64;
    let landing_page_views = (link_clicks as f64 * 0.7).round() as u64;
    let mut purchases = (clicks as f64 * cvr * day.between(0.6, 1.4) + day.unit()) as u64;
    let mut value = purchases as f64 * aov_cents * day.between(0.8, 1.2);
    for restatement in 1..=version {
        // Late-attributed conversions: every restatement credits one or two more purchases.
        let mut late = Draw::new(key(&[
            account_key,
            ad_index,
            date_number(date),
            u64::from(restatement),
        ]));
        let extra = 1 + late.below(2);
        purchases += extra;
        value += extra as f64 * aov_cents * late.between(0.8, 1.2);
    }
    let add_to_carts = purchases * 3 + (link_clicks / 20);
    AdDay {
        spend_cents,
        impressions,
        clicks,
        reach,
        link_clicks,
        landing_page_views,
        add_to_carts,
        purchases,
        purchase_value_cents: value.round() as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ad_days_are_deterministic_and_restatements_add_conversions() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
        let base = ad_day(7, 3, date, 0);
        assert_eq!(base, ad_day(7, 3, date, 0));
        assert_ne!(base, ad_day(8, 3, date, 0));
        let restated = ad_day(7, 3, date, 1);
        assert_eq!(restated.spend_cents, base.spend_cents);
        assert!(restated.purchases > base.purchases);
        assert!(restated.purchase_value_cents > base.purchase_value_cents);
    }
}
