//! Candidate rules: each reads a small snapshot of a workspace's recent numbers and proposes
//! advice a marketer can act on, with the numbers that justify it (the feature vector the
//! ranker learns from) and an expected impact in the workspace's currency per week.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

/// One campaign over the recent window (14 days).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignStats {
    pub platform: String,
    pub campaign_id: String,
    pub spend: Decimal,
    pub conversion_value: Decimal,
    /// Days with spend in the window, and how many of them had ROAS ≥ the target.
    pub days_with_spend: u32,
    pub days_on_target: u32,
}

/// One ad over the last 7 days.
#[derive(Debug, Clone, PartialEq)]
pub struct AdStats {
    pub platform: String,
    pub ad_id: String,
    pub spend: Decimal,
    pub conversions: Decimal,
}

/// Workspace-level days of the last week.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayStats {
    pub spend: Decimal,
    pub orders: i64,
    pub events: i64,
}

/// Everything the rules look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub campaigns: Vec<CampaignStats>,
    pub ads: Vec<AdStats>,
    pub days: Vec<DayStats>,
    /// MRR 30 days ago and now.
    pub mrr_then: Decimal,
    pub mrr_now: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ShiftBudget,
    PauseAd,
    RaiseBudget,
    TrackingGap,
    ChurnRisk,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::ShiftBudget,
        Kind::PauseAd,
        Kind::RaiseBudget,
        Kind::TrackingGap,
        Kind::ChurnRisk,
    ];

    /// The kind stored as `text`, if it is one.
    pub fn parse(stored: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == stored)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ShiftBudget => "shift_budget",
            Kind::PauseAd => "pause_ad",
            Kind::RaiseBudget => "raise_budget",
            Kind::TrackingGap => "tracking_gap",
            Kind::ChurnRisk => "churn_risk",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub kind: Kind,
    pub target: String,
    pub explanation: String,
    pub expected_impact: Decimal,
    pub features: Vec<f64>,
}

/// ROAS a campaign must reach to count as working.
pub const TARGET_ROAS: Decimal = Decimal::TWO;
/// Weekly spend without a conversion that is worth flagging.
pub const WASTED_SPEND: Decimal = Decimal::from_parts(50, 0, 0, false, 0);

fn roas(spend: Decimal, value: Decimal) -> Option<Decimal> {
    (!spend.is_zero()).then(|| value / spend)
}

fn f(value: Decimal) -> f64 {
    value.to_f64().unwrap_or_default()
}

/// Moves budget from the worst campaign (ROAS below 1) to the best (ROAS at or above target).
pub fn shift_budget(snapshot: &Snapshot) -> Option<Candidate> {
    let rated: Vec<(&CampaignStats, Decimal)> = snapshot
        .campaigns
        .iter()
        .filter_map(|campaign| {
            roas(campaign.spend, campaign.conversion_value).map(|roas| (campaign, roas))
        })
        .collect();
    let (worst, worst_roas) = rated.iter().min_by_key(|(_, roas)| *roas)?;
    let (best, best_roas) = rated.iter().max_by_key(|(_, roas)| *roas)?;
    if *worst_roas >= Decimal::ONE
        || *best_roas < TARGET_ROAS
        || worst.campaign_id == best.campaign_id
    {
        return None;
    }
    // Moving a quarter of the weak campaign's weekly spend at the strong one's ROAS instead.
    let moved = worst.spend / Decimal::from(2) / Decimal::from(4);
    let impact = (moved * (*best_roas - *worst_roas)).round_dp(2);
    Some(Candidate {
        kind: Kind::ShiftBudget,
        target: format!(
            "{}:{}->{}:{}",
            worst.platform, worst.campaign_id, best.platform, best.campaign_id
        ),
        explanation: format!(
            "Campaign {} returns {:.2} per unit spent while campaign {} returns {:.2}; moving about {} a week from the first to the second should add about {} in revenue.",
            worst.campaign_id,
            worst_roas,
            best.campaign_id,
            best_roas,
            moved.round_dp(2),
            impact
        ),
        expected_impact: impact,
        features: vec![f(*worst_roas), f(*best_roas), f(worst.spend), f(best.spend)],
    })
}

