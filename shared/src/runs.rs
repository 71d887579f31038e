//! The agents' run log: one row in `agent_runs` per handled request, queue message or
//! schedule tick, with its outcome. The status page reads it (last run, success rates,
//! errors per agent; the webhook success KPI), and inside Lambda each run is also printed as
//! a CloudWatch embedded-metric-format line, from which the template's alarms (ETL success,
//! webhook failure rate) are computed without any extra API call.
//!
//! Recording never fails the work it describes: a run log that cannot be written is logged
//! and dropped.
//!
//! * HTTP: [`RunLog::layer`] wraps an agent's router; 2xx/3xx is ok, 4xx rejected, 5xx failed.
//! * Queues and schedules: [`RunLog::observe`] wraps one handler call.

use std::future::Future;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_postgres::types::Type;

use crate::db::Pool;

/// What woke the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Http,
    Queue,
    Schedule,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Queue => "queue",
            Trigger::Schedule => "schedule",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The caller's input was refused.
    Rejected,
    /// Our failure.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }

    /// An HTTP answer's outcome.
    pub fn of_status(status: http::StatusCode) -> Self {
        if status.is_server_error() {
            Outcome::Failed
        } else if status.is_client_error() {
            Outcome::Rejected
        } else {
            Outcome::Ok
        }
    }
}

/// Namespace of the embedded metrics unless `METRICS_NAMESPACE` names one (the template
/// sets it to the stack's name, so two stacks in one account keep apart).
pub const METRIC_NAMESPACE: &str = "GrowthAgents";

/// Where one agent's runs are recorded.
#[derive(Clone)]
pub struct RunLog {
    pool: Pool,
    agent: &'static str,
    /// The namespace to print embedded-metric lines in; `None` outside Lambda.
    metrics: Option<String>,
}

impl RunLog {
    pub fn new(pool: Pool, agent: &'static str) -> Self {
        Self {
            pool,
            agent,
            metrics: std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").map(|_| {
                std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| METRIC_NAMESPACE.into())
            }),
        }
    }

    /// Records one run.
    pub async fn record(
        &self,
        trigger: Trigger,
        started_at: DateTime<Utc>,
        duration_ms: i32,
        outcome: Outcome,
        detail: Option<String>,
    ) {
        if let Some(namespace) = &self.metrics {
            println!(
                "{}",
                metric_line(
                    namespace,
                    self.agent,
                    trigger,
                    started_at,
                    duration_ms,
                    outcome
                )
            );
        }
        let written = async {
            let client = self.pool.get().await.map_err(|error| error.to_string())?;
            client
                .execute_typed(
                    // Committed asynchronously (for this one statement's transaction): a
                    // crash may lose the last runs' rows, never the work they describe, and
                    // the request does not wait for a second WAL flush.
                    "WITH async AS (SELECT set_config('synchronous_commit', 'off', true))
                     INSERT INTO agent_runs (agent, trigger, started_at, duration_ms, outcome, detail)
                     SELECT $1, $2, $3, $4, $5, $6 FROM async",
                    &[
                        (&self.agent, Type::TEXT),
                        (&trigger.as_str(), Type::TEXT),
                        (&started_at, Type::TIMESTAMPTZ),
                        (&duration_ms, Type::INT4),
                        (&outcome.as_str(), Type::TEXT),
                        (&detail, Type::TEXT),
                    ],
                )
                .await
                .map_err(|error| error.to_string())
        }
        .await;
        if let Err(error) = written {
            tracing::warn!(agent = self.agent, %error, "run not recorded");
        }
    }

    /// Runs `work` and records it: `Ok` is ok, `Err` failed (with the error as detail).
    pub async fn observe<T, E, Fut>(&self, trigger: Trigger, work: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        self.observe_judged(trigger, work, |_| (Outcome::Ok, None))
            .await
    }

    /// [`Self::observe`] for work whose `Ok` value can still report a failure (an ETL run
    /// that recorded its own failure and must not be retried by the queue): `judge` says
    /// what it was.
    pub async fn observe_judged<T, E, Fut>(
        &self,
        trigger: Trigger,
        work: Fut,
        judge: impl FnOnce(&T) -> (Outcome, Option<String>),
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let (started_at, clock) = (Utc::now(), Instant::now());
        let result = work.await;
        let (outcome, detail) = match &result {
            Ok(value) => judge(value),
            Err(error) => (Outcome::Failed, Some(error.to_string())),
        };
        self.record(trigger, started_at, elapsed_ms(clock), outcome, detail)
            .await;
        result
    }

    /// Deletes runs older than `days`; returns how many went.
    pub async fn prune(pool: &Pool, days: i32) -> Result<u64, crate::db::DbError> {
        use crate::db::DbContext;
        let client = pool.get().await.context("check out a connection")?;
        client
            .execute_typed(
                "DELETE FROM agent_runs WHERE started_at < now() - make_interval(days => $1)",
                &[(&days, Type::INT4)],
            )
            .await
            .context("prune agent runs")
    }

    /// Wraps an agent's router so each request is recorded, inside the
    /// [edge](crate::lambda::http::edge) that turns a panic into a 500 and an overrun into a
    /// 503 — so those are recorded as the failures they are.
    pub fn layer(self, router: axum::Router) -> axum::Router {
        crate::lambda::http::edge(router)
            .layer(axum::middleware::from_fn_with_state(self, record_request))
    }
}

