//! What Meta and TikTok share about their ad accounts beyond the numbers of an ad-day:
//! which days have been restated since start, and the ground truth a test compares a
//! sync against ([`AdDayFacts`], summed as [`AdTotals`]).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::NaiveDate;

use crate::lock;

/// The ground truth of one ad on one day, as a platform reports it (ids as the platform
/// spells them). For tests that compare what a sync stored with what the API served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdDayFacts {
    pub account_id: String,
    pub campaign_id: String,
    /// Meta's ad set, TikTok's ad group.
    pub adset_id: String,
    pub ad_id: String,
    pub date: NaiveDate,
    pub spend_cents: i64,
    pub impressions: u64,
    pub clicks: u64,
    /// Meta: the canonical purchase count (the same number appears under three action
    /// types). TikTok: `conversion`.
    pub purchases: u64,
    /// Meta: the purchase `action_values`. TikTok: `total_complete_payment_rate`, `None`
    /// where the ad has no payment tracking (the API sends `"-"`).
    pub purchase_value_cents: Option<i64>,
}

/// Sums over [`AdDayFacts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdTotals {
    pub rows: usize,
    pub spend_cents: i64,
    pub impressions: u64,
    pub clicks: u64,
    pub purchases: u64,
    /// Sum of the known purchase values (TikTok's `"-"` counts as nothing).
    pub purchase_value_cents: i64,
}

impl AdTotals {
    pub fn of(rows: &[AdDayFacts]) -> Self {
        rows.iter().fold(AdTotals::default(), |mut totals, row| {
            totals.rows += 1;
            totals.spend_cents += row.spend_cents;
            totals.impressions += row.impressions;
            totals.clicks += row.clicks;
            totals.purchases += row.purchases;
            totals.purchase_value_cents += row.purchase_value_cents.unwrap_or(0);
            totals
        })
    }
}

/// Restatement versions per day, shared by Meta and TikTok.
#[derive(Debug, Default)]
pub(crate) struct Restatements(Mutex<HashMap<NaiveDate, u32>>);

impl Restatements {
    pub(crate) fn bump(&self, date: NaiveDate) -> u32 {
        let mut map = lock::unpoisoned(&self.0);
        let version = map.entry(date).or_insert(0);
        *version += 1;
        *version
    }

    pub(crate) fn snapshot(&self) -> HashMap<NaiveDate, u32> {
        lock::unpoisoned(&self.0).clone()
    }
}
