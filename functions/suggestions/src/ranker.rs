//! The learned ranker: P(accepted | kind, impact), retrained from the users' verdicts.
//!
//! [`encode`] turns a suggestion into features (one-hot kind, log impact). [`retrain`] fits a
//! logistic regression (linfa) on every verdict but the most recent fifth, scores that holdout
//! with the new model and with the current one (the promoted model, or the prior before any),
//! stores the new version in `models` with its log loss and AUC, and promotes it only when its
//! holdout log loss is lower. [`current`] is what new suggestions are scored with.

use chrono::{DateTime, Utc};
use linfa::Dataset;
use linfa::dataset::Pr;
use linfa::prelude::{BinaryClassification, Fit};
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use shared::db::{DbContext, Pool};
use tokio_postgres::types::Type;

use crate::rules::{Candidate, Kind};
use crate::{PRIOR_VERSION, SuggestionsError, prior_score};

/// Features per suggestion: one per kind, then log impact.
pub const FEATURES: usize = Kind::ALL.len() + 1;

/// Share of the verdicts, the most recent ones, kept out of training to judge the model.
const HOLDOUT_SHARE: f64 = 0.2;

pub fn encode(kind: Kind, expected_impact: Decimal) -> [f64; FEATURES] {
    let mut features = [0.0; FEATURES];
    features[Kind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()] = 1.0;
    features[FEATURES - 1] = (1.0 + expected_impact.to_f64().unwrap_or_default().max(0.0)).ln();
    features
}

/// A trained ranker, or the prior when none has been promoted.
#[derive(Debug, Clone, PartialEq)]
pub enum Ranker {
    Prior,
    Learned {
        version: String,
        intercept: f64,
        weights: Vec<f64>,
    },
}

impl Ranker {
    pub fn version(&self) -> &str {
        match self {
            Ranker::Prior => PRIOR_VERSION,
            Ranker::Learned { version, .. } => version,
        }
    }

    /// P(accepted) for a suggestion of this kind and impact.
    pub fn score(&self, kind: Kind, expected_impact: Decimal) -> f64 {
        match self {
            Ranker::Prior => prior_score(&Candidate {
                kind,
                target: String::new(),
                explanation: String::new(),
                expected_impact,
                features: Vec::new(),
            }),
            Ranker::Learned {
                intercept, weights, ..
            } => {
                let z: f64 = intercept
                    + encode(kind, expected_impact)
                        .iter()
                        .zip(weights)
                        .map(|(x, w)| x * w)
                        .sum::<f64>();
                1.0 / (1.0 + (-z).exp())
            }
        }
    }
}

/// The ranker new suggestions are scored with.
pub async fn current(pool: &Pool) -> Result<Ranker, SuggestionsError> {
    let client = pool.get().await.context("check out a connection")?;
    let row = client
        .query_typed_opt(
            "SELECT version, intercept, weights FROM models WHERE promoted ORDER BY trained_at DESC LIMIT 1",
            &[],
        )
        .await
        .context("read the promoted model")?;
    Ok(row.map_or(Ranker::Prior, |row| Ranker::Learned {
        version: row.get(0),
        intercept: row.get(1),
        weights: row.get(2),
    }))
}

/// What a retrain did.
#[derive(Debug, Clone, PartialEq)]
pub enum Retrained {
    /// Not enough verdicts of both kinds (accepted and not) on both sides of the split.
    NotEnoughFeedback { verdicts: usize },
    Evaluated {
        version: String,
        log_loss: f64,
        auc: f64,
        baseline_version: String,
        baseline_log_loss: f64,
        promoted: bool,
    },
}

struct Verdict {
    kind: Kind,
    impact: Decimal,
    accepted: bool,
}

fn log_loss(ranker: &Ranker, verdicts: &[Verdict]) -> f64 {
    let probabilities: Array1<Pr> = verdicts
        .iter()
        .map(|v| Pr::new(ranker.score(v.kind, v.impact).clamp(1e-6, 1.0 - 1e-6) as f32))
        .collect();
    let truth: Vec<bool> = verdicts.iter().map(|v| v.accepted).collect();
    probabilities
        .log_loss(truth.as_slice())
        .map_or(f64::INFINITY, f64::from)
}

