//! The `billing` function's settings and its one constructor, used alike by the Lambda main,
//! the local stack, the tests and `ops`.

use secrecy::SecretString;
use shared::lambda::Container;
use shared::settings::{Env, SettingsError};

use crate::BillingDeps;

/// The local stack's Stripe endpoint secret, printed at start so a newcomer can sign test
/// events (e.g. `stripe listen --forward-to`, or the demo generator).
pub const LOCAL_WEBHOOK_SECRET: &str = "whsec_local";

#[derive(Debug, Clone)]
pub struct Config {
    /// `STRIPE_WEBHOOK_SECRET`: endpoint secrets, several while one is being rolled.
    pub webhook_secrets: Vec<SecretString>,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        Ok(Self {
            webhook_secrets: env.secret_list("STRIPE_WEBHOOK_SECRET")?,
        })
    }

    pub fn local() -> Self {
        Self {
            webhook_secrets: vec![LOCAL_WEBHOOK_SECRET.into()],
        }
    }
}

impl BillingDeps {
    pub fn new(container: &Container, config: Config) -> Self {
        Self {
            pool: container.pool.clone(),
            transport: container.transport.clone(),
            clock: container.clock.clone(),
            webhook_secrets: shared::settings::exposed(&config.webhook_secrets),
        }
    }
}