/// Pauses ads that spent at least [`WASTED_SPEND`] in a week without one conversion.
pub fn pause_ads(snapshot: &Snapshot) -> Vec<Candidate> {
    snapshot
        .ads
        .iter()
        .filter(|ad| ad.spend >= WASTED_SPEND && ad.conversions.is_zero())
        .map(|ad| Candidate {
            kind: Kind::PauseAd,
            target: format!("{}:{}", ad.platform, ad.ad_id),
            explanation: format!(
                "Ad {} spent {} in the last 7 days without a single conversion; pausing it saves that spend.",
                ad.ad_id,
                ad.spend.round_dp(2)
            ),
            expected_impact: ad.spend.round_dp(2),
            features: vec![f(ad.spend), 0.0],
        })
        .collect()
}

/// Raises the budget of campaigns at or above target ROAS on every day they spent (≥ 5 days).
pub fn raise_budgets(snapshot: &Snapshot) -> Vec<Candidate> {
    snapshot
        .campaigns
        .iter()
        .filter(|campaign| campaign.days_with_spend >= 5 && campaign.days_on_target == campaign.days_with_spend)
        .filter_map(|campaign| {
            let roas = roas(campaign.spend, campaign.conversion_value)?;
            // A fifth more budget at the same ROAS, per week.
            let extra = campaign.spend / Decimal::from(2) / Decimal::from(5);
            let impact = (extra * (roas - Decimal::ONE)).round_dp(2);
            Some(Candidate {
                kind: Kind::RaiseBudget,
                target: format!("{}:{}", campaign.platform, campaign.campaign_id),
                explanation: format!(
                    "Campaign {} has returned at least {} per unit spent on each of its last {} days (overall {:.2}); a fifth more budget should add about {} in profit a week.",
                    campaign.campaign_id, TARGET_ROAS, campaign.days_with_spend, roas, impact
                ),
                expected_impact: impact,
                features: vec![f(roas), f64::from(campaign.days_on_target), f(campaign.spend)],
            })
        })
        .collect()
}

/// Days with orders but no ad spend, or spend but no product events, point at broken
/// tracking rather than real behaviour.
pub fn tracking_gaps(snapshot: &Snapshot) -> Vec<Candidate> {
    let orders_without_spend = snapshot
        .days
        .iter()
        .filter(|day| day.orders > 0 && day.spend.is_zero())
        .count();
    let spend_without_events = snapshot
        .days
        .iter()
        .filter(|day| !day.spend.is_zero() && day.events == 0)
        .count();
    let mut candidates = Vec::new();
    if orders_without_spend >= 2 {
        candidates.push(Candidate {
            kind: Kind::TrackingGap,
            target: "orders_without_spend".into(),
            explanation: format!(
                "On {orders_without_spend} of the last 7 days orders came in while no ad spend was recorded; an ad account is probably disconnected, so ROAS is overstated."
            ),
            expected_impact: Decimal::ZERO,
            features: vec![orders_without_spend as f64, 0.0],
        });
    }
    if spend_without_events >= 2 {
        candidates.push(Candidate {
            kind: Kind::TrackingGap,
            target: "spend_without_events".into(),
            explanation: format!(
                "On {spend_without_events} of the last 7 days ads spent money while no product events arrived; the analytics snippet or SDK is probably broken."
            ),
            expected_impact: Decimal::ZERO,
            features: vec![0.0, spend_without_events as f64],
        });
    }
    candidates
}

/// MRR down by 10 % or more over 30 days.
pub fn churn_risk(snapshot: &Snapshot) -> Option<Candidate> {
    if snapshot.mrr_then.is_zero() || snapshot.mrr_now >= snapshot.mrr_then {
        return None;
    }
    let drop = (snapshot.mrr_then - snapshot.mrr_now) / snapshot.mrr_then;
    if drop < Decimal::new(10, 2) {
        return None;
    }
    Some(Candidate {
        kind: Kind::ChurnRisk,
        target: "mrr_30d".into(),
        explanation: format!(
            "Monthly recurring revenue fell {}% in 30 days (from {} to {}); reach out to recently cancelled and past-due customers.",
            (drop * Decimal::ONE_HUNDRED).round_dp(1),
            snapshot.mrr_then.round_dp(2),
            snapshot.mrr_now.round_dp(2)
        ),
        expected_impact: (snapshot.mrr_then - snapshot.mrr_now).round_dp(2),
        features: vec![f(drop), f(snapshot.mrr_now)],
    })
}

