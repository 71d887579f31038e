//! TikTok's asynchronous report tasks, the wire side: `POST
//! /open_api/v1.3/report/task/create/` with a JSON body holding the synchronous report's
//! parameters answers `data.task_id`; `GET report/task/check/?advertiser_id&task_id`
//! answers `data.status` (`QUEUING`, `PROCESSING`, `SUCCESS`, `FAILED`…); `GET
//! report/task/download/` of a task that succeeded answers the report as CSV, one line per
//! ad and day under a header naming the columns. Every JSON answer is TikTok's envelope,
//! read by [`super::envelope_error`] (only `code` 0 is success). The steps (create within the
//! creation limit, check to a deadline, download, store) are `crate::report_jobs`.

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::{METRICS, envelope_error};
use crate::{AdRow, ExtractError};

/// The URL tasks are created at (POST, JSON body [`create_body`]).
pub fn create_url(base_url: &str) -> String {
    format!("{base_url}/open_api/v1.3/report/task/create/")
}

/// The creation body for one ≤ 30-day chunk.
pub fn create_body(advertiser_id: &str, start: NaiveDate, end: NaiveDate) -> Value {
    let metrics: Value = serde_json::from_str(METRICS).unwrap_or(Value::Null);
    json!({
        "advertiser_id": advertiser_id,
        "report_type": "BASIC",
        "data_level": "AUCTION_AD",
        "dimensions": ["ad_id", "stat_time_day"],
        "metrics": metrics,
        "start_date": start.to_string(),
        "end_date": end.to_string(),
    })
}

/// A task's id: digits only, since it goes into later requests' queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskId(String);

impl std::fmt::Display for TaskId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// `check/` or `download/` of a task.
pub fn task_url(base_url: &str, endpoint: &str, advertiser_id: &str, task: &TaskId) -> String {
    let query = crate::meta::form_query(&[("advertiser_id", advertiser_id), ("task_id", &task.0)]);
    format!("{base_url}/open_api/v1.3/report/task/{endpoint}/?{query}")
}

/// Reads the creation answer's `data.task_id`.
pub fn parse_created(body: &Value) -> Result<TaskId, ExtractError> {
    if let Some(error) = envelope_error(body) {
        return Err(error);
    }
    let id = match body.pointer("/data/task_id") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => {
            return Err(ExtractError::Malformed(
                "task answer without `data.task_id`".into(),
            ));
        }
    };
    if id.is_empty() || id.len() > 40 || !id.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(ExtractError::Malformed(
            "`task_id` is not a numeric id".into(),
        ));
    }
    Ok(TaskId(id))
}

/// Where a task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// Queued or processing.
    Pending(String),
    Succeeded,
    /// Failed or cancelled: a new task may succeed.
    Ended(String),
}

/// Reads a check answer's `data.status`.
pub fn parse_status(body: &Value) -> Result<TaskStatus, ExtractError> {
    if let Some(error) = envelope_error(body) {
        return Err(error);
    }
    let status = body
        .pointer("/data/status")
        .and_then(Value::as_str)
        .ok_or_else(|| ExtractError::Malformed("task check without `data.status`".into()))?;
    Ok(match status {
        "SUCCESS" => TaskStatus::Succeeded,
        "QUEUING" | "PROCESSING" => TaskStatus::Pending(status.to_string()),
        "FAILED" | "CANCELED" | "CANCELLED" => TaskStatus::Ended(status.to_string()),
        other => {
            return Err(ExtractError::Malformed(format!(
                "task with an unknown status {:?}",
                shared::text::clip(other, 60)
            )));
        }
    })
}

