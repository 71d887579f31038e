//! The status agent: one place where a person sees whether the agents are coherent.
//!
//! * [`report`] gathers everything: the database and its migration version; every deployed
//!   agent's last run, success rates (24 h and 7 days), failures and last error, from the run
//!   log (`agent_runs`), with its queue's depth and dead letters; the blueprint's [`kpis`]
//!   against their thresholds; and 30 days of spend, revenue and ROAS for one workspace.
//! * `GET /status.json` answers it as JSON; `GET /status` as a server-rendered page
//!   ([`page`]: KPI tiles, tables, an inline SVG chart; no front-end build).
//! * Both need a credential ([`access`]); `POST /status/login` turns the token typed into the
//!   page's form into a signed, expiring session cookie (never the token itself), and slows
//!   repeated failures.
//! * `GET /status/workspace.json?workspace=…` is the members' view ([`workspace_view`]): one
//!   workspace's connections, freshness and chart, for its members' access tokens.
//!
//! Failures are part of the answer, not errors: a status page that fails when the database
//! is down would hide exactly what it exists to show.

pub mod access;
pub mod kpis;
pub mod page;
pub mod workspace_view;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use shared::agents::Agent;
use shared::db::{DbContext, Pool, migrations};
use shared::http::ApiError;
use shared::jwt::{JwtConfig, JwtVerifier};
use shared::lambda::Container;
use shared::queue::{QueueDepth, Transport, catalog};
use shared::settings::{Env, SettingsError};
use tokio_postgres::types::Type;
use uuid::Uuid;

use access::Access;
use kpis::{Kpi, State as KpiState};

/// Every deployed function that records runs (all but `status`, which only reads them).
pub fn deployed_agents() -> Vec<&'static str> {
    Agent::ALL
        .iter()
        .filter(|agent| agent.records_runs())
        .map(|agent| agent.name())
        .collect()
}

/// The `status` function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Opens the page and its JSON (`STATUS_TOKEN`).
    pub token: SecretString,
    /// Lets admins and members in with their access tokens, when `SUPABASE_URL` is set.
    pub jwt: Option<JwtConfig>,
    /// Origins whose browsers may read the member view (`CORS_ALLOWED_ORIGINS`).
    pub cors_origins: Vec<String>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            token: env.secret("STATUS_TOKEN")?,
            jwt: JwtConfig::optional_from_env(env)?,
            cors_origins: env.list("CORS_ALLOWED_ORIGINS"),
        })
    }

    /// The local stack's: the token it prints, and the Supabase CLI's local project.
    pub fn local() -> Self {
        Self {
            token: SecretString::from(LOCAL_TOKEN),
            jwt: Some(JwtConfig::local()),
            cors_origins: shared::http::local_app_origins(),
        }
    }
}

/// The local stack's status token.
pub const LOCAL_TOKEN: &str = "local-admin";

/// What the status routes read from.
pub struct StatusDeps {
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    pub access: Access,
    pub clock: shared::clock::Clock,
    pub cors_origins: Vec<String>,
}

