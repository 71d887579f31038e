//! Logging set-up: structured JSON inside Lambda (CloudWatch metric filters and Logs Insights
//! read fields, not prose), compact human-readable lines on a terminal.
//!
//! The level comes from `AWS_LAMBDA_LOG_LEVEL` (what Lambda's advanced logging controls set),
//! then `RUST_LOG`, then `info`.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// What [`init`] decided from the environment; separate so it can be tested without
/// installing a global subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

impl LogConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let in_lambda = lookup("AWS_LAMBDA_FUNCTION_NAME").is_some();
        let format = match lookup("LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            _ if in_lambda => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let filter = lookup("AWS_LAMBDA_LOG_LEVEL")
            .map(|level| level.to_lowercase())
            .or_else(|| lookup("RUST_LOG"))
            .filter(|filter| !filter.trim().is_empty())
            .unwrap_or_else(|| "info".to_string());
        Self { format, filter }
    }
}

/// Installs the global subscriber once per process. Later calls are ignored, so tests and
/// the local stack may call it freely.
pub fn init() {
    let config = LogConfig::from_lookup(|name| std::env::var(name).ok());
    let _ = tracing::subscriber::set_global_default(subscriber(&config, std::io::stdout));
}

/// The subscriber `config` describes, writing to `writer`.
pub fn subscriber<W>(config: &LogConfig, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match config.format {
        // Lambda stamps each line with its own time and request id.
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .without_time()
                .finish(),
        ),
        LogFormat::Text => Box::new(builder.compact().finish()),
    }
}

/// What a caught panic said, credentials removed, for the log line that reports it.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    crate::redact::credentials(&message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> LogConfig {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LogConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn lambda_gets_json_and_its_log_level() {
        let chosen = config(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "status"),
            ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
            ("RUST_LOG", "warn"),
        ]);
        assert_eq!(
            chosen,
            LogConfig {
                format: LogFormat::Json,
                filter: "debug".into()
            }
        );
    }

    #[test]
    fn terminal_gets_text_and_rust_log() {
        let chosen = config(&[("RUST_LOG", "shared=trace")]);
        assert_eq!(
            chosen,
            LogConfig {
                format: LogFormat::Text,
                filter: "shared=trace".into()
            }
        );
    }

    #[test]
    fn defaults_to_info() {
        assert_eq!(config(&[]).filter, "info");
    }

    #[test]
    fn json_lines_carry_fields() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let lambda = LogConfig {
            format: LogFormat::Json,
            filter: "info".into(),
        };
        tracing::subscriber::with_default(subscriber(&lambda, move || writer.clone()), || {
            tracing::debug!("filtered out below the configured level");
            tracing::info!(agent = "status", rows = 3, "run finished");
        });
        let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(output.lines().count(), 1, "{output}");
        let parsed: serde_json::Value = serde_json::from_str(output.trim()).unwrap();
        assert_eq!(parsed["agent"], "status");
        assert_eq!(parsed["rows"], 3);
        assert_eq!(parsed["message"], "run finished");
    }
}
