//! Configuration, read once at start-up from environment variables.
//!
//! Every agent builds one [`Settings`] in `main` before serving its first event; a missing or
//! malformed variable stops the process there, with the variable's name in the message, rather
//! than failing an invocation later. Secrets are [`SecretString`]s so that `Debug` output and
//! logs never show them.
//!
//! Parsing takes a lookup function instead of reading the process environment directly, so
//! tests can feed it a map without touching global state.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use crate::queue::catalog::QUEUES;

/// Why the configuration could not be loaded. Always permanent: restarting will not help.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("environment variable {name} is required but not set")]
    Missing { name: &'static str },
    #[error("environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
}

/// Which transport carries queue messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueTransportKind {
    /// SQS FIFO queues, as deployed in AWS.
    Sqs,
    /// The Postgres queue, for the local stack and tests.
    Postgres,
}

impl FromStr for QueueTransportKind {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "sqs" => Ok(Self::Sqs),
            "postgres" => Ok(Self::Postgres),
            other => Err(format!("expected `sqs` or `postgres`, got `{other}`")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `postgres://…`; `sslmode=require` turns on verified TLS (see [`crate::db`]).
    pub url: SecretString,
    /// Connections per process. Lambda containers handle one event at a time, so 1–2.
    pub pool_size: usize,
    /// Extra PEM root certificates to trust besides Supabase's bundled CA.
    pub ca_file: Option<String>,
    pub connect_timeout: Duration,
}

/// Where each queue lives when the transport is SQS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsQueueUrls {
    /// (queue name from the catalog, queue URL, dead-letter queue URL)
    pub queues: Vec<(String, String, String)>,
}

impl SqsQueueUrls {
    pub fn url(&self, queue: &str) -> Option<&str> {
        self.queues
            .iter()
            .find(|(name, _, _)| name == queue)
            .map(|(_, url, _)| url.as_str())
    }
    pub fn dead_letter_url(&self, queue: &str) -> Option<&str> {
        self.queues
            .iter()
            .find(|(name, _, _)| name == queue)
            .map(|(_, _, dlq)| dlq.as_str())
    }
}

#[derive(Debug, Clone)]
pub enum QueueSettings {
    Postgres,
    Sqs(SqsQueueUrls),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub queue: QueueSettings,
}

impl Settings {
    /// Reads the process environment. Call once, in `main`.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, which returns a variable's value if set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let env = Env(&lookup);
        let database = DatabaseSettings {
            url: SecretString::from(env.required("DATABASE_URL")?),
            pool_size: env.parsed_or("DATABASE_POOL_SIZE", 2usize)?,
            ca_file: env.optional("DATABASE_CA_FILE"),
            connect_timeout: Duration::from_secs(
                env.parsed_or("DATABASE_CONNECT_TIMEOUT_SECS", 5u64)?,
            ),
        };
        if database.pool_size == 0 {
            return Err(SettingsError::Malformed {
                name: "DATABASE_POOL_SIZE",
                reason: "must be at least 1".into(),
            });
        }
        let queue = match env.parsed_or("QUEUE_TRANSPORT", QueueTransportKind::Postgres)? {
            QueueTransportKind::Postgres => QueueSettings::Postgres,
            QueueTransportKind::Sqs => QueueSettings::Sqs(SqsQueueUrls {
                queues: QUEUES
                    .iter()
                    .map(|queue| {
                        Ok((
                            queue.name.to_string(),
                            env.required(queue.url_variable)?,
                            env.required(queue.dead_letter_url_variable)?,
                        ))
                    })
                    .collect::<Result<_, SettingsError>>()?,
            }),
        };
        Ok(Self { database, queue })
    }

    /// Settings read from a fixed map; handy for tools and tests.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, SettingsError> {
        Self::from_lookup(|name| map.get(name).cloned())
    }
}

/// Typed access to variables, turning absence and parse errors into [`SettingsError`]s that
/// name the variable (but never echo a value, which may be a secret). Agents use it for their
/// own variables, so every configuration error reads the same.
pub struct Env<'a>(pub &'a dyn Fn(&str) -> Option<String>);

/// The secrets' values, for the code that signs or verifies with them (and holds them no
/// longer than its dependencies live).
pub fn exposed(secrets: &[SecretString]) -> Vec<String> {
    use secrecy::ExposeSecret;
    secrets
        .iter()
        .map(|secret| secret.expose_secret().to_string())
        .collect()
}

fn process_variable(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Env<'static> {
    /// The process environment, as a Lambda main reads it.
    pub fn process() -> Self {
        Env(&process_variable)
    }
}

