//! Adoption: of the suggestions users were shown, how many they accepted (the KPI is > 30 %).
//! A read across agents: the suggestions API answers it per workspace, the status page's KPI
//! overall, so it lives here rather than in the suggestions agent (whose model the status
//! page has no use for).
//!
//! Two sources agree on it. The frontend sends `suggestion_shown` and `suggestion_accepted`
//! through PostHog with the product's own project token — so they land in the product's
//! workspace (`workspaces.is_product`), keyed by member, never in a tenant's counts — with
//! the suggestion's id in `properties.suggestion_id`; the feedback API records verdicts. A verdict implies the suggestion was shown, and an `accepted` verdict
//! counts as acceptance, so adoption stays right when either source is missing an event.
//! Events naming an unknown or malformed id are ignored rather than failing the report.

use crate::db::{DbContext, DbError};
use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;
use uuid::Uuid;

/// Shown and accepted suggestions of one kind (or of all kinds, as `"all"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adoption {
    pub kind: String,
    pub shown: i64,
    pub accepted: i64,
    /// `accepted / shown`, or `None` before anything was shown.
    pub rate: Option<f64>,
}

/// Adoption per kind, then overall as kind `"all"`, for one workspace (`None`: every
/// workspace, for the status page's KPI).
///
/// It runs on the caller's connection: a status page that already holds one must not need
/// a second (a Lambda's pool may have one only).
pub async fn adoption(
    client: &impl GenericClient,
    workspace: Option<Uuid>,
) -> Result<Vec<Adoption>, DbError> {
    let rows = client
        .query_typed(
            "WITH tracked AS (
                 -- CASE, not WHERE: the planner may evaluate a cast before a sibling filter.
                 SELECT event,
                        CASE WHEN properties->>'suggestion_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                             THEN (properties->>'suggestion_id')::uuid END AS suggestion_id
                   FROM events
                  WHERE workspace_id = (SELECT w.id FROM workspaces w WHERE w.is_product)
                    AND event IN ('suggestion_shown', 'suggestion_accepted')
             ), judged AS (
                 SELECT s.id, s.kind,
                        EXISTS (SELECT 1 FROM tracked t WHERE t.suggestion_id = s.id)
                          OR EXISTS (SELECT 1 FROM suggestion_feedback f WHERE f.suggestion_id = s.id) AS shown,
                        EXISTS (SELECT 1 FROM tracked t WHERE t.suggestion_id = s.id AND t.event = 'suggestion_accepted')
                          OR EXISTS (SELECT 1 FROM suggestion_feedback f WHERE f.suggestion_id = s.id AND f.verdict = 'accepted') AS accepted
                   FROM suggestions s
                  WHERE $1::uuid IS NULL OR s.workspace_id = $1
             )
             SELECT COALESCE(kind, 'all'), count(*) FILTER (WHERE shown), count(*) FILTER (WHERE shown AND accepted)
               FROM judged
              GROUP BY ROLLUP (kind)
              ORDER BY kind IS NULL, kind",
            &[(&workspace, Type::UUID)],
        )
        .await
        .context("compute adoption")?;
    Ok(rows
        .iter()
        .map(|row| {
            let (shown, accepted): (i64, i64) = (row.get(1), row.get(2));
            Adoption {
                kind: row.get(0),
                shown,
                accepted,
                rate: (shown > 0).then(|| accepted as f64 / shown as f64),
            }
        })
        .collect())
}
