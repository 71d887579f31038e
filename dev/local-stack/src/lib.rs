//! The local stack: the whole system in one process, for development, demos and end-to-end
//! tests.
//!
//! * HTTP: every agent's axum router merged on one port, under the same paths as API Gateway.
//! * Schedules: the definitions of [`shared::schedule`] fired in-process, calling the same
//!   handlers the Lambdas call.
//! * Queues: the Postgres transport, with a consumer per queue whose agent is hosted here.
//! * Database: `DATABASE_URL` if given, else a private throwaway cluster
//!   ([`throwaway_postgres`]); migrations are applied at start either way.
//! * Email: sent to a folder ([`email::provider::Mailbox`]) instead of Resend.
//! * Runs: every request, message and tick is recorded in the run log, as in Lambda, so the
//!   status page reads the same.
//! * Demo mode ([`demo`]): the [`standins`] on the same port and a driver playing the
//!   platforms against the real routes until every agent and KPI is green.
//!
//! [`start`] returns once the port is bound and migrations are applied; [`LocalStack::stop`]
//! shuts everything down gracefully (the binary calls it on Ctrl-C).

pub mod demo;
pub mod throwaway_postgres;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use shared::db::{Pool, migrations};
use shared::lambda::schedule::Tick;
use shared::queue::outbox::Outbox;
use shared::queue::postgres::PostgresTransport;
use shared::queue::{Transport, catalog};
use shared::runs::{RunLog, Trigger};
use shared::schedule::{SCHEDULES, Schedule};
use shared::settings::DatabaseSettings;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use throwaway_postgres::ThrowawayPostgres;

/// The agents this process hosts.
pub const AGENTS: &[&str] = &[
    "status",
    "relay",
    "billing",
    "analytics",
    "etl",
    "metrics",
    "suggestions",
    "suggestions-retrain",
    "email",
    "email-sweep",
];

/// The Stripe endpoint secret when `STRIPE_WEBHOOK_SECRET` is not set, printed at start so a
/// newcomer can sign test events (e.g. `stripe listen --forward-to`, or the demo generator).
pub const DEFAULT_STRIPE_WEBHOOK_SECRET: &str = "whsec_local";

/// Tokens of the workspace the local stack creates when the database has none, so an SDK
/// can be pointed at it at once.
pub const LOCAL_POSTHOG_TOKEN: &str = "phc_local";
pub const LOCAL_MIXPANEL_TOKEN: &str = "mp_local";
pub const LOCAL_POSTHOG_WEBHOOK_SECRET: &str = "local-posthog-secret";
/// The Mixpanel project's API secret, for `/import` (the Basic-auth user name).
pub const LOCAL_MIXPANEL_API_SECRET: &str = "local-mixpanel-secret";
/// The Shopify webhook secret when `SHOPIFY_WEBHOOK_SECRET` is not set.
pub const DEFAULT_SHOPIFY_WEBHOOK_SECRET: &str = "shopify-local-secret";
/// The `GET /metrics` bearer token when `METRICS_API_TOKEN` is not set.
pub const DEFAULT_METRICS_API_TOKEN: &str = "local-admin";
/// The status page's token when `STATUS_TOKEN` is not set.
pub const DEFAULT_STATUS_TOKEN: &str = "local-admin";
/// The JWT secret when `SUPABASE_JWT_SECRET` is not set (Supabase's local CLI default).
pub const DEFAULT_JWT_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";
/// The Supabase URL when `SUPABASE_URL` is not set (the Supabase CLI's local API).
pub const DEFAULT_SUPABASE_URL: &str = "http://127.0.0.1:54321";
/// The Resend webhook secret when `RESEND_WEBHOOK_SECRET` is not set (`whsec_` + base64).
pub const DEFAULT_RESEND_WEBHOOK_SECRET: &str = "whsec_bG9jYWwtcmVzZW5kLXNlY3JldA==";
/// The unsubscribe-link secret when `EMAIL_UNSUBSCRIBE_SECRET` is not set.
pub const DEFAULT_UNSUBSCRIBE_SECRET: &str = "local-unsubscribe-secret";
/// The key-encryption key when `ENCRYPTION_KEYS` is not set: it seals the platform tokens
/// and hashes the ingestion secrets of local data only.
pub const DEFAULT_ENCRYPTION_KEYS: &str = "local:bG9jYWwtZW5jcnlwdGlvbi1rZXktMzItYnl0ZXMhISE=";
/// Who local emails are from.
pub const LOCAL_EMAIL_FROM: &str = "Growth Agents <hello@growth-agents.local>";