fn auc(ranker: &Ranker, verdicts: &[Verdict]) -> f64 {
    let probabilities: Array1<Pr> = verdicts
        .iter()
        .map(|v| Pr::new(ranker.score(v.kind, v.impact) as f32))
        .collect();
    let truth: Vec<bool> = verdicts.iter().map(|v| v.accepted).collect();
    probabilities
        .roc(truth.as_slice())
        .map_or(f64::NAN, |roc| f64::from(roc.area_under_curve()))
}

fn both_outcomes(verdicts: &[Verdict]) -> bool {
    verdicts.iter().any(|v| v.accepted) && verdicts.iter().any(|v| !v.accepted)
}

/// Fits a new version on all verdicts up to `now`, evaluates it, stores it, and promotes it
/// if it beats the current ranker on the holdout.
pub async fn retrain(pool: &Pool, now: DateTime<Utc>) -> Result<Retrained, SuggestionsError> {
    let baseline = current(pool).await?;
    let client = pool.get().await.context("check out a connection")?;
    let verdicts: Vec<Verdict> = client
        .query_typed(
            "SELECT s.kind, s.expected_impact, f.verdict = 'accepted'
               FROM suggestion_feedback f JOIN suggestions s ON s.id = f.suggestion_id
              WHERE f.created_at <= $1
              ORDER BY f.created_at, f.suggestion_id, f.user_id",
            &[(&now, Type::TIMESTAMPTZ)],
        )
        .await
        .context("read verdicts")?
        .iter()
        .filter_map(|row| {
            Some(Verdict {
                kind: Kind::parse(row.get(0))?,
                impact: row.get(1),
                accepted: row.get(2),
            })
        })
        .collect();
    let holdout_size = ((verdicts.len() as f64) * HOLDOUT_SHARE).ceil() as usize;
    let (training, holdout) = verdicts.split_at(verdicts.len() - holdout_size);
    if !both_outcomes(training) || !both_outcomes(holdout) {
        return Ok(Retrained::NotEnoughFeedback {
            verdicts: verdicts.len(),
        });
    }
    let records = Array2::from_shape_vec(
        (training.len(), FEATURES),
        training
            .iter()
            .flat_map(|v| encode(v.kind, v.impact))
            .collect(),
    )
    .expect("FEATURES values per verdict");
    let targets: Array1<bool> = training.iter().map(|v| v.accepted).collect();
    let fitted = match LogisticRegression::default()
        .alpha(0.1)
        .max_iterations(200)
        .fit(&Dataset::new(records, targets))
    {
        Ok(fitted) => fitted,
        Err(error) => {
            tracing::warn!(%error, "the ranker did not converge; keeping the current one");
            return Ok(Retrained::NotEnoughFeedback {
                verdicts: verdicts.len(),
            });
        }
    };
    let version = format!("logistic-{}", now.format("%Y%m%dT%H%M%S%.3fZ"));
    // linfa models P(the more frequent class); flip the sign when that is "rejected" so the
    // stored model always gives P(accepted).
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let intercept = sign * fitted.intercept();
    let weights: Vec<f64> = fitted.params().iter().map(|w| sign * w).collect();
    let candidate = Ranker::Learned {
        version: version.clone(),
        intercept,
        weights: weights.clone(),
    };
    let (log_loss_new, auc_new) = (log_loss(&candidate, holdout), auc(&candidate, holdout));
    let baseline_log_loss = log_loss(&baseline, holdout);
    let promoted = log_loss_new < baseline_log_loss;
    client
        .execute_typed(
            "INSERT INTO models (version, intercept, weights, trained_on, holdout_size, log_loss, auc,
                                 baseline_version, baseline_log_loss, promoted, trained_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (version) DO NOTHING",
            &[
                (&version, Type::TEXT),
                (&intercept, Type::FLOAT8),
                (&weights, Type::FLOAT8_ARRAY),
                (&(training.len() as i32), Type::INT4),
                (&(holdout.len() as i32), Type::INT4),
                (&log_loss_new, Type::FLOAT8),
                (&auc_new, Type::FLOAT8),
                (&baseline.version(), Type::TEXT),
                (&baseline_log_loss, Type::FLOAT8),
                (&promoted, Type::BOOL),
                (&now, Type::TIMESTAMPTZ),
            ],
        )
        .await
        .context("store the model")?;
    Ok(Retrained::Evaluated {
        version,
        log_loss: log_loss_new,
        auc: auc_new,
        baseline_version: baseline.version().to_owned(),
        baseline_log_loss,
        promoted,
    })
}