/// Reads a downloaded report: a CSV whose header names the columns (`stat_time_day`, `ad_id`
/// and metrics, in any order), as the rows the synchronous report would give. A download
/// that is a JSON envelope instead is its error.
pub fn parse_download(body: &str) -> Result<Vec<AdRow>, ExtractError> {
    if body.trim_start().starts_with('{') {
        let envelope: Value = serde_json::from_str(body)
            .map_err(|error| ExtractError::Malformed(error.to_string()))?;
        return Err(envelope_error(&envelope).unwrap_or_else(|| {
            ExtractError::Malformed("a task download answered JSON, not the report".into())
        }));
    }
    let mut records = csv_records(body)?.into_iter();
    let header = records
        .next()
        .ok_or_else(|| ExtractError::Malformed("an empty task download".into()))?;
    let mut rows = Vec::new();
    for record in records {
        if record.len() != header.len() {
            return Err(ExtractError::Malformed(format!(
                "a report line of {} fields under a header of {}",
                record.len(),
                header.len()
            )));
        }
        let mut dimensions = Map::new();
        let mut metrics = Map::new();
        for (name, value) in header.iter().zip(record) {
            let target = match name.as_str() {
                "ad_id" | "stat_time_day" => &mut dimensions,
                _ => &mut metrics,
            };
            target.insert(name.clone(), Value::String(value));
        }
        rows.push(super::ad_row(
            &json!({ "dimensions": dimensions, "metrics": metrics }),
        )?);
    }
    Ok(rows)
}

/// The records of an RFC 4180 CSV text: fields split at commas, quoted fields may hold
/// commas, doubled quotes and line breaks; blank lines are skipped.
fn csv_records(text: &str) -> Result<Vec<Vec<String>>, ExtractError> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, other) => field.push(other),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                if record.iter().any(|value| !value.is_empty()) {
                    records.push(std::mem::take(&mut record));
                } else {
                    record.clear();
                }
            }
            (false, other) => field.push(other),
        }
    }
    if quoted {
        return Err(ExtractError::Malformed(
            "an unterminated quoted CSV field".into(),
        ));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    #[test]
    fn a_download_is_read_as_the_synchronous_rows_with_dashes_as_nulls() {
        let csv = "stat_time_day,ad_id,spend,impressions,clicks,conversion,total_complete_payment_rate,campaign_id\n\
                   2026-11-01 00:00:00,9,12.30,1000,25,3,-,c\n\
                   \"2026-11-02 00:00:00\",\"9\",\"1,5\",7,0,0,4.5,\"x\"\"y\"\r\n\n";
        let rows = parse_download(csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].spend, rows[0].conversion_value),
            (Decimal::new(1230, 2), None)
        );
        assert_eq!(rows[0].campaign_id.as_deref(), Some("c"));
        assert_eq!(rows[1].date, "2026-11-02".parse::<NaiveDate>().unwrap());
        assert_eq!(rows[1].campaign_id.as_deref(), Some("x\"y"));
        assert!(parse_download("a,b\n1\n").is_err());
        assert!(parse_download("\"open").is_err());
        assert!(matches!(
            parse_download(r#"{"code":40105,"message":"revoked"}"#),
            Err(ExtractError::Auth(_))
        ));
    }

    #[test]
    fn tasks_are_created_checked_and_refused_by_their_envelope() {
        let body = create_body(
            "7",
            "2026-11-01".parse().unwrap(),
            "2026-11-30".parse().unwrap(),
        );
        assert_eq!(body["metrics"][0], "spend");
        assert_eq!(body["dimensions"], json!(["ad_id", "stat_time_day"]));
        let id = parse_created(&json!({"code": 0, "data": {"task_id": "73"}})).unwrap();
        assert_eq!(
            task_url("http://x", "check", "7", &id),
            "http://x/open_api/v1.3/report/task/check/?advertiser_id=7&task_id=73"
        );
        assert!(matches!(
            parse_created(&json!({"code": 40100, "message": "QPS"})),
            Err(ExtractError::Throttled { .. })
        ));
        assert!(parse_created(&json!({"code": 0, "data": {"task_id": "7&x=1"}})).is_err());
        let status = |value: &str| parse_status(&json!({"code": 0, "data": {"status": value}}));
        assert_eq!(status("SUCCESS").unwrap(), TaskStatus::Succeeded);
        assert_eq!(
            status("QUEUING").unwrap(),
            TaskStatus::Pending("QUEUING".into())
        );
        assert_eq!(
            status("FAILED").unwrap(),
            TaskStatus::Ended("FAILED".into())
        );
        assert!(status("EXPLODED").is_err());
    }

    proptest! {
        #[test]
        fn any_answer_is_read_or_refused_without_a_panic(body in crate::strategies::json(), text in "[ -~\n\",]{0,200}") {
            let _ = parse_created(&body);
            let _ = parse_status(&body);
            let _ = parse_download(&text);
        }
    }
}
