//! The names of an account's campaigns, ad sets and ads: picked per account from lists
//! that read like a real store's (objective and audience, audience and placement, creative
//! and offer), and numbered so that no two are alike.

use crate::seeded::mix64;

const OBJECTIVES: [&str; 5] = [
    "Prospecting",
    "Retargeting",
    "Advantage+ Shopping",
    "Lookalike 1%",
    "Catalog Sales",
];
const AUDIENCES: [&str; 6] = [
    "Broad US",
    "Women 25-44",
    "Men 18-34",
    "Site visitors 30d",
    "Cart abandoners 14d",
    "Interest: Fitness",
];
const PLACEMENTS: [&str; 3] = ["Advantage+ placements", "Feeds only", "Reels only"];
const CREATIVES: [&str; 6] = [
    "UGC video",
    "Carousel",
    "Static image",
    "Founder story",
    "Unboxing reel",
    "Testimonial",
];
const OFFERS: [&str; 5] = [
    "Free shipping",
    "20% off",
    "Bundle & save",
    "New arrivals",
    "Bestsellers",
];

fn pick<'a>(list: &[&'a str], account_key: u64, salt: u64, index: u64) -> &'a str {
    list[(mix64(account_key ^ salt ^ index.wrapping_mul(0x9E37)) % list.len() as u64) as usize]
}

pub(super) fn campaign_name(account_key: u64, campaign: u64) -> String {
    format!(
        "{} | {} #{}",
        OBJECTIVES[(campaign % OBJECTIVES.len() as u64) as usize],
        pick(&AUDIENCES, account_key, 11, campaign),
        campaign + 1
    )
}

pub(super) fn adset_name(account_key: u64, adset: u64) -> String {
    format!(
        "{} – {}",
        pick(&AUDIENCES, account_key, 12, adset),
        PLACEMENTS[(adset % PLACEMENTS.len() as u64) as usize]
    )
}

pub(super) fn ad_name(account_key: u64, ad: u64) -> String {
    format!(
        "{} {:02} – {}",
        pick(&CREATIVES, account_key, 13, ad),
        ad + 1,
        pick(&OFFERS, account_key, 14, ad)
    )
}
