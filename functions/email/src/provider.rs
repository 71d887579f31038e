//! Who delivers the mail: the port and its two adapters.
//!
//! [`EmailProvider`] takes a finished email and an idempotency key and returns the provider's
//! message id (the one its webhooks quote). [`Resend`] speaks Resend's HTTP API; [`Mailbox`]
//! writes each email as a JSON file (the same fields Resend would receive) into a folder,
//! for the local stack and the tests. Both treat a repeated idempotency key as the same email:
//! that is what makes a retry after an unknown outcome safe.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use shared::retry::{RetryClass, Retryable, classify_http};

/// A finished email, ready for any provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutgoingEmail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// Extra headers (`List-Unsubscribe`, `List-Unsubscribe-Post`).
    pub headers: std::collections::BTreeMap<String, String>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Refused for good (invalid address, bad sender…): sending again cannot help.
    #[error("{provider} refused the email ({status}): {message}")]
    Rejected {
        provider: &'static str,
        status: u16,
        message: String,
    },
    /// Not accepted now (rate limit, outage, timeout): try again later.
    #[error("{provider} unavailable ({status:?}): {message}")]
    Unavailable {
        provider: &'static str,
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The idempotency key was already used for an email: it went out earlier.
    #[error("{provider} already sent an email under this idempotency key: {message}")]
    AlreadySent {
        provider: &'static str,
        message: String,
    },
}

impl Retryable for ProviderError {
    fn retry_class(&self) -> RetryClass {
        match self {
            ProviderError::Unavailable { retry_after, .. } => RetryClass::Transient {
                retry_after: *retry_after,
            },
            ProviderError::Rejected { .. } | ProviderError::AlreadySent { .. } => {
                RetryClass::Permanent
            }
        }
    }
}

#[async_trait]
pub trait EmailProvider: Send + Sync {
    /// Recorded with each send.
    fn name(&self) -> &'static str;

    /// Sends `email`; the same `idempotency_key` must never produce a second email.
    async fn send(
        &self,
        email: &OutgoingEmail,
        idempotency_key: &str,
    ) -> Result<String, ProviderError>;
}

/// Resend's HTTP API (`POST /emails`).
pub struct Resend {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
}

/// Resend refuses requests without a User-Agent.
const USER_AGENT: &str = concat!("growth-agents-email/", env!("CARGO_PKG_VERSION"));

impl Resend {
    pub const PRODUCTION_URL: &'static str = "https://api.resend.com";

    pub fn new(
        base_url: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .timeout(Duration::from_secs(15))
                .build()?,
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key: api_key.into(),
        })
    }
}

#[async_trait]
impl EmailProvider for Resend {
    fn name(&self) -> &'static str {
        "resend"
    }

    async fn send(
        &self,
        email: &OutgoingEmail,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        let unavailable =
            |status: Option<u16>, message: String, retry_after| ProviderError::Unavailable {
                provider: "resend",
                status,
                message,
                retry_after,
            };
        let response = self
            .http
            .post(format!("{}/emails", self.base_url))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", idempotency_key)
            .json(email)
            .send()
            .await
            .map_err(|error| unavailable(None, format!("POST /emails: {error}"), None))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["message"].as_str().unwrap_or("no message").to_string();
        let name = body["name"].as_str().unwrap_or_default();
        if status.is_success() {
            return body["id"].as_str().map(str::to_string).ok_or_else(|| {
                unavailable(
                    Some(status.as_u16()),
                    format!("no id in the answer: {body}"),
                    None,
                )
            });
        }
        if status.as_u16() == 409 {
            // A request with this key is still being processed: ask again later.
            if name == "concurrent_idempotent_requests" {
                return Err(unavailable(Some(409), message, None));
            }
            return Err(ProviderError::AlreadySent {
                provider: "resend",
                message,
            });
        }
        match classify_http(status, &headers, SystemTime::now()) {
            RetryClass::Transient { retry_after } => {
                Err(unavailable(Some(status.as_u16()), message, retry_after))
            }
            RetryClass::Permanent => Err(ProviderError::Rejected {
                provider: "resend",
                status: status.as_u16(),
                message: format!("{name}: {message}"),
            }),
        }
    }
}

/// A folder of JSON files, one per email, named by idempotency key.
pub struct Mailbox {
    directory: PathBuf,
}

impl Mailbox {
    pub fn new(directory: impl Into<PathBuf>) -> Self {
        Self {
            directory: directory.into(),
        }
    }

    /// Every email in the folder, oldest name first.
    pub fn read_all(&self) -> std::io::Result<Vec<Value>> {
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&self.directory) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .collect(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        paths.sort();
        paths
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path)?;
                serde_json::from_str(&text).map_err(std::io::Error::other)
            })
            .collect()
    }
}

#[async_trait]
impl EmailProvider for Mailbox {
    fn name(&self) -> &'static str {
        "mailbox"
    }

    async fn send(
        &self,
        email: &OutgoingEmail,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        let failed = |message: String| ProviderError::Unavailable {
            provider: "mailbox",
            status: None,
            message,
            retry_after: None,
        };
        let id = format!(
            "mailbox-{}",
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, idempotency_key.as_bytes())
        );
        let file_name: String = idempotency_key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.directory.join(format!("{file_name}.json"));
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(id);
        }
        tokio::fs::create_dir_all(&self.directory)
            .await
            .map_err(|error| failed(format!("create {}: {error}", self.directory.display())))?;
        let mut document =
            serde_json::to_value(email).map_err(|error| failed(error.to_string()))?;
        document["id"] = Value::String(id.clone());
        document["idempotency_key"] = Value::String(idempotency_key.to_string());
        let text =
            serde_json::to_string_pretty(&document).map_err(|error| failed(error.to_string()))?;
        // Written aside then renamed, so a reader never sees half an email.
        let partial = path.with_extension(format!("{}.partial", std::process::id()));
        tokio::fs::write(&partial, text)
            .await
            .map_err(|error| failed(format!("write {}: {error}", partial.display())))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|error| failed(format!("rename to {}: {error}", path.display())))?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(subject: &str) -> OutgoingEmail {
        OutgoingEmail {
            from: "Growth Agents <hello@example.test>".into(),
            to: vec!["ada@example.com".into()],
            subject: subject.into(),
            html: "<p>Hi</p>".into(),
            text: "Hi".into(),
            headers: Default::default(),
            tags: vec![],
        }
    }

    #[tokio::test]
    async fn the_mailbox_keeps_one_email_per_idempotency_key() {
        let directory = std::env::temp_dir().join(format!("mailbox-{}", uuid::Uuid::new_v4()));
        let mailbox = Mailbox::new(&directory);
        let first = mailbox.send(&email("one"), "email-send/1").await.unwrap();
        let again = mailbox.send(&email("one"), "email-send/1").await.unwrap();
        let other = mailbox.send(&email("two"), "email-send/2").await.unwrap();
        assert_eq!(first, again);
        assert_ne!(first, other);
        let stored = mailbox.read_all().unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0]["subject"], "one");
        assert_eq!(stored[0]["idempotency_key"], "email-send/1");
        std::fs::remove_dir_all(directory).unwrap();
    }
}
