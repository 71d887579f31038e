//! The ETL agent's two functions, each with its settings and its one constructor — used
//! alike by the Lambda mains, the local stack, the tests and `ops` — and its instrumented
//! entry points:
//!
//! * `etl`: [`Config`] → [`EtlDeps::new`] → [`consumer`] (runs from `etl.fifo`) and
//!   [`on_tick`] (the `etl-*` schedules, which dispatch those runs);
//! * `shopify-webhook`: [`WebhookConfig`] → [`WebhookDeps::new`] → [`crate::router`].

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use shared::agents::Agent;
use shared::crypto::Keys;
use shared::entry::{Consumer, OnTick};
use shared::lambda::Container;
use shared::lambda::schedule::Tick;
use shared::retry::RetryPolicy;
use shared::runs::RunLog;
use shared::settings::{Env, SettingsError};

use crate::meta::MetaSettings;
use crate::tiktok::TikTokSettings;
use crate::{Endpoints, EtlDeps, EtlError, EtlRun, Platform, RunReport, WebhookDeps};

/// How long one call to a platform may take, whole.
const PLATFORM_TIMEOUT: Duration = Duration::from_secs(60);

/// The local stack's Shopify app secret.
pub const LOCAL_SHOPIFY_WEBHOOK_SECRET: &str = "shopify-local-secret";

/// The `etl` function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ENCRYPTION_KEYS`, which open the connections' sealed tokens.
    pub keys: Arc<Keys>,
    /// `META_API_BASE_URL`, `TIKTOK_API_BASE_URL`, `SHOPIFY_API_BASE_URL` (defaults: the
    /// platforms).
    pub endpoints: Endpoints,
    /// `META_APP_SECRET`, which signs each Meta request's `appsecret_proof`.
    pub meta_app_secret: Option<SecretString>,
    /// `META_API_VERSION` (default v27.0; an expired version is refused here) and
    /// `META_ASYNC_AFTER_DAYS` (default 35); the report runs' polling and the pacing
    /// pause keep their defaults outside tests.
    pub meta: MetaSettings,
    /// `TIKTOK_THROTTLE_WAIT_SECS` (default 300) and `TIKTOK_ASYNC_AFTER_DAYS` (default 60);
    /// the tasks' pacing and polling keep their defaults outside tests.
    pub tiktok: TikTokSettings,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        Ok(Self {
            keys: Arc::new(Keys::from_env(env)?),
            endpoints: Endpoints::from_lookup(env.0),
            meta_app_secret: env.optional("META_APP_SECRET").map(SecretString::from),
            meta: meta_settings(env)?,
            tiktok: tiktok_settings(env)?,
        })
    }

    /// The local stack's: its key, and the platforms' real hosts (demo mode points them at
    /// the stand-ins).
    pub fn local() -> Self {
        Self {
            keys: Arc::new(Keys::local()),
            endpoints: Endpoints::default(),
            meta_app_secret: None,
            meta: MetaSettings::default(),
            tiktok: TikTokSettings::default(),
        }
    }
}

/// A number of days between 1 and [`crate::MAX_WINDOW_DAYS`].
fn days(env: &Env<'_>, name: &'static str, default: i64) -> Result<i64, SettingsError> {
    let days = env.parsed_or(name, default)?;
    if !(1..=crate::MAX_WINDOW_DAYS).contains(&days) {
        return Err(SettingsError::Malformed {
            name,
            reason: format!("{days} is not between 1 and {}", crate::MAX_WINDOW_DAYS),
        });
    }
    Ok(days)
}

fn meta_settings(env: &Env<'_>) -> Result<MetaSettings, SettingsError> {
    let defaults = MetaSettings::default();
    Ok(MetaSettings {
        api_version: env.parsed_or("META_API_VERSION", defaults.api_version)?,
        async_after_days: days(env, "META_ASYNC_AFTER_DAYS", defaults.async_after_days)?,
        ..defaults
    })
}

fn tiktok_settings(env: &Env<'_>) -> Result<TikTokSettings, SettingsError> {
    let defaults = TikTokSettings::default();
    let wait: u64 = env.parsed_or(
        "TIKTOK_THROTTLE_WAIT_SECS",
        defaults.throttle_wait.as_secs(),
    )?;
    if wait > 3_600 {
        return Err(SettingsError::Malformed {
            name: "TIKTOK_THROTTLE_WAIT_SECS",
            reason: format!("{wait} is more than an hour"),
        });
    }
    Ok(TikTokSettings {
        throttle_wait: Duration::from_secs(wait),
        async_after_days: days(env, "TIKTOK_ASYNC_AFTER_DAYS", defaults.async_after_days)?,
        ..defaults
    })
}

impl EtlDeps {
    pub fn new(container: &Container, config: Config) -> reqwest::Result<Self> {
        Ok(Self {
            pool: container.pool.clone(),
            transport: container.transport.clone(),
            clock: container.clock.clone(),
            keys: config.keys,
            http: crate::http_client(PLATFORM_TIMEOUT)?,
            endpoints: config.endpoints,
            retry: RetryPolicy::default(),
            meta_app_secret: config.meta_app_secret,
            bulk_poll_interval: BULK_POLL_INTERVAL,
            bulk_deadline: BULK_DEADLINE,
            meta: config.meta,
            tiktok: config.tiktok,
        })
    }
}

