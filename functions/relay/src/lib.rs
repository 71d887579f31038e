//! The outbox relay, fired every minute by the `outbox-relay` schedule.
//!
//! Handlers dispatch their outbox rows right after commit; this catches the rows whose
//! dispatch never happened (the process died, the transport was down). Rows younger than
//! [`GRACE`] are left alone so the relay does not race a dispatch in progress — a race would
//! be harmless (deduplication ids), only wasteful. When the transport is the Postgres queue,
//! it also forgets expired deduplication ids; and it keeps the agents' run log to
//! [`RUN_LOG_DAYS`] days.

use std::sync::Arc;
use std::time::Duration;

use shared::agents::Agent;
use shared::entry::OnTick;
use shared::lambda::Container;
use shared::lambda::schedule::Tick;
use shared::queue::QueueError;
use shared::queue::outbox::Outbox;
use shared::queue::postgres::PostgresTransport;
use shared::runs::RunLog;
use shared::settings::QueueSettings;

/// How old an outbox row must be before the relay sends it.
pub const GRACE: Duration = Duration::from_secs(30);
/// Days of `agent_runs` kept: the status page looks back 7 days, the KPIs 30.
pub const RUN_LOG_DAYS: i32 = 30;
/// Rows sent per round; rounds repeat until a short one.
const ROUND: i64 = 500;

pub struct RelayDeps {
    pub pool: shared::db::Pool,
    pub outbox: Outbox,
    /// Present when the queue is the Postgres one, whose dedup table needs pruning.
    pub postgres_queue: Option<PostgresTransport>,
    pub grace: Duration,
}

impl RelayDeps {
    /// The relay has no settings of its own; it prunes the Postgres queue's deduplication
    /// ids when the container's queue is the Postgres one.
    pub fn new(container: &Container) -> Self {
        Self {
            pool: container.pool.clone(),
            outbox: Outbox::new(container.pool.clone(), container.transport.clone()),
            postgres_queue: matches!(container.queue, QueueSettings::Postgres)
                .then(|| PostgresTransport::new(container.pool.clone())),
            grace: GRACE,
        }
    }
}

/// The `outbox-relay` schedule, recorded in the run log.
pub fn on_tick(deps: Arc<RelayDeps>) -> OnTick {
    let runs = RunLog::new(deps.pool.clone(), Agent::Relay);
    OnTick::new(runs, move |_: Tick| {
        let deps = deps.clone();
        async move { run(&deps).await }
    })
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub relayed: usize,
    pub dedup_ids_purged: u64,
    pub runs_pruned: u64,
}

/// One relay pass. A send failure is reported after the housekeeping is done, so a queue
/// that is down does not also stop the pruning.
pub async fn run(deps: &RelayDeps) -> Result<RelayReport, QueueError> {
    let mut report = RelayReport::default();
    let mut failure = None;
    loop {
        match deps.outbox.relay(deps.grace, ROUND).await {
            Ok(sent) => {
                report.relayed += sent;
                if sent < ROUND as usize {
                    break;
                }
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    if let Some(queue) = &deps.postgres_queue {
        report.dedup_ids_purged = queue.purge_expired_dedup_ids().await?;
    }
    report.runs_pruned = shared::runs::RunLog::prune(&deps.pool, RUN_LOG_DAYS).await?;
    if report.relayed > 0 {
        tracing::warn!(
            relayed = report.relayed,
            "outbox rows sent by the relay, not by their writer"
        );
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(report),
    }
}
