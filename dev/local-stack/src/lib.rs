//! The local stack: the whole system in one process, for development, demos and end-to-end
//! tests.
//!
//! * HTTP: every agent's axum router merged on one port, under the same paths as API Gateway.
//! * Schedules: the definitions of [`shared::schedule`] fired in-process, calling the same
//!   handlers the Lambdas call.
//! * Queues: the Postgres transport, with a consumer per queue whose agent is hosted here.
//! * Database: `DATABASE_URL` if given, else a private throwaway cluster
//!   ([`throwaway_postgres`]); on plain PostgreSQL the part of Supabase's `auth` schema the
//!   product relies on is created first ([`supabase_auth`]), then migrations are applied.
//! * Email: sent to a folder ([`email::provider::Mailbox`]) instead of Resend.
//! * Agents: each is built by its own constructor from its `Config::local()` (or the
//!   environment, see the binary) and the same container parts a Lambda has; the stack only
//!   mounts the entry points each agent exports (`router`, `consumer`, `on_tick`), which
//!   record every request, message and tick in the run log, so the status page reads the
//!   same as in AWS.
//! * Demo mode ([`demo`]): the `standins` on the same port and a driver playing the
//!   platforms against the real routes until every agent and KPI is green.
//!
//! [`start`] returns once the port is bound and migrations are applied; [`LocalStack::stop`]
//! shuts everything down gracefully (the binary calls it on Ctrl-C).

pub mod demo;
pub mod supabase_auth;
pub mod throwaway_postgres;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use shared::agents::Agent;
use shared::crypto::Keys;
use shared::db::{Pool, migrations};
use shared::entry::{Consumer, HandlerError, OnTick};
use shared::lambda::Container;
use shared::lambda::schedule::Tick;
use shared::queue::Transport;
use shared::queue::catalog::{self, QueueDef};
use shared::queue::outbox::Outbox;
use shared::queue::postgres::PostgresTransport;
use shared::schedule::SCHEDULES;
use shared::settings::{DatabaseSettings, Env, exposed};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use throwaway_postgres::ThrowawayPostgres;

/// Tokens of the workspace the local stack creates when the database has none, so an SDK
/// can be pointed at it at once.
pub const LOCAL_POSTHOG_TOKEN: &str = "phc_local";
pub const LOCAL_MIXPANEL_TOKEN: &str = "mp_local";
pub const LOCAL_POSTHOG_WEBHOOK_SECRET: &str = "local-posthog-secret";
/// The Mixpanel project's API secret, for `/import` (the Basic-auth user name).
pub const LOCAL_MIXPANEL_API_SECRET: &str = "local-mixpanel-secret";
/// The project token of the product's own analytics: the frontend sends members' actions
/// (suggestions shown, accepted…) with it, keyed by member id.
pub const LOCAL_PRODUCT_POSTHOG_TOKEN: &str = "phc_product_local";

/// Every agent's settings, as the stack hosts them.
#[derive(Debug, Clone)]
pub struct AgentConfigs {
    pub analytics: analytics::Config,
    pub billing: billing::config::Config,
    pub etl: etl::Config,
    pub shopify_webhook: etl::WebhookConfig,
    pub metrics_api: metrics::api::Config,
    pub status: status::Config,
    pub suggestions_api: suggestions::api::Config,
    pub email_api: email::api::Config,
    pub email_sweep: email::sweep::Config,
}

impl AgentConfigs {
    /// Each agent's `Config::local()`.
    pub fn local() -> Self {
        Self {
            analytics: analytics::Config::local(),
            billing: billing::config::Config::local(),
            etl: etl::Config::local(),
            shopify_webhook: etl::WebhookConfig::local(),
            metrics_api: metrics::api::Config::local(),
            status: status::Config::local(),
            suggestions_api: suggestions::api::Config::local(),
            email_api: email::api::Config::local(),
            email_sweep: email::sweep::Config::local(),
        }
    }

