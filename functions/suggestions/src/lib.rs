//! The suggestions agent: candidates from the numbers, ranked by a model learned from feedback.
//!
//! On a `SuggestionsRefresh` from `suggestions.fifo` (the metrics agent sends one after each
//! recompute), [`refresh`] reads a snapshot of the workspace's last weeks ([`load`]), runs the
//! candidate [`rules`], scores each candidate, and stores the new ones as open suggestions. A
//! suggestion already open for the same (kind, target) is not shown twice: the partial unique
//! index `suggestions_one_open` keeps one.
//!
//! Scoring: the [`ranker`] — the latest promoted logistic model from `models`, retrained from
//! the verdicts, or before any, the documented prior [`prior_score`] (a per-kind prior
//! acceptance rate, nudged up by the expected weekly impact). Each suggestion records the
//! model version that scored it. The feedback [`api`] records verdicts and [`adoption`]
//! measures accepted / shown.

pub mod api;

pub use shared::adoption;
pub mod ranker;
pub mod rules;

use std::sync::Arc;

use chrono::Duration;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use shared::agents::Agent;
use shared::clock::Clock;
use shared::db::{DbContext, DbError, Pool};
use shared::entry::{Consumer, OnTick};
use shared::lambda::Container;
use shared::lambda::schedule::Tick;
use shared::messages::SuggestionsRefresh;
use shared::runs::RunLog;
use tokio_postgres::types::Type;
use uuid::Uuid;

use rules::{AdStats, CampaignStats, Candidate, DayStats, Kind, Snapshot};

/// The version recorded with suggestions scored by the prior.
pub const PRIOR_VERSION: &str = "prior-v1";

/// Prior acceptance by kind, from what marketers usually act on: fixing broken tracking and
/// stopping waste first, reallocations next, churn outreach last.
fn prior(kind: Kind) -> f64 {
    match kind {
        Kind::TrackingGap => 0.55,
        Kind::PauseAd => 0.5,
        Kind::ShiftBudget => 0.4,
        Kind::RaiseBudget => 0.35,
        Kind::ChurnRisk => 0.3,
    }
}

/// The cold-start score: the kind's prior, raised by up to 0.2 for a large weekly impact
/// (log-scaled, so one big number does not drown the kinds).
pub fn prior_score(candidate: &Candidate) -> f64 {
    let impact = candidate
        .expected_impact
        .to_f64()
        .unwrap_or_default()
        .max(0.0);
    (prior(candidate.kind) + 0.2 * ((1.0 + impact).ln() / (1.0 + 10_000f64).ln()).min(1.0)).min(1.0)
}