/// A CloudWatch embedded-metric-format line for one run: counts of ok, rejected and failed
/// runs and the duration, by agent.
pub fn metric_line(
    namespace: &str,
    agent: &str,
    trigger: Trigger,
    started_at: DateTime<Utc>,
    duration_ms: i32,
    outcome: Outcome,
) -> String {
    let count = |wanted: Outcome| i32::from(outcome == wanted);
    json!({
        "_aws": {
            "Timestamp": started_at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Agent"], ["Agent", "Trigger"]],
                "Metrics": [
                    {"Name": "RunsSucceeded", "Unit": "Count"},
                    {"Name": "RunsRejected", "Unit": "Count"},
                    {"Name": "RunsFailed", "Unit": "Count"},
                    {"Name": "RunDuration", "Unit": "Milliseconds"}
                ]
            }]
        },
        "Agent": agent,
        "Trigger": trigger.as_str(),
        "RunsSucceeded": count(Outcome::Ok),
        "RunsRejected": count(Outcome::Rejected),
        "RunsFailed": count(Outcome::Failed),
        "RunDuration": duration_ms,
    })
    .to_string()
}

fn elapsed_ms(clock: Instant) -> i32 {
    i32::try_from(clock.elapsed().as_millis()).unwrap_or(i32::MAX)
}

async fn record_request(State(log): State<RunLog>, request: Request, next: Next) -> Response {
    let (started_at, clock) = (Utc::now(), Instant::now());
    let route = format!("{} {}", request.method(), request.uri().path());
    let response = next.run(request).await;
    let outcome = Outcome::of_status(response.status());
    let detail = (outcome != Outcome::Ok).then(|| format!("{route} → {}", response.status()));
    log.record(
        Trigger::Http,
        started_at,
        elapsed_ms(clock),
        outcome,
        detail,
    )
    .await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_metric_lines_count_the_outcome() {
        let started: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        let text = metric_line(
            METRIC_NAMESPACE,
            "etl",
            Trigger::Queue,
            started,
            42,
            Outcome::Failed,
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            METRIC_NAMESPACE
        );
        assert_eq!(value["_aws"]["Timestamp"], 1_796_119_200_000_i64);
        assert_eq!(value["Agent"], "etl");
        assert_eq!(value["Trigger"], "queue");
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Agent"], ["Agent", "Trigger"]])
        );
        assert_eq!(
            (
                &value["RunsSucceeded"],
                &value["RunsFailed"],
                &value["RunDuration"]
            ),
            (&json!(0), &json!(1), &json!(42))
        );
    }

    #[test]
    fn http_statuses_map_to_outcomes() {
        assert_eq!(Outcome::of_status(http::StatusCode::OK), Outcome::Ok);
        assert_eq!(
            Outcome::of_status(http::StatusCode::BAD_REQUEST),
            Outcome::Rejected
        );
        assert_eq!(
            Outcome::of_status(http::StatusCode::SERVICE_UNAVAILABLE),
            Outcome::Failed
        );
    }
}