#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Use this database instead of starting a throwaway cluster.
    pub database_url: Option<String>,
    /// Stripe endpoint secrets the billing route accepts.
    pub stripe_webhook_secrets: Vec<String>,
    /// Shopify app secrets the order webhook route accepts.
    pub shopify_webhook_secrets: Vec<String>,
    /// The bearer token of `GET /metrics`.
    pub metrics_api_token: String,
    /// The secret users' JWTs are signed with (Supabase's JWT secret).
    pub jwt_secret: String,
    /// The Supabase project's URL; access tokens must be issued by `{supabase_url}/auth/v1`.
    pub supabase_url: String,
    /// The token that opens `/status` and `/status.json`.
    pub status_token: String,
    pub email: EmailOptions,
    /// Seed demo data at start (see [`demo`]).
    pub demo: bool,
    /// What every agent of the stack takes for now (tests shift it to the hour they examine).
    pub clock: shared::clock::Clock,
    /// Key-encryption keys in the `ENCRYPTION_KEYS` format (`id:base64`, first seals).
    pub encryption_keys: String,
}

/// The email agent, locally: emails land as JSON files in a folder instead of Resend.
#[derive(Debug, Clone)]
pub struct EmailOptions {
    pub mailbox_dir: std::path::PathBuf,
    pub unsubscribe_secret: String,
    pub resend_webhook_secrets: Vec<String>,
    pub campaigns: email::campaigns::Rules,
}

impl Default for EmailOptions {
    fn default() -> Self {
        Self {
            mailbox_dir: std::env::temp_dir().join("growth-agents-mailbox"),
            unsubscribe_secret: DEFAULT_UNSUBSCRIBE_SECRET.into(),
            resend_webhook_secrets: vec![DEFAULT_RESEND_WEBHOOK_SECRET.into()],
            campaigns: email::campaigns::Rules::default(),
        }
    }
}

impl Default for Options {
    /// The local defaults: port 8080, a throwaway database, the printed local secrets.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            stripe_webhook_secrets: vec![DEFAULT_STRIPE_WEBHOOK_SECRET.into()],
            shopify_webhook_secrets: vec![DEFAULT_SHOPIFY_WEBHOOK_SECRET.into()],
            metrics_api_token: DEFAULT_METRICS_API_TOKEN.into(),
            jwt_secret: DEFAULT_JWT_SECRET.into(),
            supabase_url: DEFAULT_SUPABASE_URL.into(),
            status_token: DEFAULT_STATUS_TOKEN.into(),
            email: EmailOptions::default(),
            demo: false,
            clock: shared::clock::Clock::system(),
            encryption_keys: DEFAULT_ENCRYPTION_KEYS.into(),
        }
    }
}

/// Where the stack keeps its data, for the start-up banner.
#[derive(Debug, Clone)]
pub enum DataLocation {
    Throwaway { directory: std::path::PathBuf },
    External { host: String },
}

impl std::fmt::Display for DataLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataLocation::Throwaway { directory } => {
                write!(
                    f,
                    "throwaway PostgreSQL cluster in {} (deleted on exit)",
                    directory.display()
                )
            }
            DataLocation::External { host } => write!(f, "DATABASE_URL ({host})"),
        }
    }
}

/// A running local stack.
pub struct LocalStack {
    pub addr: SocketAddr,
    pub data: DataLocation,
    pub pool: Pool,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    postgres: Option<ThrowawayPostgres>,
}