    /// Each agent's configuration from `env` where the environment gives it whole, else its
    /// local one: setting `STRIPE_WEBHOOK_SECRET` is enough to use one's own Stripe secret.
    pub fn from_env_or_local(env: &Env<'_>) -> Self {
        fn either<T>(from_env: Result<T, shared::settings::SettingsError>, local: T) -> T {
            from_env.unwrap_or(local)
        }
        let local = Self::local();
        Self {
            analytics: either(analytics::Config::from_env(env), local.analytics),
            billing: either(billing::config::Config::from_env(env), local.billing),
            etl: either(etl::Config::from_env(env), local.etl),
            shopify_webhook: either(etl::WebhookConfig::from_env(env), local.shopify_webhook),
            metrics_api: either(metrics::api::Config::from_env(env), local.metrics_api),
            status: either(status::Config::from_env(env), local.status),
            suggestions_api: either(
                suggestions::api::Config::from_env(env),
                local.suggestions_api,
            ),
            email_api: either(email::api::Config::from_env(env), local.email_api),
            email_sweep: either(email::sweep::Config::from_env(env), local.email_sweep),
        }
    }

    /// Every API that verifies members' tokens verifies them for `jwt`: one Supabase project.
    pub fn with_jwt(mut self, jwt: shared::jwt::JwtConfig) -> Self {
        self.status.jwt = Some(jwt.clone());
        self.metrics_api.jwt = jwt.clone();
        self.suggestions_api.jwt = jwt;
        self
    }

    /// The keys that seal and hash the workspace's secrets (the analytics agent's).
    pub fn keys(&self) -> &Arc<Keys> {
        &self.analytics.keys
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Use this database instead of starting a throwaway cluster.
    pub database_url: Option<String>,
    pub agents: AgentConfigs,
    /// Where emails land, one JSON file each, instead of Resend.
    pub mailbox_dir: std::path::PathBuf,
    /// Seed demo data at start (see [`demo`]).
    pub demo: bool,
    /// What every agent of the stack takes for now (tests shift it to the hour they examine).
    pub clock: shared::clock::Clock,
}

impl Default for Options {
    /// The local defaults: port 8080, a throwaway database, every agent's local settings.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            agents: AgentConfigs::local(),
            mailbox_dir: std::env::temp_dir().join("growth-agents-mailbox"),
            demo: false,
            clock: shared::clock::Clock::system(),
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
    /// In demo mode: the member a person can read the APIs as.
    pub demo: Option<DemoMember>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    postgres: Option<ThrowawayPostgres>,
}

/// The demo's workspace owner, for a person to call the member APIs as (the banner prints
/// this).
#[derive(Debug, Clone)]
pub struct DemoMember {
    pub workspace: uuid::Uuid,
    pub email: &'static str,
    /// Valid for a day from the stack's start.
    pub access_token: String,
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

/// The schedule handlers the stack hosts, by the agent each schedule targets: the timers call
/// them, and so does the demo when it fires a schedule early.
pub struct Schedules {
    by_agent: Vec<(Agent, OnTick)>,
}

impl Schedules {
    /// Runs the handler of `tick`'s schedule.
    pub async fn fire(&self, tick: Tick) -> Result<(), HandlerError> {
        let target = tick.schedule.target;
        match self.by_agent.iter().find(|(agent, _)| *agent == target) {
            Some((_, on_tick)) => on_tick.call(tick).await,
            None => Err(format!("no local handler for {target}").into()),
        }
    }

