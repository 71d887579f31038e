//! The TikTok stand-in's state and its run-time handle, [`TikTokFaults`]: the advertisers
//! and their restated days, the token requests must carry, and the ground truth a test
//! compares a sync against.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;

use super::metrics::tracks_payments;
use super::tasks::Tasks;
use super::{IDS, TikTokAdvertiser};
use crate::ad_accounts::{AdAccounts, AdDayFacts, AdTotals};
use crate::config::StandinConfig;
use crate::faults::{Switches, fault_handle};

pub(super) struct TikTokState {
    pub(super) ads: AdAccounts<TikTokAdvertiser>,
    pub(super) token: String,
    pub(super) switches: Switches,
    pub(super) tasks: Mutex<Tasks>,
    /// Counts the answers, to give each its own `request_id`.
    pub(super) requests: AtomicU64,
}

fault_handle! {
    /// The run-time handle of the TikTok stand-in; dereferences to its [`Switches`].
    TikTokFaults(TikTokState)
}

impl TikTokFaults {
    pub(crate) fn new(config: &StandinConfig) -> Self {
        TikTokFaults(Arc::new(TikTokState {
            ads: AdAccounts::new(config, "tiktok", &config.tiktok.advertisers, &IDS),
            token: config.tiktok.access_token.clone(),
            switches: Switches::default(),
            tasks: Mutex::new(Tasks::default()),
            requests: AtomicU64::new(0),
        }))
    }

    /// Restates `date` for every advertiser: one or two more late conversions (and their
    /// value) for each ad; spend, impressions and clicks stay. Returns the restatement count.
    pub fn restate_day(&self, date: NaiveDate) -> u32 {
        self.0.ads.restate_day(date)
    }

    /// The ad ids of an advertiser, in the order rows come.
    pub fn ad_ids(&self, advertiser_id: &str) -> Vec<String> {
        self.0.ads.ad_ids(advertiser_id)
    }

    /// What a full sync of `since..=until` must store (`purchases` = `conversion`,
    /// `purchase_value_cents` = `total_complete_payment_rate`, `None` where it is `"-"`).
    pub fn expected_rows(
        &self,
        advertiser_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Vec<AdDayFacts> {
        self.0
            .ads
            .expected_rows(advertiser_id, since, until, |advertiser, row| {
                tracks_payments(advertiser.key, row.ad).then_some(row.numbers.purchase_value_cents)
            })
    }

    /// Sums of [`TikTokFaults::expected_rows`].
    pub fn expected_totals(
        &self,
        advertiser_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> AdTotals {
        AdTotals::of(&self.expected_rows(advertiser_id, since, until))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{config, walk};
    use crate::router;
    use crate::test_support::day;

    #[tokio::test]
    async fn a_restated_day_returns_more_conversions() {
        let (router, handles) = router(&config(5), "http://standins.test");
        let before = walk(&router, "2026-11-10", "2026-11-10", 100).await;
        handles.tiktok.restate_day(day("2026-11-10"));
        let after = walk(&router, "2026-11-10", "2026-11-10", 100).await;
        for (old, new) in before.iter().zip(&after) {
            assert_eq!(old["metrics"]["spend"], new["metrics"]["spend"]);
            let count = |row: &serde_json::Value| {
                row["metrics"]["conversion"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            };
            assert!(count(new) > count(old));
        }
    }
}