/// Shopify bulk operations: asked about every 2 s (a poll costs one point), waited for up to
/// ten minutes, well inside the function's timeout; one not done by then is the next run's.
pub const BULK_POLL_INTERVAL: Duration = Duration::from_secs(2);
pub const BULK_DEADLINE: Duration = Duration::from_secs(600);

/// The `etl.fifo` consumer, recorded in the run log. A run that fails is recorded and
/// alerted, and the next schedule tries again, so only infrastructure errors (database, lease
/// bookkeeping) fail the message.
pub fn consumer(deps: Arc<EtlDeps>) -> Consumer<EtlRun> {
    let runs = RunLog::new(deps.pool.clone(), Agent::Etl);
    // One holder per container: a container handles one batch at a time.
    let holder: Arc<str> = format!("etl-{}", uuid::Uuid::new_v4().simple()).into();
    Consumer::judged(
        runs,
        move |run: EtlRun| {
            let (deps, holder) = (deps.clone(), holder.clone());
            async move { crate::run(&deps, &run, &holder).await }
        },
        RunReport::judged,
    )
}

/// The `etl-meta`, `etl-tiktok` and `etl-shopify` schedules: one run per active connection
/// of the platform, onto `etl.fifo`; recorded in the run log.
pub fn on_tick(deps: Arc<EtlDeps>) -> OnTick {
    let runs = RunLog::new(deps.pool.clone(), Agent::Etl);
    OnTick::new(runs, move |tick: Tick| {
        let deps = deps.clone();
        async move {
            let platform = Platform::for_schedule(tick.schedule).ok_or_else(|| {
                EtlError::InvalidRun(format!(
                    "schedule {} dispatches no platform",
                    tick.schedule.name
                ))
            })?;
            crate::dispatch(&deps, platform, tick.at.date_naive()).await
        }
    })
}

/// The `shopify-webhook` function's settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `ENCRYPTION_KEYS`, which open the shops' sealed tokens to re-read an order.
    pub keys: Arc<Keys>,
    /// `SHOPIFY_WEBHOOK_SECRET`: the app's client secrets, several while one is rotated.
    pub webhook_secrets: Vec<SecretString>,
    /// Where the shops' Admin APIs are (`SHOPIFY_API_BASE_URL`).
    pub endpoints: Endpoints,
}

impl WebhookConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        Ok(Self {
            keys: Arc::new(Keys::from_env(env)?),
            webhook_secrets: env.secret_list("SHOPIFY_WEBHOOK_SECRET")?,
            endpoints: Endpoints::from_lookup(env.0),
        })
    }

    pub fn local() -> Self {
        Self {
            keys: Arc::new(Keys::local()),
            webhook_secrets: vec![LOCAL_SHOPIFY_WEBHOOK_SECRET.into()],
            endpoints: Endpoints::default(),
        }
    }
}

impl WebhookDeps {
    pub fn new(container: &Container, config: WebhookConfig) -> reqwest::Result<Self> {
        Ok(Self {
            pool: container.pool.clone(),
            transport: container.transport.clone(),
            clock: container.clock.clone(),
            keys: config.keys,
            webhook_secrets: shared::settings::exposed(&config.webhook_secrets),
            http: crate::http_client(crate::shopify::webhook::REREAD_TIMEOUT)?,
            endpoints: config.endpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, SettingsError> {
        let pairs: Vec<(String, String)> = [("ENCRYPTION_KEYS", shared::crypto::LOCAL_KEYS)]
            .iter()
            .chain(pairs)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        Config::from_env(&Env(&lookup))
    }

    #[test]
    fn the_meta_version_defaults_to_v27_and_an_expired_one_is_refused() {
        assert_eq!(config(&[]).unwrap().meta.api_version.to_string(), "v27.0");
        let v26 = config(&[("META_API_VERSION", "v26.0")]).unwrap();
        assert_eq!(v26.meta.api_version.to_string(), "v26.0");
        assert!(matches!(
            config(&[("META_API_VERSION", "v24.0")]),
            Err(SettingsError::Malformed {
                name: "META_API_VERSION",
                ..
            })
        ));
        assert!(config(&[("META_ASYNC_AFTER_DAYS", "0")]).is_err());
        assert_eq!(Config::local().meta, MetaSettings::default());
        let tiktok = config(&[
            ("TIKTOK_THROTTLE_WAIT_SECS", "2"),
            ("TIKTOK_ASYNC_AFTER_DAYS", "90"),
        ])
        .unwrap();
        assert_eq!(
            (tiktok.tiktok.throttle_wait, tiktok.tiktok.async_after_days),
            (Duration::from_secs(2), 90)
        );
        assert_eq!(config(&[]).unwrap().tiktok, TikTokSettings::default());
        assert!(config(&[("TIKTOK_THROTTLE_WAIT_SECS", "-1")]).is_err());
    }
}
