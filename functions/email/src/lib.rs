//! The email agent: D1, D7 and D30 retention emails to members (Supabase Auth users, at the
//! address Auth confirmed), each sent at most once per member, tracked to delivery, open and
//! click, and stoppable in one click. A workspace's audience — the people whose events
//! arrive under its public token — never receives our email.
//!
//! * [`sweep`] — the hourly schedule finds members due a campaign in their own timezone
//!   ([`campaigns`]) and queues one [`send::SendCampaignEmail`] each on `email.fifo`;
//! * [`send`] — the queue consumer claims `(member, campaign)` in the database, renders the
//!   [`templates`] with their workspace's numbers and best open suggestions, and calls the
//!   [`provider`] with an idempotency key;
//! * [`webhook`] — Resend's delivery reports update the sends, suppress bounced and
//!   complaining addresses, and become events of the product's own analytics;
//! * [`unsubscribe`] — signed one-click links (RFC 8058) and the endpoints behind them;
//! * [`stats`] — delivery, open and click rates per campaign, for the status page.
//!
//! Three Lambdas share this crate, each with its settings and constructor beside its
//! entry point: `email` ([`send::Config`], [`send::consumer`]), `email-sweep`
//! ([`sweep::Config`], [`sweep::on_tick`]) and `email-api` ([`api::Config`],
//! [`api::router`]); the local stack runs all three in-process, and `ops email-preview`
//! prints what a member would receive.

pub mod api;
pub mod campaigns;
pub mod provider;
pub mod send;
pub mod stats;
pub mod sweep;
pub mod templates;
pub mod unsubscribe;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use shared::db::DbError;
use shared::queue::QueueError;
use shared::retry::{RetryClass, Retryable};
use shared::settings::{Env, SettingsError};

use provider::{EmailProvider, Mailbox, ProviderError, Resend};
use send::Composer;
use templates::{RenderError, Templates};
use unsubscribe::TokenSigner;

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("events: {0}")]
    Events(#[from] shared::events::StoreError),
    /// A provider payload we cannot read; retrying cannot help.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// Another consumer holds the claim on this send; try again after it has finished.
    #[error("another consumer is sending this email")]
    ClaimedElsewhere,
    /// This attempt's claim was taken over while it ran.
    #[error("the claim on this send was taken over")]
    ClaimLost,
}

impl Retryable for EmailError {
    fn retry_class(&self) -> RetryClass {
        match self {
            EmailError::Db(error) => error.retry_class(),
            EmailError::Queue(error) => error.retry_class(),
            EmailError::Provider(error) => error.retry_class(),
            EmailError::Events(error) => error.retry_class(),
            EmailError::ClaimedElsewhere | EmailError::ClaimLost => RetryClass::transient(),
            EmailError::Render(_) | EmailError::Malformed(_) => RetryClass::Permanent,
        }
    }
}

/// The product's name in emails, unless `EMAIL_PRODUCT_NAME` says otherwise.
pub const DEFAULT_PRODUCT_NAME: &str = "Growth Agents";

/// How long a send claim keeps other consumers away: above the worst attempt (four provider
/// calls of at most 15 s with their backoff), below the queue's 360 s redelivery.
pub const CLAIM_TTL: Duration = Duration::from_secs(120);

/// The local stack's unsubscribe-link secret.
pub const LOCAL_UNSUBSCRIBE_SECRET: &str = "local-unsubscribe-secret";
/// The local stack's Resend webhook secret (`whsec_` + base64).
pub const LOCAL_RESEND_WEBHOOK_SECRET: &str = "whsec_bG9jYWwtcmVzZW5kLXNlY3JldA==";
/// Who local emails are from.
pub const LOCAL_EMAIL_FROM: &str = "Growth Agents <hello@growth-agents.local>";

/// The unsubscribe signer from `EMAIL_UNSUBSCRIBE_SECRET` (comma-separated while rotating).
pub fn signer_from_env(env: &Env<'_>) -> Result<TokenSigner, SettingsError> {
    Ok(TokenSigner::new(
        env.required_list("EMAIL_UNSUBSCRIBE_SECRET")?,
    ))
}

/// The composer from the environment: `EMAIL_FROM`, `EMAIL_PUBLIC_BASE_URL` (where the
/// unsubscribe routes are served), `EMAIL_APP_URL` (default: the public base URL),
/// `EMAIL_PRODUCT_NAME`, `EMAIL_UNSUBSCRIBE_SECRET`.
pub fn composer_from_env(env: &Env<'_>) -> Result<Composer, SettingsError> {
    let public_base_url = env.required("EMAIL_PUBLIC_BASE_URL")?;
    Ok(Composer {
        templates: Templates::new(),
        signer: signer_from_env(env)?,
        from: env.required("EMAIL_FROM")?,
        product: env
            .optional("EMAIL_PRODUCT_NAME")
            .unwrap_or_else(|| DEFAULT_PRODUCT_NAME.to_string()),
        app_url: env
            .optional("EMAIL_APP_URL")
            .unwrap_or_else(|| public_base_url.clone()),
        public_base_url,
    })
}

/// The provider the environment names: Resend when `RESEND_API_KEY` is set (at
/// `RESEND_BASE_URL`, default the production API), else the folder `EMAIL_MAILBOX_DIR`.
pub fn provider_from_env(env: &Env<'_>) -> Result<Arc<dyn EmailProvider>, SettingsError> {
    if let Some(api_key) = env.optional("RESEND_API_KEY") {
        let base_url = env
            .optional("RESEND_BASE_URL")
            .unwrap_or_else(|| Resend::PRODUCTION_URL.to_string());
        let resend = Resend::new(base_url, api_key).map_err(|error| SettingsError::Malformed {
            name: "RESEND_BASE_URL",
            reason: error.to_string(),
        })?;
        return Ok(Arc::new(resend));
    }
    match env.optional("EMAIL_MAILBOX_DIR") {
        Some(directory) => Ok(Arc::new(Mailbox::new(directory))),
        None => Err(SettingsError::Missing {
            name: "RESEND_API_KEY",
        }),
    }
}