impl Env<'_> {
    pub fn optional(&self, name: &'static str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    /// A required comma-separated list (e.g. webhook secrets during a rotation).
    pub fn required_list(&self, name: &'static str) -> Result<Vec<String>, SettingsError> {
        let items = self.list(name);
        if items.is_empty() {
            return Err(SettingsError::Missing { name });
        }
        Ok(items)
    }

    /// An optional comma-separated list: empty when unset.
    pub fn list(&self, name: &'static str) -> Vec<String> {
        self.optional(name)
            .unwrap_or_default()
            .split(',')
            .map(|item| item.trim().to_string())
            .filter(|item| !item.is_empty())
            .collect()
    }

    /// A required comma-separated list of secrets (several while one is rotated), wrapped so
    /// that none is ever printed.
    pub fn secret_list(&self, name: &'static str) -> Result<Vec<SecretString>, SettingsError> {
        Ok(self
            .required_list(name)?
            .into_iter()
            .map(SecretString::from)
            .collect())
    }

    /// A required secret, wrapped so that it is never printed.
    pub fn secret(&self, name: &'static str) -> Result<SecretString, SettingsError> {
        self.required(name).map(SecretString::from)
    }

    pub fn required(&self, name: &'static str) -> Result<String, SettingsError> {
        self.optional(name).ok_or(SettingsError::Missing { name })
    }

    pub fn parsed_or<T>(&self, name: &'static str, default: T) -> Result<T, SettingsError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|error: T::Err| SettingsError::Malformed {
                    name,
                    reason: error.to_string(),
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_map(&map)
    }

    #[test]
    fn missing_database_url_is_named() {
        let error = settings(&[]).unwrap_err();
        assert_eq!(
            error,
            SettingsError::Missing {
                name: "DATABASE_URL"
            }
        );
        assert!(error.to_string().contains("DATABASE_URL"));
    }

    #[test]
    fn malformed_number_is_named_without_echoing_value() {
        let error = settings(&[
            ("DATABASE_URL", "postgres://u:hunter2@h/db"),
            ("DATABASE_POOL_SIZE", "many"),
        ])
        .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("DATABASE_POOL_SIZE"), "{message}");
        assert!(!message.contains("hunter2"));
    }

    #[test]
    fn zero_pool_size_is_rejected() {
        let error = settings(&[
            ("DATABASE_URL", "postgres://h/db"),
            ("DATABASE_POOL_SIZE", "0"),
        ])
        .unwrap_err();
        assert!(matches!(
            error,
            SettingsError::Malformed {
                name: "DATABASE_POOL_SIZE",
                ..
            }
        ));
    }

    #[test]
    fn defaults_to_postgres_queue_and_small_pool() {
        let parsed = settings(&[("DATABASE_URL", "postgres://h/db")]).unwrap();
        assert_eq!(parsed.database.pool_size, 2);
        assert!(matches!(parsed.queue, QueueSettings::Postgres));
        assert_eq!(parsed.database.url.expose_secret(), "postgres://h/db");
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let parsed = settings(&[("DATABASE_URL", "postgres://u:hunter2@h/db")]).unwrap();
        let debug = format!("{parsed:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn sqs_transport_requires_every_queue_url() {
        let error = settings(&[
            ("DATABASE_URL", "postgres://h/db"),
            ("QUEUE_TRANSPORT", "sqs"),
        ])
        .unwrap_err();
        assert_eq!(
            error,
            SettingsError::Missing {
                name: QUEUES[0].url_variable
            }
        );

        let mut pairs = vec![
            ("DATABASE_URL", "postgres://h/db"),
            ("QUEUE_TRANSPORT", "sqs"),
        ];
        for queue in QUEUES {
            pairs.push((queue.url_variable, "https://sqs.example/q.fifo"));
            pairs.push((
                queue.dead_letter_url_variable,
                "https://sqs.example/dlq.fifo",
            ));
        }
        let parsed = settings(&pairs).unwrap();
        let QueueSettings::Sqs(urls) = parsed.queue else {
            panic!("expected SQS settings")
        };
        assert_eq!(urls.url(QUEUES[0].name), Some("https://sqs.example/q.fifo"));
    }

    #[test]
    fn unknown_transport_is_malformed() {
        let error = settings(&[
            ("DATABASE_URL", "postgres://h/db"),
            ("QUEUE_TRANSPORT", "kafka"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("QUEUE_TRANSPORT"));
        assert!(error.to_string().contains("kafka"));
    }
}