#[derive(Debug, thiserror::Error)]
pub enum SuggestionsError {
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Reads what the rules look at for one workspace.
/// `clock` says what today is, in the workspace's own timezone.
pub async fn load(
    pool: &Pool,
    workspace: Uuid,
    clock: &Clock,
) -> Result<Snapshot, SuggestionsError> {
    let client = pool.get().await.context("check out a connection")?;
    let timezone: String = client
        .query_typed_opt(
            "SELECT timezone FROM workspaces WHERE id = $1",
            &[(&workspace, Type::UUID)],
        )
        .await
        .context("read the workspace's timezone")?
        .map_or_else(|| "UTC".to_string(), |row| row.get(0));
    let today = clock.today_in_named(&timezone);
    let (two_weeks, week, month) = (
        today - Duration::days(13),
        today - Duration::days(6),
        today - Duration::days(30),
    );
    let campaigns = client
        .query_typed(
            "SELECT platform, campaign_id, sum(spend), sum(COALESCE(conversion_value, 0)),
                    count(DISTINCT date) FILTER (WHERE spend > 0)::int4,
                    count(*) FILTER (WHERE spend > 0 AND day_value >= day_spend * 2)::int4
               FROM (SELECT platform, campaign_id, date, sum(spend) AS spend, sum(conversion_value) AS conversion_value,
                            sum(spend) AS day_spend, sum(COALESCE(conversion_value, 0)) AS day_value
                       FROM ad_insights WHERE workspace_id = $1 AND date BETWEEN $2 AND $3 AND campaign_id IS NOT NULL
                      GROUP BY platform, campaign_id, date) daily
              GROUP BY platform, campaign_id",
            &[(&workspace, Type::UUID), (&two_weeks, Type::DATE), (&today, Type::DATE)],
        )
        .await
        .context("read campaigns")?
        .iter()
        .map(|row| CampaignStats {
            platform: row.get(0),
            campaign_id: row.get(1),
            spend: row.get(2),
            conversion_value: row.get(3),
            days_with_spend: row.get::<_, i32>(4) as u32,
            days_on_target: row.get::<_, i32>(5) as u32,
        })
        .collect();
    let ads = client
        .query_typed(
            "SELECT platform, level_id, sum(spend), sum(COALESCE(conversions, 0))
               FROM ad_insights WHERE workspace_id = $1 AND date BETWEEN $2 AND $3
              GROUP BY platform, level_id",
            &[
                (&workspace, Type::UUID),
                (&week, Type::DATE),
                (&today, Type::DATE),
            ],
        )
        .await
        .context("read ads")?
        .iter()
        .map(|row| AdStats {
            platform: row.get(0),
            ad_id: row.get(1),
            spend: row.get(2),
            conversions: row.get(3),
        })
        .collect();
    let days = client
        .query_typed(
            "SELECT spend, orders, events FROM daily_metrics WHERE workspace_id = $1 AND date BETWEEN $2 AND $3 ORDER BY date",
            &[(&workspace, Type::UUID), (&week, Type::DATE), (&today, Type::DATE)],
        )
        .await
        .context("read days")?
        .iter()
        .map(|row| DayStats { spend: row.get(0), orders: row.get(1), events: row.get(2) })
        .collect();
    let client = &client;
    let mrr = |date| async move {
        let row = client
            .query_typed_opt(
                "SELECT mrr FROM daily_metrics WHERE workspace_id = $1 AND date <= $2 ORDER BY date DESC LIMIT 1",
                &[(&workspace, Type::UUID), (&date, Type::DATE)],
            )
            .await
            .context("read MRR")?;
        Ok::<Decimal, SuggestionsError>(row.map(|row| row.get(0)).unwrap_or_default())
    };
    let mrr_then = mrr(month).await?;
    let mrr_now = mrr(today).await?;
    Ok(Snapshot {
        campaigns,
        ads,
        days,
        mrr_then,
        mrr_now,
    })
}

/// Share of refreshes that surface one candidate picked at random, whatever its score, so the
/// ranker keeps hearing about kinds it ranks low.
pub const EXPLORATION_SHARE: f64 = 0.1;

/// The low 62 bits of a v4 uuid: the variant takes the top two of its low half.
const RANDOM_LOW_BITS: u64 = u64::MAX >> 2;

/// Which of `count` candidates to explore, if any, for a random v4 uuid `draw`.
///
/// A v4 uuid fixes six bits (version and variant), so the coin comes from the random low 62
/// bits and the index from the random top 48.
pub fn pick_exploration(count: usize, draw: Uuid) -> Option<usize> {
    let bits = draw.as_u128();
    let coin = (bits as u64 & RANDOM_LOW_BITS) as f64 / RANDOM_LOW_BITS as f64;
    (count > 1 && coin < EXPLORATION_SHARE).then(|| (bits >> 80) as usize % count)
}

/// Makes `candidates` the workspace's open suggestions; returns how many were new.
///
/// An open suggestion the rules no longer produce is stale advice (the ad was paused, the
/// tracking was fixed), so it becomes `expired` in the same transaction that stores the rest.
/// New ones are scored by `ranker`, whose version is stored beside the score; the candidate
/// at index `explored`, if any, is marked to be shown first.
pub async fn store(
    pool: &Pool,
    workspace: Uuid,
    candidates: &[Candidate],
    ranker: &ranker::Ranker,
    explored: Option<usize>,
) -> Result<u64, SuggestionsError> {
    let kinds: Vec<&str> = candidates.iter().map(|c| c.kind.as_str()).collect();
    let targets: Vec<&str> = candidates.iter().map(|c| c.target.as_str()).collect();
    let explanations: Vec<&str> = candidates.iter().map(|c| c.explanation.as_str()).collect();
    let impacts: Vec<Decimal> = candidates.iter().map(|c| c.expected_impact).collect();
    let features: Vec<serde_json::Value> = candidates
        .iter()
        .map(|c| serde_json::json!(c.features))
        .collect();
    let scores: Vec<f64> = candidates
        .iter()
        .map(|c| ranker.score(c.kind, c.expected_impact))
        .collect();
    let explored: Vec<bool> = (0..candidates.len()).map(|i| Some(i) == explored).collect();
    let mut client = pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, shared::db::Budget::BACKGROUND).await?;
    let expired = transaction
        .execute_typed(
            "UPDATE suggestions SET status = 'expired', updated_at = now()
              WHERE workspace_id = $1 AND status = 'open'
                AND (kind, target) NOT IN (SELECT * FROM unnest($2::text[], $3::text[]))",
            &[
                (&workspace, Type::UUID),
                (&kinds, Type::TEXT_ARRAY),
                (&targets, Type::TEXT_ARRAY),
            ],
        )
        .await
        .context("expire stale suggestions")?;
    let stored = transaction
        .execute_typed(
            "INSERT INTO suggestions (workspace_id, kind, target, explanation, expected_impact, features, score, explored, model_version)
             SELECT $1, * , $9 FROM unnest($2::text[], $3::text[], $4::text[], $5::numeric[], $6::jsonb[], $7::float8[], $8::bool[])
             ON CONFLICT (workspace_id, kind, target) WHERE status = 'open' DO NOTHING",
            &[
                (&workspace, Type::UUID),
                (&kinds, Type::TEXT_ARRAY),
                (&targets, Type::TEXT_ARRAY),
                (&explanations, Type::TEXT_ARRAY),
                (&impacts, Type::NUMERIC_ARRAY),
                (&features, Type::JSONB_ARRAY),
                (&scores, Type::FLOAT8_ARRAY),
                (&explored, Type::BOOL_ARRAY),
                (&ranker.version(), Type::TEXT),
            ],
        )
        .await
        .context("store suggestions")?;
    transaction.commit().await.context("commit suggestions")?;
    tracing::info!(%workspace, stored, expired, "suggestions refreshed");
    Ok(stored)
}