impl LocalStack {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the HTTP server, schedules and consumers, then the throwaway cluster.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.pool.close();
        if let Some(postgres) = self.postgres.take() {
            postgres.stop().await;
        }
    }
}

/// Starts everything and returns once the stack is serving.
pub async fn start(options: Options) -> anyhow::Result<LocalStack> {
    let (postgres, database_url, data) = match &options.database_url {
        Some(url) => (
            None,
            url.clone(),
            DataLocation::External {
                host: describe_url(url),
            },
        ),
        None => {
            let postgres = ThrowawayPostgres::start()
                .await
                .context("start a throwaway PostgreSQL cluster")?;
            let url = postgres.url();
            let data = DataLocation::Throwaway {
                directory: postgres.directory().to_path_buf(),
            };
            (Some(postgres), url, data)
        }
    };
    // In AWS every agent is its own Lambda with its own connection; here each HTTP agent gets
    // its own small pool for the same reason: requests of one agent stuck behind a lock must
    // not take the connections another agent needs. Pools connect lazily, so idle ones cost
    // nothing. `pool` serves the consumers, schedules and queue.
    let pool_of = |size: usize| {
        shared::db::connect(&DatabaseSettings {
            url: SecretString::from(database_url.clone()),
            pool_size: size,
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
        })
    };
    let pool = pool_of(8)?;
    {
        let mut client = pool.get().await.context("connect to the database")?;
        migrations::apply(&mut client)
            .await
            .context("apply migrations")?;
    }

    let keys = Arc::new(
        shared::crypto::Keys::parse(&options.encryption_keys)
            .map_err(|reason| anyhow::anyhow!("ENCRYPTION_KEYS: {reason}"))?,
    );
    // Secrets among these are stored as keyed hashes under `keys`.
    analytics::ensure_default_workspace(
        &pool,
        &keys,
        "Local workspace",
        &[
            (LOCAL_POSTHOG_TOKEN, analytics::TokenKind::PosthogProject),
            (LOCAL_MIXPANEL_TOKEN, analytics::TokenKind::MixpanelProject),
            (
                LOCAL_POSTHOG_WEBHOOK_SECRET,
                analytics::TokenKind::PosthogWebhookSecret,
            ),
            (
                LOCAL_MIXPANEL_API_SECRET,
                analytics::TokenKind::MixpanelApiSecret,
            ),
        ],
    )
    .await
    .context("create the default workspace")?;
    let transport: Arc<dyn Transport> = Arc::new(PostgresTransport::new(pool.clone()));
    let clock = options.clock.clone();
    let status = Arc::new(status::StatusDeps {
        pool: pool_of(2)?,
        transport: transport.clone(),
        access: status::access::Access::new(
            options.status_token.clone(),
            Some(shared::jwt::JwtVerifier::new(
                options.jwt_secret.as_bytes(),
                &options.supabase_url,
            )),
        ),
        clock: clock.clone(),
    });
    let relay = Arc::new(relay::RelayDeps {
        pool: pool.clone(),
        outbox: Outbox::new(pool.clone(), transport.clone()),
        postgres_queue: Some(PostgresTransport::new(pool.clone())),
        grace: relay::GRACE,
    });
    let billing = Arc::new(billing::BillingDeps {
        pool: pool_of(4)?,
        transport: transport.clone(),
        clock: clock.clone(),
        webhook_secrets: options.stripe_webhook_secrets.clone(),
    });
    let analytics = Arc::new(analytics::AnalyticsDeps {
        pool: pool_of(4)?,
        transport: transport.clone(),
        clock: clock.clone(),
        keys: keys.clone(),
    });
    // Bound before the routes are built: the emails' unsubscribe links and, in demo mode,
    // the stand-ins' absolute URLs point at this address.
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("bind {}", options.listen))?;
    let addr = listener.local_addr()?;
    let origin = format!("http://{addr}");
    let standin_config = standins::StandinConfig {
        clock: clock.clone(),
        ..standins::StandinConfig::default()
    };
    let standins = options
        .demo
        .then(|| standins::router(&standin_config, &origin));
    let endpoints = match &standins {
        Some(_) => etl::Endpoints {
            meta_base_url: format!("{origin}/meta"),
            tiktok_base_url: format!("{origin}/tiktok"),
            shopify_base_url: format!("{origin}/shopify"),
        },
        None => etl::Endpoints::from_lookup(|name| std::env::var(name).ok()),
    };
    let meta_app_secret = match &standins {
        Some(_) => standin_config.meta.app_secret.clone().map(Into::into),
        None => etl::meta_app_secret(|name| std::env::var(name).ok()),
    };
    let shopify_webhooks = Arc::new(etl::WebhookDeps {
        pool: pool_of(2)?,
        transport: transport.clone(),
        clock: clock.clone(),
        keys: keys.clone(),
        webhook_secrets: options.shopify_webhook_secrets.clone(),
        http: etl::http_client(etl::shopify::webhook::REREAD_TIMEOUT)?,
        endpoints: endpoints.clone(),
    });
    let etl = Arc::new(etl::EtlDeps {
        pool: pool.clone(),
        transport: transport.clone(),
        clock: clock.clone(),
        keys: keys.clone(),
        http: etl::http_client(Duration::from_secs(60))?,
        endpoints,
        retry: shared::retry::RetryPolicy::default(),
        meta_app_secret,
    });
    let signer =
        email::unsubscribe::TokenSigner::new(vec![options.email.unsubscribe_secret.clone()]);
    let sender = Arc::new(email::send::SenderDeps {
        pool: pool.clone(),
        provider: Arc::new(email::provider::Mailbox::new(&options.email.mailbox_dir)),
        composer: email::send::Composer {
            templates: email::templates::Templates::new(),
            signer: signer.clone(),
            from: LOCAL_EMAIL_FROM.into(),
            product: email::DEFAULT_PRODUCT_NAME.into(),
            public_base_url: format!("http://{addr}"),
            app_url: format!("http://{addr}/status.json"),
        },
        retry: shared::retry::RetryPolicy::default(),
        claim_ttl: email::CLAIM_TTL,
        clock: clock.clone(),
    });
    let email_api_pool = pool_of(2)?;
    let email_api = Arc::new(email::api::ApiDeps {
        pool: email_api_pool.clone(),
        outbox: Outbox::new(email_api_pool, transport.clone()),
        signer,
        webhook_secrets: options.email.resend_webhook_secrets.clone(),
        product: email::DEFAULT_PRODUCT_NAME.into(),
        clock: clock.clone(),
    });
    let router = status::router(status)
        .merge(billing::router(billing))
        .merge(analytics::router(analytics))
        .merge(etl::router(shopify_webhooks))
        .merge(metrics::router(Arc::new(metrics::ApiDeps {
            pool: pool_of(2)?,
            token: options.metrics_api_token.clone(),
        })))
        .merge(suggestions::api::router(Arc::new(
            suggestions::api::ApiDeps {
                pool: pool_of(2)?,
                jwt: shared::jwt::JwtVerifier::new(
                    options.jwt_secret.as_bytes(),
                    &options.supabase_url,
                ),
                clock: clock.clone(),
            },
        )))
        .merge(email::api::router(email_api));
    let router = match &standins {
        Some((routes, _)) => router.merge(routes.clone()),
        None => router,
    };

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let stop_http = shutdown.clone();
    tasks.spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(stop_http.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "HTTP server failed");
        }
    });

    let campaigns = Arc::new(options.email.campaigns.clone());
    let hosted = Hosted {
        relay: relay.clone(),
        etl: etl.clone(),
        pool: pool.clone(),
        transport: transport.clone(),
        campaigns: campaigns.clone(),
    };
    for schedule in SCHEDULES {
        let cadence = schedule.cadence()?;
        let handler = schedule_handler(schedule, &hosted)?;
        let runs = RunLog::new(pool.clone(), schedule.target);
        let (stop, clock) = (shutdown.clone(), clock.clone());
        tasks.spawn(async move {
            let mut next = cadence.next_after(clock.now());
            while let Some(at) = next {
                let wait = (at - clock.now()).to_std().unwrap_or_default();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                match runs
                    .observe(Trigger::Schedule, handler(Tick { schedule, at }))
                    .await
                {
                    Ok(done) => tracing::debug!(schedule = schedule.name, done, "schedule ran"),
                    Err(error) => {
                        tracing::error!(schedule = schedule.name, error, "schedule failed")
                    }
                }
                next = cadence.next_after(clock.now());
            }
        });
    }

    {
        let (transport, etl, stop) = (transport.clone(), etl.clone(), shutdown.clone());
        let runs = RunLog::new(pool.clone(), "etl");
        tasks.spawn(async move {
            let execute = |run: etl::EtlRun| {
                let (etl, runs) = (etl.clone(), runs.clone());
                async move {
                    runs.observe_judged(
                        Trigger::Queue,
                        etl::run(&etl, &run, "local-stack"),
                        etl::RunReport::judged,
                    )
                    .await
                    .map(|_| ())
                }
            };
            shared::queue::consumer::poll(transport.as_ref(), &catalog::ETL, execute, stop).await;
        });
    }

    {
        let deps = Arc::new(metrics::MetricsDeps {
            pool: pool.clone(),
            transport: transport.clone(),
            clock: clock.clone(),
        });
        let (transport, stop) = (transport.clone(), shutdown.clone());
        let runs = RunLog::new(pool.clone(), "metrics");
        tasks.spawn(async move {
            let recompute = |request: shared::messages::MetricsRecompute| {
                let (deps, runs) = (deps.clone(), runs.clone());
                async move {
                    runs.observe(Trigger::Queue, metrics::handle(&deps, &request))
                        .await
                        .map(|_| ())
                }
            };
            shared::queue::consumer::poll(transport.as_ref(), &catalog::METRICS, recompute, stop)
                .await;
        });
    }

    {
        let (pool, transport, stop) = (pool.clone(), transport.clone(), shutdown.clone());
        let runs = RunLog::new(pool.clone(), "suggestions");
        let clock = clock.clone();
        tasks.spawn(async move {
            let refresh = |request: shared::messages::SuggestionsRefresh| {
                let (pool, runs, clock) = (pool.clone(), runs.clone(), clock.clone());
                async move {
                    runs.observe(
                        Trigger::Queue,
                        suggestions::refresh(&pool, &request, &clock),
                    )
                    .await
                    .map(|_| ())
                }
            };
            shared::queue::consumer::poll(transport.as_ref(), &catalog::SUGGESTIONS, refresh, stop)
                .await;
        });
    }

    {
        let (sender, transport, stop) = (sender.clone(), transport.clone(), shutdown.clone());
        let runs = RunLog::new(pool.clone(), "email");
        tasks.spawn(async move {
            let send = |message: email::send::EmailQueueMessage| {
                let (sender, runs) = (sender.clone(), runs.clone());
                async move {
                    runs.observe(Trigger::Queue, email::send::handle(&sender, message))
                        .await
                }
            };
            shared::queue::consumer::poll(transport.as_ref(), &catalog::EMAIL, send, stop).await;
        });
    }

    if let Some((_, handles)) = standins {
        let outbox = Outbox::new(pool.clone(), transport.clone());
        let seeded = demo::seed(&pool, &outbox, &options.email.campaigns, &keys, clock.now())
            .await
            .context("seed the demo")?;
        tracing::info!(?seeded, "demo data seeded");
        let first = |secrets: &[String], what: &str| {
            secrets
                .first()
                .cloned()
                .with_context(|| format!("demo mode needs a {what} secret"))
        };
        let driver = demo::Demo {
            origin: origin.clone(),
            pool: pool.clone(),
            transport: transport.clone(),
            etl: etl.clone(),
            relay: relay.clone(),
            campaigns: campaigns.clone(),
            standins: handles,
            workspace: seeded.workspace,
            stripe_secret: first(&options.stripe_webhook_secrets, "Stripe")?,
            shopify_secret: first(&options.shopify_webhook_secrets, "Shopify")?,
            resend_secret: first(&options.email.resend_webhook_secrets, "Resend")?,
            metrics_token: options.metrics_api_token.clone(),
            jwt_secret: options.jwt_secret.clone(),
            jwt_issuer: shared::jwt::issuer_for(&options.supabase_url),
            clock: clock.clone(),
        };
        tasks.spawn(demo::drive(driver, shutdown.clone()));
    }

    for queue in catalog::QUEUES {
        if !AGENTS.contains(&queue.consumer) {
            tracing::info!(
                queue = queue.name,
                consumer = queue.consumer,
                "no local consumer: agent not built yet"
            );
        }
    }

    Ok(LocalStack {
        addr,
        data,
        pool,
        shutdown,
        tasks,
        postgres,
    })
}