    fn hosts(&self, agent: Agent) -> bool {
        self.by_agent.iter().any(|(hosted, _)| *hosted == agent)
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
        supabase_auth::install_where_missing(&client).await?;
        migrations::apply(&mut client)
            .await
            .context("apply migrations")?;
    }
    let configs = options.agents.clone();
    // Secrets among these are stored as keyed hashes under the keys.
    analytics::ensure_default_workspace(
        &pool,
        configs.keys(),
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
    analytics::ensure_workspace(
        &pool,
        configs.keys(),
        analytics::WorkspaceKind::Product,
        "Product analytics",
        &[(
            LOCAL_PRODUCT_POSTHOG_TOKEN,
            analytics::TokenKind::PosthogProject,
        )],
    )
    .await
    .context("create the product's analytics workspace")?;
    let transport: Arc<dyn Transport> = Arc::new(PostgresTransport::new(pool.clone()));
    let clock = options.clock.clone();
    let background = Container::new(pool.clone(), transport.clone(), clock.clone());
    // An HTTP agent's own container: its own small pool, the shared queue and clock.
    let http_container = |size: usize| -> anyhow::Result<Container> {
        Ok(Container::new(
            pool_of(size)?,
            transport.clone(),
            clock.clone(),
        ))
    };

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
    let (mut etl_config, mut shopify_config) =
        (configs.etl.clone(), configs.shopify_webhook.clone());
    if standins.is_some() {
        let endpoints = etl::Endpoints {
            meta_base_url: format!("{origin}/meta"),
            tiktok_base_url: format!("{origin}/tiktok"),
            shopify_base_url: format!("{origin}/shopify"),
            ..etl::Endpoints::default()
        };
        etl_config.meta_app_secret = standin_config.meta.app_secret.clone().map(Into::into);
        etl_config.endpoints = endpoints.clone();
        shopify_config.endpoints = endpoints;
    }

    let router = status::router(Arc::new(status::StatusDeps::new(
        &http_container(2)?,
        configs.status.clone(),
    )))
    .merge(billing::router(Arc::new(billing::BillingDeps::new(
        &http_container(4)?,
        configs.billing.clone(),
    ))))
    .merge(analytics::router(Arc::new(analytics::AnalyticsDeps::new(
        &http_container(4)?,
        configs.analytics.clone(),
    ))))
    .merge(etl::router(Arc::new(etl::WebhookDeps::new(
        &http_container(2)?,
        shopify_config,
    )?)))
    .merge(metrics::api::router(Arc::new(metrics::api::ApiDeps::new(
        &http_container(2)?,
        configs.metrics_api.clone(),
    ))))
    .merge(suggestions::api::router(Arc::new(
        suggestions::api::ApiDeps::new(&http_container(2)?, configs.suggestions_api.clone()),
    )))
    .merge(email::api::router(Arc::new(email::api::ApiDeps::new(
        &http_container(2)?,
        configs.email_api.clone(),
    ))));
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

    let etl = Arc::new(etl::EtlDeps::new(&background, etl_config)?);
    let suggestions = Arc::new(suggestions::SuggestionsDeps::new(&background));
    let mut email_sender = email::send::Config::local(&options.mailbox_dir, &origin);
    email_sender.composer.signer =
        email::unsubscribe::TokenSigner::new(exposed(&configs.email_api.unsubscribe_secrets));
    let sender = Arc::new(email::send::SenderDeps::new(&background, email_sender));
    let schedules = Arc::new(Schedules {
        by_agent: vec![
            (
                Agent::Relay,
                relay::on_tick(Arc::new(relay::RelayDeps::new(&background))),
            ),
            (Agent::Etl, etl::on_tick(etl.clone())),
            (
                Agent::SuggestionsRetrain,
                suggestions::on_tick(suggestions.clone()),
            ),
            (
                Agent::EmailSweep,
                email::sweep::on_tick(Arc::new(email::sweep::SweepDeps::new(
                    &background,
                    configs.email_sweep.clone(),
                ))),
            ),
        ],
    });
    for schedule in SCHEDULES {
        anyhow::ensure!(
            schedules.hosts(schedule.target),
            "schedule {} targets {}, which the local stack does not host",
            schedule.name,
            schedule.target
        );
        let cadence = schedule.cadence()?;
        let (stop, clock, schedules) = (shutdown.clone(), clock.clone(), schedules.clone());
        tasks.spawn(async move {
            let mut next = cadence.next_after(clock.now());
            while let Some(at) = next {
                let wait = (at - clock.now()).to_std().unwrap_or_default();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                if let Err(error) = schedules.fire(Tick { schedule, at }).await {
                    tracing::error!(schedule = schedule.name, %error, "schedule failed");
                }
                next = cadence.next_after(clock.now());
            }
        });
    }

    let consume = Consumers {
        transport: transport.clone(),
        shutdown: shutdown.clone(),
    };
    for queue in catalog::QUEUES {
        match queue.consumer {
            Agent::Etl => consume.spawn(&mut tasks, queue, etl::consumer(etl.clone())),
            Agent::Metrics => consume.spawn(
                &mut tasks,
                queue,
                metrics::consumer(Arc::new(metrics::MetricsDeps::new(&background))),
            ),
            Agent::Suggestions => consume.spawn(
                &mut tasks,
                queue,
                suggestions::consumer(suggestions.clone()),
            ),
            Agent::Email => consume.spawn(&mut tasks, queue, email::send::consumer(sender.clone())),
            other => anyhow::bail!(
                "queue {} is consumed by {other}, which the local stack does not host",
                queue.name
            ),
        }
    }

    let mut demo_member = None;
    if let Some((_, handles)) = standins {
        let outbox = Outbox::new(pool.clone(), transport.clone());
        let seeded = demo::seed(
            &pool,
            &outbox,
            &configs.email_sweep.rules,
            configs.keys(),
            clock.now(),
        )
        .await
        .context("seed the demo")?;
        tracing::info!(?seeded, "demo data seeded");
        let first = |secrets: &[SecretString], what: &str| {
            secrets
                .first()
                .map(|secret| secret.expose_secret().to_string())
                .with_context(|| format!("demo mode needs a {what} secret"))
        };
        let jwt = &configs.suggestions_api.jwt;
        let driver = demo::Demo {
            origin: origin.clone(),
            pool: pool.clone(),
            schedules: schedules.clone(),
            standins: handles,
            workspace: seeded.workspace,
            stripe_secret: first(&configs.billing.webhook_secrets, "Stripe")?,
            shopify_secret: first(&configs.shopify_webhook.webhook_secrets, "Shopify")?,
            resend_secret: first(&configs.email_api.webhook_secrets, "Resend")?,
            jwt_secret: jwt
                .legacy_secret
                .as_ref()
                .map(|secret| secret.expose_secret().to_string())
                .context("demo mode signs its members' tokens with the local legacy secret")?,
            jwt_issuer: shared::jwt::issuer_for(&jwt.supabase_url),
            clock: clock.clone(),
        };
        demo_member = Some(DemoMember {
            workspace: seeded.workspace,
            email: demo::DEMO_MEMBER_EMAIL,
            access_token: demo::member_token(
                &driver.jwt_secret,
                &driver.jwt_issuer,
                clock.now(),
                chrono::Duration::days(1),
            )
            .context("sign the demo member's access token")?,
        });
        tasks.spawn(demo::drive(driver, shutdown.clone()));
    }

    Ok(LocalStack {
        addr,
        data,
        pool,
        demo: demo_member,
        shutdown,
        tasks,
        postgres,
    })
}

/// Starts the queue consumers, each polling the Postgres queue until shutdown.
struct Consumers {
    transport: Arc<dyn Transport>,
    shutdown: CancellationToken,
}

impl Consumers {
    fn spawn<M: DeserializeOwned + Send + 'static>(
        &self,
        tasks: &mut JoinSet<()>,
        queue: &'static QueueDef,
        consumer: Consumer<M>,
    ) {
        let (transport, stop) = (self.transport.clone(), self.shutdown.clone());
        tasks.spawn(async move {
            shared::queue::consumer::poll(transport.as_ref(), queue, consumer.handler(), stop)
                .await;
        });
    }
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
    fn the_agents_settings_print_no_secret() {
        let printed = format!("{:?}", AgentConfigs::local());
        for secret in [
            billing::config::LOCAL_WEBHOOK_SECRET,
            etl::config::LOCAL_SHOPIFY_WEBHOOK_SECRET,
            email::LOCAL_RESEND_WEBHOOK_SECRET,
            email::LOCAL_UNSUBSCRIBE_SECRET,
            status::LOCAL_TOKEN,
            shared::jwt::LOCAL_SECRET,
        ] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
    }

    #[test]
    fn urls_are_described_without_credentials() {
        assert_eq!(
            describe_url("postgres://user:secret@db.example:6543/postgres?sslmode=require"),
            "db.example:6543/postgres"
        );
        assert_eq!(describe_url("postgres://localhost/app"), "localhost/app");
    }
}
