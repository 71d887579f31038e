//! The seeded ad accounts Meta and TikTok both serve: which accounts exist and their
//! keys, the ids of their campaigns, ad sets and ads ([`IdScheme`]), which days have been
//! restated, and the rows of a daily ad-level report — date by date, ads in a fixed
//! order, nothing after the account's own today ([`AdAccounts::page`]). Each platform
//! formats those rows its own way; the ground truth a test compares a sync against
//! ([`AdDayFacts`], summed as [`AdTotals`]) is built from the same rows, so what is
//! served and what is expected cannot drift apart.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::NaiveDate;

use crate::ad_day::{AdDay, ad_day};
use crate::config::{StandinConfig, today_at};
use crate::lock;
use crate::seeded::{hash_str, key, mix64};

/// What the shared model needs from a platform's account configuration.
pub(crate) trait AdAccountSpec: Clone {
    fn id(&self) -> &str;
    fn ads(&self) -> usize;
    /// The account's fixed offset from UTC: its dates are its own.
    fn utc_offset_minutes(&self) -> i32;
}

/// Implements [`AdAccountSpec`] for a platform's account type: Meta's and TikTok's name
/// the fields alike.
macro_rules! impl_ad_account_spec {
    ($spec:ty) => {
        impl $crate::ad_accounts::AdAccountSpec for $spec {
            fn id(&self) -> &str {
                &self.id
            }

            fn ads(&self) -> usize {
                self.ads
            }

            fn utc_offset_minutes(&self) -> i32 {
                self.utc_offset_minutes
            }
        }
    };
}
pub(crate) use impl_ad_account_spec;

/// How a platform numbers an account's campaigns, ad sets and ads: each kind has its own
/// prefix, each account its own range under it (drawn from its key), and ads are grouped
/// into ad sets and campaigns in order.
pub(crate) struct IdScheme {
    /// Of campaigns, ad sets and ads, in that order.
    pub(crate) prefixes: [u64; 3],
    /// The width of one account's range.
    pub(crate) ids_per_account: u64,
    pub(crate) ads_per_campaign: u64,
    pub(crate) ads_per_adset: u64,
}

/// The ids of one ad and of the campaign and ad set (TikTok: ad group) it belongs to.
pub(crate) struct AdIds {
    pub(crate) campaign: String,
    pub(crate) adset: String,
    pub(crate) ad: String,
}

impl IdScheme {
    /// The 0-based campaign of the account's ad `ad`.
    pub(crate) fn campaign_of(&self, ad: u64) -> u64 {
        ad / self.ads_per_campaign
    }

    /// The 0-based ad set of the account's ad `ad`.
    pub(crate) fn adset_of(&self, ad: u64) -> u64 {
        ad / self.ads_per_adset
    }

    pub(crate) fn ids(&self, account_key: u64, ad: u64) -> AdIds {
        AdIds {
            campaign: self.object_id(0, account_key, self.campaign_of(ad)),
            adset: self.object_id(1, account_key, self.adset_of(ad)),
            ad: self.object_id(2, account_key, ad),
        }
    }

    /// The id of the `index`th object of kind `kind` (an index into `prefixes`).
    fn object_id(&self, kind: usize, account_key: u64, index: u64) -> String {
        let range = mix64(account_key ^ (kind as u64 + 1)) % 1_000_000_000;
        (self.prefixes[kind] + range * self.ids_per_account + index).to_string()
    }
}

/// One configured account and the key its numbers are drawn from.
pub(crate) struct SeededAccount<S> {
    pub(crate) spec: S,
    pub(crate) key: u64,
}

/// One row of a daily ad-level report, before a platform formats it.
pub(crate) struct AdDayRow {
    pub(crate) date: NaiveDate,
    /// The ad's 0-based index in its account.
    pub(crate) ad: u64,
    pub(crate) ids: AdIds,
    pub(crate) numbers: AdDay,
}

/// One page of a report, and where it stands in the whole: rows `start..end` of `total`.
pub(crate) struct ReportPage {
    pub(crate) total: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) rows: Vec<AdDayRow>,
}

/// The accounts of one ad platform, with the days restated at run time.
pub(crate) struct AdAccounts<S> {
    today: Option<NaiveDate>,
    ids: &'static IdScheme,
    accounts: Vec<SeededAccount<S>>,
    restated: Restatements,
}