/// One schedule's work: a summary for the log, or the error.
type ScheduleHandler = Box<
    dyn Fn(
            Tick,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>
        + Send
        + Sync,
>;

/// What the schedules call into.
struct Hosted {
    relay: Arc<relay::RelayDeps>,
    etl: Arc<etl::EtlDeps>,
    pool: Pool,
    transport: Arc<dyn Transport>,
    campaigns: Arc<email::campaigns::Rules>,
}

/// Turns a handler's result into the summary the schedule loop logs and records.
fn summary<T: std::fmt::Debug, E: std::fmt::Display>(
    result: Result<T, E>,
) -> Result<String, String> {
    result
        .map(|done| format!("{done:?}"))
        .map_err(|error| error.to_string())
}

/// The in-process equivalent of the Lambda each schedule targets.
fn schedule_handler(schedule: &Schedule, hosted: &Hosted) -> anyhow::Result<ScheduleHandler> {
    let Hosted {
        relay,
        etl,
        pool,
        transport,
        campaigns,
    } = hosted;
    Ok(match schedule.target {
        "etl" => {
            let platform = etl::Platform::for_schedule(schedule).ok_or_else(|| {
                anyhow::anyhow!(
                    "schedule {} targets etl but names no platform",
                    schedule.name
                )
            })?;
            let etl = etl.clone();
            Box::new(move |tick: Tick| {
                let etl = etl.clone();
                Box::pin(async move {
                    summary(etl::dispatch(&etl, platform, tick.at.date_naive()).await)
                })
            })
        }
        "relay" => {
            let relay = relay.clone();
            Box::new(move |_: Tick| {
                let relay = relay.clone();
                Box::pin(async move { summary(relay::run(&relay).await) })
            })
        }
        "suggestions-retrain" => {
            let pool = pool.clone();
            Box::new(move |tick: Tick| {
                let pool = pool.clone();
                Box::pin(async move { summary(suggestions::ranker::retrain(&pool, tick.at).await) })
            })
        }
        "email-sweep" => {
            let (pool, transport, campaigns) = (pool.clone(), transport.clone(), campaigns.clone());
            Box::new(move |tick: Tick| {
                let (pool, transport, campaigns) =
                    (pool.clone(), transport.clone(), campaigns.clone());
                Box::pin(async move {
                    summary(
                        email::sweep::sweep(&pool, transport.as_ref(), &campaigns, tick.at).await,
                    )
                })
            })
        }
        other => anyhow::bail!(
            "schedule {} targets {other}, which the local stack does not host",
            schedule.name
        ),
    })
}

/// `host:port/db` of a connection URL, without credentials, for display.
fn describe_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split('?').next().unwrap_or(rest).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_described_without_credentials() {
        assert_eq!(
            describe_url("postgres://user:secret@db.example:6543/postgres?sslmode=require"),
            "db.example:6543/postgres"
        );
        assert_eq!(describe_url("postgres://localhost/app"), "localhost/app");
    }

    #[test]
    fn every_schedule_targets_a_hosted_agent() {
        for schedule in SCHEDULES {
            assert!(
                AGENTS.contains(&schedule.target),
                "{} targets {}",
                schedule.name,
                schedule.target
            );
        }
    }
}