impl StatusDeps {
    pub fn new(container: &Container, config: Config) -> Self {
        Self {
            pool: container.pool.clone(),
            transport: container.transport.clone(),
            access: Access::new(
                config.token.expose_secret().to_string(),
                config.jwt.as_ref().map(JwtVerifier::from_config),
            ),
            clock: container.clock.clone(),
            cors_origins: config.cors_origins,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// True when the database is reachable and migrated, every queue answered and no agent
    /// is failing: the system works.
    pub ok: bool,
    /// True when every KPI is green: the system works well enough.
    pub kpis_green: bool,
    pub generated_at: DateTime<Utc>,
    pub database: DatabaseStatus,
    pub agents: Vec<AgentStatus>,
    /// Why the agents are missing, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents_error: Option<String>,
    pub queues: Vec<QueueStatus>,
    /// Outbox rows waiting and set aside after repeated send failures (a set-aside row is a
    /// message not delivered until `ops redrive outbox`).
    pub outbox: Option<shared::queue::outbox::OutboxDepth>,
    /// Deliveries acknowledged but refused by the database in the last 7 days, per sender.
    pub quarantine: Vec<QuarantineStatus>,
    pub kpis: Vec<Kpi>,
    /// Why the KPIs are missing, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kpis_error: Option<String>,
    /// Delivery, open and click rates of the lifecycle emails, per campaign, 30 days.
    pub email_campaigns_30d: Option<Vec<email::stats::CampaignRates>>,
    pub chart: Option<Chart>,
}

#[derive(Debug, Serialize)]
pub struct DatabaseStatus {
    pub reachable: bool,
    pub migration_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct QueueStatus {
    pub name: &'static str,
    pub consumer: &'static str,
    #[serde(flatten)]
    pub depth: Option<QueueDepth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the quarantine holds from one sender.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineStatus {
    pub source: String,
    pub count_7d: i64,
    pub last_reason: String,
}

/// One agent, from its run log.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub name: String,
    /// `ok`, `failing` (failures above 5 % in 24 h, or dead letters), or `no_data` (no run
    /// in 7 days).
    pub state: KpiState,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_outcome: Option<String>,
    pub runs_24h: i64,
    pub failed_24h: i64,
    /// Refused inputs (bad signatures, malformed payloads): the callers' failures.
    pub rejected_24h: i64,
    /// ok / (ok + failed); refusals are not the agent's failures.
    pub success_rate_24h: Option<f64>,
    pub success_rate_7d: Option<f64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub dead_letters: Option<u64>,
}

/// 30 days of one workspace's money.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub workspace: Uuid,
    pub workspace_name: String,
    pub currency: String,
    pub days: Vec<ChartDay>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChartDay {
    pub date: NaiveDate,
    pub spend: f64,
    pub revenue: f64,
    pub roas: Option<f64>,
}

/// Gathers the report; `workspace` chooses the chart (default: the one with the latest
/// metrics).
pub async fn report(deps: &StatusDeps, workspace: Option<Uuid>) -> StatusReport {
    let database = match database_status(&deps.pool).await {
        Ok(version) => DatabaseStatus {
            reachable: true,
            migration_version: version,
            error: None,
        },
        Err(error) => DatabaseStatus {
            reachable: false,
            migration_version: None,
            error: Some(error),
        },
    };
    let mut queues = Vec::new();
    for queue in catalog::QUEUES {
        let (depth, error) = match deps.transport.depth(queue.name).await {
            Ok(depth) => (Some(depth), None),
            Err(error) => (None, Some(error.to_string())),
        };
        queues.push(QueueStatus {
            name: queue.name,
            consumer: queue.consumer.name(),
            depth,
            error,
        });
    }
    let migrated = database.migration_version.is_some();
    let (outbox, quarantine) = if migrated {
        let outbox = shared::queue::outbox::depth(&deps.pool).await.ok();
        let quarantine = shared::quarantine::summary(&deps.pool)
            .await
            .map(|rows| {
                rows.into_iter()
                    .map(|(source, count_7d, last_reason)| QuarantineStatus {
                        source,
                        count_7d,
                        last_reason,
                    })
                    .collect()
            })
            .unwrap_or_default();
        (outbox, quarantine)
    } else {
        (None, Vec::new())
    };
    let (agents, agents_error, kpis, kpis_error, email_campaigns_30d, chart) = if migrated {
        let (agents, agents_error) = match agent_statuses(&deps.pool, &queues).await {
            Ok(agents) => (agents, None),
            Err(error) => (Vec::new(), Some(error.to_string())),
        };
        let (kpis, kpis_error) = match kpis::kpis(&deps.pool).await {
            Ok(kpis) => (kpis, None),
            Err(error) => (Vec::new(), Some(error)),
        };
        let rates = email_rates(&deps.pool).await;
        let chart = chart(&deps.pool, workspace, &deps.clock)
            .await
            .ok()
            .flatten();
        (agents, agents_error, kpis, kpis_error, rates, chart)
    } else {
        (Vec::new(), None, Vec::new(), None, None, None)
    };
    let ok = database.reachable
        && migrated
        && queues.iter().all(|queue| queue.error.is_none())
        && agents_error.is_none()
        && agents.iter().all(|agent| agent.state != KpiState::Failing)
        && outbox.is_some_and(|outbox| outbox.dead == 0);
    let kpis_green = kpis_error.is_none()
        && !kpis.is_empty()
        && kpis.iter().all(|kpi| kpi.state == KpiState::Ok);
    StatusReport {
        ok,
        kpis_green,
        generated_at: deps.clock.now(),
        database,
        agents,
        agents_error,
        queues,
        outbox,
        quarantine,
        kpis,
        kpis_error,
        email_campaigns_30d,
        chart,
    }
}

async fn database_status(pool: &Pool) -> Result<Option<String>, String> {
    let client = pool.get().await.map_err(|error| error.to_string())?;
    migrations::current_version(&client)
        .await
        .map_err(|error| error.to_string())
}

async fn email_rates(pool: &Pool) -> Option<Vec<email::stats::CampaignRates>> {
    let client = pool.get().await.ok()?;
    email::stats::campaign_rates(&**client, 30).await.ok()
}

/// Every deployed agent (and any other that recorded runs), from the run log of 7 days.
async fn agent_statuses(
    pool: &Pool,
    queues: &[QueueStatus],
) -> Result<Vec<AgentStatus>, shared::db::DbError> {
    let client = pool.get().await.context("check out a connection")?;
    let rows = client
        .query_typed(
            "SELECT a.agent, max(r.started_at),
                    (array_agg(r.outcome ORDER BY r.started_at DESC))[1],
                    COALESCE(sum(r.runs) FILTER (WHERE r.started_at > now() - interval '24 hours'), 0)::int8,
                    COALESCE(sum(r.runs) FILTER (WHERE r.started_at > now() - interval '24 hours' AND r.outcome = 'ok'), 0)::int8,
                    COALESCE(sum(r.runs) FILTER (WHERE r.started_at > now() - interval '24 hours' AND r.outcome = 'failed'), 0)::int8,
                    COALESCE(sum(r.runs) FILTER (WHERE r.started_at > now() - interval '24 hours' AND r.outcome = 'rejected'), 0)::int8,
                    COALESCE(sum(r.runs) FILTER (WHERE r.outcome = 'ok'), 0)::int8,
                    COALESCE(sum(r.runs) FILTER (WHERE r.outcome = 'failed'), 0)::int8,
                    (array_agg(r.detail ORDER BY r.started_at DESC) FILTER (WHERE r.outcome = 'failed'))[1],
                    max(r.started_at) FILTER (WHERE r.outcome = 'failed')
               FROM (SELECT unnest($1::text[]) AS agent
                     UNION SELECT DISTINCT agent FROM agent_runs WHERE started_at > now() - interval '7 days') a
               LEFT JOIN agent_runs r ON r.agent = a.agent AND r.started_at > now() - interval '7 days'
              GROUP BY a.agent
              ORDER BY a.agent",
            &[(&deployed_agents(), Type::TEXT_ARRAY)],
        )
        .await
        .context("read the run log")?;
    let ratio = |ok: i64, failed: i64| (ok + failed > 0).then(|| ok as f64 / (ok + failed) as f64);
    Ok(rows
        .iter()
        .map(|row| {
            let name: String = row.get(0);
            let (ok_24h, failed_24h): (i64, i64) = (row.get(4), row.get(5));
            let success_rate_24h = ratio(ok_24h, failed_24h);
            let dead_letters = queues
                .iter()
                .find(|queue| queue.consumer == name)
                .and_then(|queue| queue.depth.map(|depth| depth.dead_letters));
            let last_run_at: Option<DateTime<Utc>> = row.get(1);
            let state = if dead_letters.unwrap_or(0) > 0
                || success_rate_24h.is_some_and(|rate| rate < 0.95)
            {
                KpiState::Failing
            } else if last_run_at.is_none() {
                KpiState::NoData
            } else {
                KpiState::Ok
            };
            AgentStatus {
                name,
                state,
                last_run_at,
                last_outcome: row.get(2),
                runs_24h: row.get(3),
                failed_24h,
                rejected_24h: row.get(6),
                success_rate_24h,
                success_rate_7d: ratio(row.get(7), row.get(8)),
                last_error: row.get(9),
                last_error_at: row.get(10),
                dead_letters,
            }
        })
        .collect())
}

/// The chart's 30 days for `workspace`, or for the workspace with the latest metrics, up to
/// today in the workspace's timezone.
async fn chart(
    pool: &Pool,
    workspace: Option<Uuid>,
    clock: &shared::clock::Clock,
) -> Result<Option<Chart>, shared::db::DbError> {
    let client = pool.get().await.context("check out a connection")?;
    let chosen = client
        .query_typed_opt(
            "SELECT w.id FROM workspaces w
              WHERE w.id = $1
                 OR ($1::uuid IS NULL AND w.id = (SELECT workspace_id FROM daily_metrics
                                                  ORDER BY date DESC, computed_at DESC LIMIT 1))",
            &[(&workspace, Type::UUID)],
        )
        .await
        .context("choose the chart's workspace")?;
    match chosen {
        Some(row) => chart_of(&**client, row.get(0), clock).await,
        None => Ok(None),
    }
}

/// The last 30 days of `workspace` (in its time zone), or `None` when there is no such
/// workspace.
pub(crate) async fn chart_of(
    client: &impl tokio_postgres::GenericClient,
    workspace: Uuid,
    clock: &shared::clock::Clock,
) -> Result<Option<Chart>, shared::db::DbError> {
    let Some(chosen) = client
        .query_typed_opt(
            "SELECT name, currency, timezone FROM workspaces WHERE id = $1",
            &[(&workspace, Type::UUID)],
        )
        .await
        .context("read the chart's workspace")?
    else {
        return Ok(None);
    };
    let today = clock.today_in_named(chosen.get(2));
    let days = client
        .query_typed(
            "SELECT d::date, COALESCE(m.spend, 0), COALESCE(m.revenue, 0), m.roas
               FROM generate_series($2::date - 29, $2::date, interval '1 day') AS d
               LEFT JOIN daily_metrics m ON m.workspace_id = $1 AND m.date = d::date
              ORDER BY d",
            &[(&workspace, Type::UUID), (&today, Type::DATE)],
        )
        .await
        .context("read the chart's days")?
        .iter()
        .map(|row| ChartDay {
            date: row.get(0),
            spend: row.get::<_, Decimal>(1).to_f64().unwrap_or_default(),
            revenue: row.get::<_, Decimal>(2).to_f64().unwrap_or_default(),
            roas: row
                .get::<_, Option<Decimal>>(3)
                .and_then(|roas| roas.to_f64()),
        })
        .collect();
    Ok(Some(Chart {
        workspace,
        workspace_name: chosen.get(0),
        currency: chosen.get(1),
        days,
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChartQuery {
    workspace: Option<String>,
}

/// The chosen workspace, or the reason it cannot be.
pub(crate) fn chosen_workspace(query: &ChartQuery) -> Result<Option<Uuid>, String> {
    match query.workspace.as_deref().filter(|text| !text.is_empty()) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("workspace {text:?} is not a UUID")),
    }
}

fn unauthorised_json() -> Response {
    (
        [(header::WWW_AUTHENTICATE, "Bearer")],
        ApiError::unauthorized("a status token or an admin's access token is required"),
    )
        .into_response()
}

async fn status_json(
    State(deps): State<Arc<StatusDeps>>,
    Query(query): Query<ChartQuery>,
    headers: HeaderMap,
) -> Response {
    if !deps.access.allows(&headers, deps.clock.now()).await {
        return unauthorised_json();
    }
    let workspace = match chosen_workspace(&query) {
        Ok(workspace) => workspace,
        Err(reason) => return ApiError::bad_request(reason).into_response(),
    };
    let report = report(&deps, workspace).await;
    let code = if report.database.reachable && report.database.migration_version.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report)).into_response()
}

async fn status_page(
    State(deps): State<Arc<StatusDeps>>,
    Query(query): Query<ChartQuery>,
    headers: HeaderMap,
) -> Response {
    if !deps.access.allows(&headers, deps.clock.now()).await {
        return (StatusCode::UNAUTHORIZED, Html(page::login(None))).into_response();
    }
    let workspace = match chosen_workspace(&query) {
        Ok(workspace) => workspace,
        Err(reason) => {
            return (StatusCode::BAD_REQUEST, Html(page::problem(&reason))).into_response();
        }
    };
    let report = report(&deps, workspace).await;
    match page::render(&report) {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "status page not rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(page::problem("the page could not be rendered")),
            )
                .into_response()
        }
    }
}

/// A pause before answering a wrong token: a guesser gets a few tries a second at most,
/// a person who mistyped does not notice.
const FAILED_LOGIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

async fn login(State(deps): State<Arc<StatusDeps>>, headers: HeaderMap, body: Bytes) -> Response {
    let client = access::client_of(&headers);
    if let Some(wait) = deps.access.throttle.refused(&client) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())],
            Html(page::login(Some(
                "Too many wrong tokens from here; try again later.",
            ))),
        )
            .into_response();
    }
    let token = form_urlencoded::parse(&body)
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    if !deps.access.is_token(&token) {
        deps.access.throttle.failed(&client);
        tokio::time::sleep(FAILED_LOGIN_PAUSE).await;
        return (
            StatusCode::UNAUTHORIZED,
            Html(page::login(Some("That token is not right."))),
        )
            .into_response();
    }
    deps.access.throttle.succeeded(&client);
    // Behind API Gateway the page is HTTPS and the cookie must never travel in clear;
    // locally it is plain HTTP on the loopback.
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes() == b"https");
    let cookie = format!(
        "{}={}; Path=/status; HttpOnly; SameSite=Strict; Max-Age={}{}",
        access::COOKIE,
        deps.access.new_session(deps.clock.now()),
        access::SESSION_TTL.as_secs(),
        if https { "; Secure" } else { "" }
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/status")).into_response()
}

/// The status agent's routes. It reads the run log but records nothing in it: a status page
/// polled every few seconds would drown the agents' own runs.
pub fn router(deps: Arc<StatusDeps>) -> Router {
    shared::http::edge(
        Router::new()
            .route("/status.json", get(status_json))
            .route("/status", get(status_page))
            .route("/status/login", post(login))
            .route(
                "/status/workspace.json",
                get(workspace_view::workspace_json).layer(shared::http::cors(&deps.cors_origins)),
            )
            .with_state(deps),
    )
}