impl<S: AdAccountSpec> AdAccounts<S> {
    /// `platform` keeps two platforms' accounts of the same id apart.
    pub(crate) fn new(
        config: &StandinConfig,
        platform: &str,
        specs: &[S],
        ids: &'static IdScheme,
    ) -> Self {
        let accounts = specs
            .iter()
            .map(|spec| SeededAccount {
                key: key(&[config.seed, hash_str(platform), hash_str(spec.id())]),
                spec: spec.clone(),
            })
            .collect();
        AdAccounts {
            today: config.today,
            ids,
            accounts,
            restated: Restatements::default(),
        }
    }

    pub(crate) fn find(&self, id: &str) -> Option<&SeededAccount<S>> {
        self.accounts.iter().find(|account| account.spec.id() == id)
    }

    /// The account's today, in its own timezone: no row is after it.
    pub(crate) fn today(&self, account: &SeededAccount<S>) -> NaiveDate {
        today_at(self.today, account.spec.utc_offset_minutes())
    }

    /// Restates `date` for every account (see [`ad_day`]); how many times it has been.
    pub(crate) fn restate_day(&self, date: NaiveDate) -> u32 {
        self.restated.bump(date)
    }

    /// The ad ids of an account, in the order rows come.
    pub(crate) fn ad_ids(&self, account_id: &str) -> Vec<String> {
        self.find(account_id)
            .map(|account| {
                (0..account.spec.ads() as u64)
                    .map(|ad| self.ids.ids(account.key, ad).ad)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Rows `offset..offset + limit` of the report over `since..=last` (the caller has
    /// already cut `last` at the account's today), as restated now.
    pub(crate) fn page(
        &self,
        account: &SeededAccount<S>,
        since: NaiveDate,
        last: NaiveDate,
        offset: u64,
        limit: u64,
    ) -> ReportPage {
        let ads = account.spec.ads() as u64;
        let days = if since > last {
            0
        } else {
            (last - since).num_days() as u64 + 1
        };
        let total = days * ads;
        let start = offset.min(total);
        let end = start.saturating_add(limit).min(total);
        let versions = if end > start {
            self.restated.snapshot()
        } else {
            HashMap::new()
        };
        let rows = (start..end)
            .map(|index| {
                let date = since + chrono::Days::new(index / ads);
                let ad = index % ads;
                let version = versions.get(&date).copied().unwrap_or(0);
                AdDayRow {
                    date,
                    ad,
                    ids: self.ids.ids(account.key, ad),
                    numbers: ad_day(account.key, ad, date, version),
                }
            })
            .collect();
        ReportPage {
            total,
            start,
            end,
            rows,
        }
    }

    /// What a full sync of `since..=until` must store: every row served, as of now, with
    /// the purchase value the platform reports for it.
    pub(crate) fn expected_rows(
        &self,
        account_id: &str,
        since: NaiveDate,
        until: NaiveDate,
        purchase_value: impl Fn(&SeededAccount<S>, &AdDayRow) -> Option<i64>,
    ) -> Vec<AdDayFacts> {
        let Some(account) = self.find(account_id) else {
            return Vec::new();
        };
        let last = until.min(self.today(account));
        self.page(account, since, last, 0, u64::MAX)
            .rows
            .into_iter()
            .map(|row| AdDayFacts {
                account_id: account.spec.id().to_string(),
                purchase_value_cents: purchase_value(account, &row),
                campaign_id: row.ids.campaign,
                adset_id: row.ids.adset,
                ad_id: row.ids.ad,
                date: row.date,
                spend_cents: row.numbers.spend_cents,
                impressions: row.numbers.impressions,
                clicks: row.numbers.clicks,
                purchases: row.numbers.purchases,
            })
            .collect()
    }
}

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

/// How many times each day has been restated.
#[derive(Debug, Default)]
struct Restatements(Mutex<HashMap<NaiveDate, u32>>);

impl Restatements {
    fn bump(&self, date: NaiveDate) -> u32 {
        let mut map = lock::unpoisoned(&self.0);
        let version = map.entry(date).or_insert(0);
        *version += 1;
        *version
    }

    fn snapshot(&self) -> HashMap<NaiveDate, u32> {
        lock::unpoisoned(&self.0).clone()
    }
}
