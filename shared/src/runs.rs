//! The agents' run log: one row in `agent_runs` per handled request, queue message or
//! schedule tick, with its outcome. The status page reads it (last run, success rates,
//! errors per agent; the webhook success KPI), and inside Lambda each run is also printed as
//! a CloudWatch embedded-metric-format line, from which the template's alarms (ETL success,
//! webhook failure rate) are computed without any extra API call.
//!
//! Recording never fails the work it describes: a run log that cannot be written is logged
//! and dropped.
//!
//! Refused requests (4xx: a bad signature, an unknown token) are not written one row each: an
//! attacker's flood must not become our write load. They are counted in memory and written as
//! one row carrying the count (`runs`), at the next run that is written anyway or at most
//! [`REFUSALS_FLUSH`] after the first of them, whichever comes first.
//!
//! * HTTP: [`RunLog::layer`] wraps an agent's router; 2xx/3xx is ok, 4xx rejected, 5xx failed.
//! * Queues and schedules: [`RunLog::observe`] wraps one handler call.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_postgres::types::Type;

use crate::agents::Agent;
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

/// The longest refused runs wait in memory before their row is written.
pub const REFUSALS_FLUSH: Duration = Duration::from_secs(5);

/// Refused runs not yet written, per trigger.
#[derive(Debug, Default)]
struct Refusals {
    pending: Vec<PendingRefusals>,
}

#[derive(Debug)]
struct PendingRefusals {
    trigger: Trigger,
    first_at: DateTime<Utc>,
    first_seen: Instant,
    count: i32,
    total_ms: i64,
    last_detail: Option<String>,
}

/// Where one agent's runs are recorded.
#[derive(Clone)]
pub struct RunLog {
    pool: Pool,
    agent: &'static str,
    /// The namespace to print embedded-metric lines in; `None` outside Lambda.
    metrics: Option<String>,
    /// Shared by every clone of this log (one per router or consumer).
    refusals: Arc<Mutex<Refusals>>,
}

