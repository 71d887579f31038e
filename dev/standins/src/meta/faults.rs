//! The Meta stand-in's state and its run-time handle, [`MetaFaults`]: the accounts and
//! their restated days, the token and app secret requests must carry, the throttling and
//! usage knobs, and the ground truth a test compares a sync against.

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;

use super::report_runs::ReportRuns;
use super::throttle::UsageRamp;
use super::{IDS, MetaAccount, MetaThrottle};
use crate::ad_accounts::{AdAccounts, AdDayFacts, AdTotals};
use crate::config::StandinConfig;
use crate::faults::{Switches, fault_handle};

pub(super) struct MetaState {
    /// What `paging.next` links start with.
    pub(super) base_url: String,
    pub(super) ads: AdAccounts<MetaAccount>,
    pub(super) token: String,
    pub(super) app_secret: Option<String>,
    /// The throttling error and its `estimated_time_to_regain_access` (minutes).
    pub(super) throttle: Mutex<(MetaThrottle, u32)>,
    pub(super) usage_pct: AtomicU32,
    /// Usage that rises per call, when a test sets one.
    pub(super) usage_ramp: Mutex<Option<UsageRamp>>,
    /// The most rows a synchronous read may have (`u64::MAX`: any).
    pub(super) max_sync_rows: AtomicU64,
    pub(super) report_runs: Mutex<ReportRuns>,
    pub(super) switches: Switches,
    /// Counts the errors answered, to give each its own `fbtrace_id`.
    pub(super) traces: AtomicU64,
}

fault_handle! {
    /// The run-time handle of the Meta stand-in; dereferences to its [`Switches`].
    MetaFaults(MetaState)
}

impl MetaFaults {
    pub(crate) fn new(config: &StandinConfig, base_url: &str) -> Self {
        let scenario = &config.meta;
        MetaFaults(Arc::new(MetaState {
            base_url: base_url.to_string(),
            ads: AdAccounts::new(config, "meta", &scenario.accounts, &IDS),
            token: scenario.access_token.clone(),
            app_secret: scenario.app_secret.clone(),
            throttle: Mutex::new((scenario.throttle, scenario.regain_access_minutes)),
            usage_pct: AtomicU32::new(3),
            usage_ramp: Mutex::new(None),
            max_sync_rows: AtomicU64::new(scenario.max_sync_rows.unwrap_or(u64::MAX)),
            report_runs: Mutex::new(ReportRuns::default()),
            switches: Switches::default(),
            traces: AtomicU64::new(0),
        }))
    }

    /// Stands for `https://graph.facebook.com`.
    pub fn base_url(&self) -> &str {
        &self.0.base_url
    }

    /// Restates `date` for every account: each ad gets one or two more late-attributed
    /// purchases (and their value); spend, impressions and clicks stay. Returns how many
    /// times the day has been restated.
    pub fn restate_day(&self, date: NaiveDate) -> u32 {
        self.0.ads.restate_day(date)
    }

    /// The ad ids of an account, in the order rows come.
    pub fn ad_ids(&self, account_id: &str) -> Vec<String> {
        self.0.ads.ad_ids(account_id)
    }

    /// What a full sync of `since..=until` must store: one entry per served row, with the
    /// canonical purchase count and value, as of now (restatements included).
    pub fn expected_rows(
        &self,
        account_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Vec<AdDayFacts> {
        self.0
            .ads
            .expected_rows(account_id, since, until, |_, row| {
                Some(row.numbers.purchase_value_cents)
            })
    }

    /// Sums of [`MetaFaults::expected_rows`].
    pub fn expected_totals(
        &self,
        account_id: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> AdTotals {
        AdTotals::of(&self.expected_rows(account_id, since, until))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{config, first_uri, walk};
    use crate::router;
    use crate::test_support::day;

    #[tokio::test]
    async fn a_restated_day_returns_more_purchases_and_other_days_stay() {
        let (router, handles) = router(&config(6), "http://standins.test");
        let uri = first_uri("2026-11-01", "2026-11-02", 100);
        let before = walk(&router, uri.clone()).await;
        assert_eq!(handles.meta.restate_day(day("2026-11-02")), 1);
        let after = walk(&router, uri).await;
        for (old, new) in before.iter().zip(&after) {
            assert_eq!(old["spend"], new["spend"]);
            if old["date_start"] == "2026-11-01" {
                assert_eq!(old, new);
            } else {
                assert_ne!(old["actions"], new["actions"]);
                assert_ne!(old["action_values"], new["action_values"]);
            }
        }
    }
}
