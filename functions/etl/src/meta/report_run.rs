//! Meta's asynchronous insights ("report runs"), the wire side: `POST act_{id}/insights`
//! with the same parameters as a synchronous read answers `{"report_run_id": …}`;
//! `GET /{report_run_id}` answers the `AdReportRun` with `async_status` ("Job Not
//! Started", "Job Started", "Job Running", "Job Completed", "Job Failed", "Job Skipped") and
//! `async_percent_completion`; once completed, `GET /{report_run_id}/insights` pages the
//! rows like a synchronous read. A run is created by POSTing the synchronous first page's
//! URL ([`super::first_page`]), parameters and all. The steps (create, poll with a deadline, page) are
//! `crate::report_jobs`.

use serde_json::Value;

use super::{ApiVersion, form_query};
use crate::ExtractError;

/// The run's status object.
pub fn status_url(
    base_url: &str,
    version: ApiVersion,
    run_id: &RunId,
    proof: Option<&str>,
) -> String {
    let mut pairs = vec![("fields", "id,async_status,async_percent_completion")];
    pairs.extend(proof.map(|proof| ("appsecret_proof", proof)));
    format!("{base_url}/{version}/{}?{}", run_id.0, form_query(&pairs))
}

/// The first page of a completed run's rows.
pub fn results_url(
    base_url: &str,
    version: ApiVersion,
    run_id: &RunId,
    proof: Option<&str>,
) -> String {
    let mut pairs = vec![("limit", "500")];
    pairs.extend(proof.map(|proof| ("appsecret_proof", proof)));
    format!(
        "{base_url}/{version}/{}/insights?{}",
        run_id.0,
        form_query(&pairs)
    )
}

/// A report run's id: digits only, since it becomes a path segment of later requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunId(String);

impl std::fmt::Display for RunId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Reads the creation answer's `report_run_id` (a string or a number).
pub fn parse_created(body: &Value) -> Result<RunId, ExtractError> {
    let id = match body.get("report_run_id") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => {
            return Err(ExtractError::Malformed(
                "report run answer without `report_run_id`".into(),
            ));
        }
    };
    if id.is_empty() || id.len() > 40 || !id.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(ExtractError::Malformed(
            "`report_run_id` is not a numeric id".into(),
        ));
    }
    Ok(RunId(id))
}

/// Where a report run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum JobStatus {
    /// Not started, started or running; how far, in percent.
    Pending {
        status: String,
        percent: u32,
    },
    Completed,
    /// `Job Failed`: Meta could not build the report; a new run may succeed.
    Failed,
    /// `Job Skipped`: Meta dropped the run (too many queued, or it expired).
    Skipped,
}

/// Reads an `AdReportRun`.
pub fn parse_status(body: &Value) -> Result<JobStatus, ExtractError> {
    let status = body
        .get("async_status")
        .and_then(Value::as_str)
        .ok_or_else(|| ExtractError::Malformed("report run without `async_status`".into()))?;
    let percent = body
        .get("async_percent_completion")
        .and_then(|value| value.as_u64().or_else(|| value.as_str()?.parse().ok()))
        .map_or(0, |percent| u32::try_from(percent.min(100)).unwrap_or(100));
    Ok(match status {
        "Job Completed" => JobStatus::Completed,
        "Job Failed" => JobStatus::Failed,
        "Job Skipped" => JobStatus::Skipped,
        "Job Not Started" | "Job Started" | "Job Running" => JobStatus::Pending {
            status: status.to_string(),
            percent,
        },
        other => {
            return Err(ExtractError::Malformed(format!(
                "report run with an unknown `async_status` {:?}",
                shared::text::clip(other, 60)
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn a_run_id_is_digits_and_its_urls_carry_the_proof() {
        let id = parse_created(&json!({"report_run_id": "6120000000001"})).unwrap();
        assert_eq!(
            parse_created(&json!({"report_run_id": 42}))
                .unwrap()
                .to_string(),
            "42"
        );
        for bad in [
            json!({}),
            json!({"report_run_id": "1/../act_2"}),
            json!({"report_run_id": ""}),
        ] {
            assert!(parse_created(&bad).is_err(), "{bad}");
        }
        let version = ApiVersion::default();
        assert_eq!(
            status_url("http://x", version, &id, Some("p")),
            "http://x/v27.0/6120000000001?fields=id%2Casync_status%2Casync_percent_completion&appsecret_proof=p"
        );
        assert_eq!(
            results_url("http://x", version, &id, None),
            "http://x/v27.0/6120000000001/insights?limit=500"
        );
    }

    #[test]
    fn statuses_are_read() {
        assert_eq!(
            parse_status(&json!({"async_status": "Job Running", "async_percent_completion": 40}))
                .unwrap(),
            JobStatus::Pending {
                status: "Job Running".into(),
                percent: 40
            }
        );
        assert_eq!(
            parse_status(
                &json!({"async_status": "Job Completed", "async_percent_completion": 100})
            )
            .unwrap(),
            JobStatus::Completed
        );
        assert_eq!(
            parse_status(&json!({"async_status": "Job Failed"})).unwrap(),
            JobStatus::Failed
        );
        assert_eq!(
            parse_status(&json!({"async_status": "Job Skipped"})).unwrap(),
            JobStatus::Skipped
        );
        assert!(parse_status(&json!({"async_status": "Job Exploded"})).is_err());
        assert!(parse_status(&json!({})).is_err());
    }

    proptest! {
        #[test]
        fn any_answer_is_read_or_refused_without_a_panic(body in crate::strategies::json()) {
            let _ = parse_created(&body);
            let _ = parse_status(&body);
        }
    }
}