impl RunLog {
    pub fn new(pool: Pool, agent: Agent) -> Self {
        let log = Self {
            pool,
            agent: agent.name(),
            metrics: std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").map(|_| {
                std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| METRIC_NAMESPACE.into())
            }),
            refusals: Arc::default(),
        };
        log.flush_in_background();
        log
    }

    /// Writes waiting refusals every [`REFUSALS_FLUSH`] until the last clone of this log is
    /// dropped. Outside a runtime (a synchronous test) the next written run flushes them.
    fn flush_in_background(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (pool, agent) = (self.pool.clone(), self.agent);
        let refusals: Weak<Mutex<Refusals>> = Arc::downgrade(&self.refusals);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(REFUSALS_FLUSH);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(refusals) = refusals.upgrade() else {
                    return;
                };
                let due = take_refusals(&refusals, Some(REFUSALS_FLUSH));
                drop(refusals);
                if !due.is_empty() {
                    write_rows(&pool, agent, &due).await;
                }
            }
        });
    }

    /// Writes every waiting refusal now (tests, and before a process exits).
    pub async fn flush(&self) {
        let due = take_refusals(&self.refusals, None);
        if !due.is_empty() {
            write_rows(&self.pool, self.agent, &due).await;
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
        let detail = detail.map(|text| crate::redact::credentials(&text));
        if outcome == Outcome::Rejected {
            let due = {
                let mut refusals = self
                    .refusals
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                refusals.add(trigger, started_at, duration_ms, detail);
                refusals.take(Some(REFUSALS_FLUSH))
            };
            if !due.is_empty() {
                write_rows(&self.pool, self.agent, &due).await;
            }
            return;
        }
        // A run written anyway carries the refusals waiting since the last one.
        let mut rows = take_refusals(&self.refusals, None);
        rows.push(Row {
            trigger,
            started_at,
            duration_ms,
            outcome,
            detail,
            runs: 1,
        });
        write_rows(&self.pool, self.agent, &rows).await;
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
    /// [edge](crate::http::edge) that turns a panic into a 500 and an overrun into a
    /// 503 — so those are recorded as the failures they are.
    pub fn layer(self, router: axum::Router) -> axum::Router {
        crate::http::edge(router).layer(axum::middleware::from_fn_with_state(self, record_request))
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

/// One `agent_runs` row: a run, or `runs` refusals.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    trigger: Trigger,
    started_at: DateTime<Utc>,
    duration_ms: i32,
    outcome: Outcome,
    detail: Option<String>,
    runs: i32,
}

impl Refusals {
    fn add(
        &mut self,
        trigger: Trigger,
        started_at: DateTime<Utc>,
        duration_ms: i32,
        detail: Option<String>,
    ) {
        match self.pending.iter_mut().find(|p| p.trigger == trigger) {
            Some(pending) => {
                pending.count = pending.count.saturating_add(1);
                pending.total_ms = pending.total_ms.saturating_add(i64::from(duration_ms));
                pending.last_detail = detail;
            }
            None => self.pending.push(PendingRefusals {
                trigger,
                first_at: started_at,
                first_seen: Instant::now(),
                count: 1,
                total_ms: i64::from(duration_ms),
                last_detail: detail,
            }),
        }
    }

    /// Takes the refusals older than `age` (all of them when `None`) as rows.
    fn take(&mut self, age: Option<Duration>) -> Vec<Row> {
        let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| age.is_none_or(|age| p.first_seen.elapsed() >= age));
        self.pending = kept;
        due.into_iter()
            .map(|p| Row {
                trigger: p.trigger,
                started_at: p.first_at,
                duration_ms: i32::try_from(p.total_ms / i64::from(p.count.max(1)))
                    .unwrap_or(i32::MAX),
                outcome: Outcome::Rejected,
                detail: p.last_detail.map(|detail| match p.count {
                    1 => detail,
                    n => format!("{detail} (the last of {n})"),
                }),
                runs: p.count,
            })
            .collect()
    }
}

fn take_refusals(refusals: &Mutex<Refusals>, age: Option<Duration>) -> Vec<Row> {
    refusals
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take(age)
}

async fn write_rows(pool: &Pool, agent: &str, rows: &[Row]) {
    let column = |field: fn(&Row) -> String| rows.iter().map(field).collect::<Vec<_>>();
    let triggers = column(|row| row.trigger.as_str().to_string());
    let outcomes = column(|row| row.outcome.as_str().to_string());
    let started: Vec<DateTime<Utc>> = rows.iter().map(|row| row.started_at).collect();
    let durations: Vec<i32> = rows.iter().map(|row| row.duration_ms.max(0)).collect();
    let details: Vec<Option<String>> = rows
        .iter()
        .map(|row| {
            row.detail.as_deref().map(|detail| {
                crate::text::without_nul(crate::text::clip(detail, 2_000)).into_owned()
            })
        })
        .collect();
    let runs: Vec<i32> = rows.iter().map(|row| row.runs).collect();
    let written = async {
        let client = pool.get().await.map_err(|error| error.to_string())?;
        client
            .execute_typed(
                // Committed asynchronously (for this one statement's transaction): a crash may
                // lose the last runs' rows, never the work they describe, and the request does
                // not wait for a second WAL flush.
                "WITH async AS (SELECT set_config('synchronous_commit', 'off', true))
                 INSERT INTO agent_runs (agent, trigger, started_at, duration_ms, outcome, detail, runs)
                 SELECT $1, r.* FROM async,
                        unnest($2::text[], $3::timestamptz[], $4::int4[], $5::text[], $6::text[], $7::int4[])
                        AS r(trigger, started_at, duration_ms, outcome, detail, runs)",
                &[
                    (&agent, Type::TEXT),
                    (&triggers, Type::TEXT_ARRAY),
                    (&started, Type::TIMESTAMPTZ_ARRAY),
                    (&durations, Type::INT4_ARRAY),
                    (&outcomes, Type::TEXT_ARRAY),
                    (&details, Type::TEXT_ARRAY),
                    (&runs, Type::INT4_ARRAY),
                ],
            )
            .await
            .map_err(|error| error.to_string())
    }
    .await;
    if let Err(error) = written {
        tracing::warn!(agent, %error, "runs not recorded");
    }
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
    fn refusals_are_counted_into_one_row_per_trigger() {
        let started: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        let mut refusals = Refusals::default();
        for detail in ["POST /a → 401", "POST /b → 400", "POST /c → 413"] {
            refusals.add(Trigger::Http, started, 4, Some(detail.into()));
        }
        refusals.add(Trigger::Queue, started, 10, None);
        assert!(
            refusals.take(Some(Duration::from_secs(60))).is_empty(),
            "younger than the flush age: kept"
        );
        let rows = refusals.take(None);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            Row {
                trigger: Trigger::Http,
                started_at: started,
                duration_ms: 4,
                outcome: Outcome::Rejected,
                detail: Some("POST /c → 413 (the last of 3)".into()),
                runs: 3,
            }
        );
        assert_eq!((rows[1].trigger, rows[1].runs), (Trigger::Queue, 1));
        assert!(refusals.take(None).is_empty(), "taken once");
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