/// Every rule's candidates.
pub fn candidates(snapshot: &Snapshot) -> Vec<Candidate> {
    let mut all = Vec::new();
    all.extend(shift_budget(snapshot));
    all.extend(pause_ads(snapshot));
    all.extend(raise_budgets(snapshot));
    all.extend(tracking_gaps(snapshot));
    all.extend(churn_risk(snapshot));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(id: &str, spend: i64, value: i64, days: u32, on_target: u32) -> CampaignStats {
        CampaignStats {
            platform: "meta".into(),
            campaign_id: id.into(),
            spend: Decimal::from(spend),
            conversion_value: Decimal::from(value),
            days_with_spend: days,
            days_on_target: on_target,
        }
    }

    #[test]
    fn budget_moves_from_a_losing_campaign_to_a_winning_one() {
        let snapshot = Snapshot {
            campaigns: vec![
                campaign("weak", 800, 400, 14, 0),
                campaign("strong", 400, 1200, 14, 14),
            ],
            ..Snapshot::default()
        };
        let candidate = shift_budget(&snapshot).unwrap();
        assert_eq!(candidate.target, "meta:weak->meta:strong");
        // 800 / 2 / 4 = 100 a week moved, × (3.0 − 0.5) = 250.
        assert_eq!(candidate.expected_impact, Decimal::from(250));
        assert!(candidate.explanation.contains("0.50") && candidate.explanation.contains("3.00"));
        let fine = Snapshot {
            campaigns: vec![
                campaign("a", 100, 150, 14, 0),
                campaign("b", 100, 300, 14, 14),
            ],
            ..Snapshot::default()
        };
        assert_eq!(shift_budget(&fine), None, "no campaign below ROAS 1");
    }

    #[test]
    fn ads_spending_without_conversions_are_paused() {
        let ads = vec![
            AdStats {
                platform: "tiktok".into(),
                ad_id: "a1".into(),
                spend: Decimal::from(80),
                conversions: Decimal::ZERO,
            },
            AdStats {
                platform: "tiktok".into(),
                ad_id: "a2".into(),
                spend: Decimal::from(80),
                conversions: Decimal::ONE,
            },
            AdStats {
                platform: "tiktok".into(),
                ad_id: "a3".into(),
                spend: Decimal::from(20),
                conversions: Decimal::ZERO,
            },
        ];
        let candidates = pause_ads(&Snapshot {
            ads,
            ..Snapshot::default()
        });
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0].target, "tiktok:a1");
        assert_eq!(candidates[0].expected_impact, Decimal::from(80));
    }

    #[test]
    fn only_steadily_profitable_campaigns_get_more_budget() {
        let snapshot = Snapshot {
            campaigns: vec![
                campaign("steady", 1000, 3000, 7, 7),
                campaign("spiky", 1000, 3000, 7, 5),
                campaign("new", 100, 400, 3, 3),
            ],
            ..Snapshot::default()
        };
        let candidates = raise_budgets(&snapshot);
        assert_eq!(
            candidates
                .iter()
                .map(|c| c.target.as_str())
                .collect::<Vec<_>>(),
            ["meta:steady"]
        );
        // 1000 / 2 / 5 = 100 more a week, × (3 − 1) = 200.
        assert_eq!(candidates[0].expected_impact, Decimal::from(200));
    }

    #[test]
    fn tracking_gaps_need_two_days() {
        let day = |spend: i64, orders: i64, events: i64| DayStats {
            spend: Decimal::from(spend),
            orders,
            events,
        };
        let snapshot = Snapshot {
            days: vec![day(0, 3, 10), day(0, 2, 10), day(50, 1, 0), day(50, 1, 5)],
            ..Snapshot::default()
        };
        let targets: Vec<String> = tracking_gaps(&snapshot)
            .into_iter()
            .map(|c| c.target)
            .collect();
        assert_eq!(targets, ["orders_without_spend"]);
        let snapshot = Snapshot {
            days: vec![day(50, 1, 0), day(50, 1, 0)],
            ..Snapshot::default()
        };
        assert_eq!(tracking_gaps(&snapshot)[0].target, "spend_without_events");
    }

    #[test]
    fn churn_risk_from_a_falling_mrr() {
        let snapshot = Snapshot {
            mrr_then: Decimal::from(1000),
            mrr_now: Decimal::from(850),
            ..Snapshot::default()
        };
        let candidate = churn_risk(&snapshot).unwrap();
        assert_eq!(candidate.expected_impact, Decimal::from(150));
        assert!(candidate.explanation.contains("15.0%"));
        let steady = Snapshot {
            mrr_then: Decimal::from(1000),
            mrr_now: Decimal::from(950),
            ..Snapshot::default()
        };
        assert_eq!(churn_risk(&steady), None, "5 % is noise");
    }
}