/// Handles one `suggestions.fifo` message; returns how many suggestions were new.
pub async fn refresh(
    pool: &Pool,
    request: &SuggestionsRefresh,
    clock: &Clock,
) -> Result<u64, SuggestionsError> {
    let snapshot = load(pool, request.workspace_id, clock).await?;
    let ranker = ranker::current(pool).await?;
    let candidates = rules::candidates(&snapshot);
    let explored = pick_exploration(candidates.len(), Uuid::new_v4());
    store(pool, request.workspace_id, &candidates, &ranker, explored).await
}

/// What the refresh consumer and the nightly retrain read and write: no settings of their own.
pub struct SuggestionsDeps {
    pub pool: Pool,
    pub clock: Clock,
}

impl SuggestionsDeps {
    pub fn new(container: &Container) -> Self {
        Self {
            pool: container.pool.clone(),
            clock: container.clock.clone(),
        }
    }
}

/// The `suggestions.fifo` consumer, recorded in the run log.
pub fn consumer(deps: Arc<SuggestionsDeps>) -> Consumer<SuggestionsRefresh> {
    let runs = RunLog::new(deps.pool.clone(), Agent::Suggestions);
    Consumer::new(runs, move |request: SuggestionsRefresh| {
        let deps = deps.clone();
        async move { refresh(&deps.pool, &request, &deps.clock).await }
    })
}

/// The `suggestions-retrain` schedule: fit on the verdicts so far, promote only if better on
/// the holdout; recorded in the run log.
pub fn on_tick(deps: Arc<SuggestionsDeps>) -> OnTick {
    let runs = RunLog::new(deps.pool.clone(), Agent::SuggestionsRetrain);
    OnTick::new(runs, move |tick: Tick| {
        let deps = deps.clone();
        async move { ranker::retrain(&deps.pool, tick.at).await }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(kind: Kind, impact: i64) -> Candidate {
        Candidate {
            kind,
            target: "t".into(),
            explanation: String::new(),
            expected_impact: Decimal::from(impact),
            features: vec![],
        }
    }

    #[test]
    fn exploration_takes_its_share_and_any_index() {
        let explore = |coin: u64, index: u64| {
            pick_exploration(
                5,
                Uuid::from_u128((u128::from(index) << 80) | u128::from(coin)),
            )
        };
        assert_eq!(explore(0, 7), Some(2));
        assert_eq!(explore(RANDOM_LOW_BITS / 20, 4), Some(4), "5 % explore");
        assert_eq!(explore(RANDOM_LOW_BITS / 5, 4), None, "20 % do not");
        assert_eq!(
            pick_exploration(1, Uuid::nil()),
            None,
            "nothing to explore among one"
        );
    }

    #[test]
    fn real_v4_uuids_explore_about_a_tenth_of_the_time_over_every_index() {
        let mut picked = [0usize; 5];
        let draws = 20_000;
        for _ in 0..draws {
            if let Some(index) = pick_exploration(5, Uuid::new_v4()) {
                picked[index] += 1;
            }
        }
        let share = picked.iter().sum::<usize>() as f64 / draws as f64;
        // Ten standard deviations either side: a real failure, never chance.
        assert!((0.08..0.12).contains(&share), "{share}");
        assert!(picked.iter().all(|&n| n > 200), "{picked:?}");
    }

    #[test]
    fn the_prior_orders_by_kind_then_impact() {
        assert!(
            prior_score(&candidate(Kind::TrackingGap, 0))
                > prior_score(&candidate(Kind::ChurnRisk, 0))
        );
        assert!(
            prior_score(&candidate(Kind::ShiftBudget, 5000))
                > prior_score(&candidate(Kind::ShiftBudget, 10))
        );
        assert!(prior_score(&candidate(Kind::PauseAd, 1_000_000)) <= 1.0);
    }
}
