//! What the stand-ins serve is a function of [`StandinConfig`]: the seed, the platforms'
//! "today" and clock, and one scenario per platform. [`today_at`] is how every platform
//! turns the configured today into its own account's or shop's date.

use chrono::NaiveDate;

use crate::meta::MetaScenario;
use crate::shopify::ShopifyScenario;
use crate::tiktok::TikTokScenario;

/// Everything the stand-ins serve is a function of this configuration (plus, when
/// `today` is `None`, the date they are asked on).
#[derive(Debug, Clone)]
pub struct StandinConfig {
    /// Seeds every generated number, id and name.
    pub seed: u64,
    /// The platforms' "today": ad rows exist up to this date (in each account's own
    /// timezone) and Shopify's seeded orders end at its midnight in the shop's timezone.
    /// `None` means the real current date; pin it in tests that compare data across runs.
    pub today: Option<NaiveDate>,
    /// The platforms' clock: when a Shopify webhook says it was triggered
    /// (`X-Shopify-Triggered-At`). Give it the stack's clock when the stack's is shifted.
    pub clock: shared::clock::Clock,
    pub meta: MetaScenario,
    pub tiktok: TikTokScenario,
    pub shopify: ShopifyScenario,
}

impl Default for StandinConfig {
    fn default() -> Self {
        StandinConfig {
            seed: 42,
            today: None,
            clock: shared::clock::Clock::system(),
            meta: MetaScenario::default(),
            tiktok: TikTokScenario::default(),
            shopify: ShopifyScenario::default(),
        }
    }
}

impl StandinConfig {
    /// The sizes issue #6's benchmark asks for: 500 ads on the Meta account and on the
    /// TikTok advertiser (90 days → 45,000 rows each) and 100,000 orders in one shop.
    pub fn benchmark() -> Self {
        let mut config = StandinConfig::default();
        for account in &mut config.meta.accounts {
            account.ads = 500;
        }
        for advertiser in &mut config.tiktok.advertisers {
            advertiser.ads = 500;
        }
        for shop in &mut config.shopify.shops {
            shop.orders = 100_000;
            shop.history_days = 120;
        }
        config
    }
}

/// The date at a fixed UTC offset: the configured today, or the real one there.
pub(crate) fn today_at(config_today: Option<NaiveDate>, utc_offset_minutes: i32) -> NaiveDate {
    config_today.unwrap_or_else(|| {
        (chrono::Utc::now() + chrono::Duration::minutes(i64::from(utc_offset_minutes))).date_naive()
    })
}
