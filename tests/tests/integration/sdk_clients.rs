//! The official SDK clients, pointed at the local stack as a user points them at PostHog or
//! Mixpanel: `posthog` (Python), `posthog-node` and `mixpanel` (Python) each send a few
//! events through their public API, and the events must land in `public.events` of the
//! workspace that owns the token.
//!
//! The clients are real packages, pinned in `tests/sdk/requirements.txt` and
//! `tests/sdk/package.json` and installed by `scripts/install-sdk-clients.sh`, which the test
//! command runs. The scripts in `tests/sdk/` exit non-zero whenever the SDK reports an
//! error, so a reply the SDK does not accept fails here even if rows were written. A missing
//! interpreter or package fails the test with the command that installs it; it never skips.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use integration_tests::test_db::TestDb;
use serde_json::Value;
use tokio_postgres::types::{ToSql, Type};

/// The workspace root, where the scripts are run from.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const INSTALL: &str = "run ./scripts/install-sdk-clients.sh (the test command does)";
/// How long an SDK script may take, and how long its rows may take to appear after it exits.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
const ROWS_TIMEOUT: Duration = Duration::from_secs(10);

/// One row of `public.events`, as the assertions need it.
#[derive(Debug)]
struct EventRow {
    workspace_id: uuid::Uuid,
    source: String,
    event: String,
    distinct_id: String,
    properties: Value,
    /// Seconds between the event's own timestamp and now.
    age_seconds: f64,
}

impl EventRow {
    fn run(&self) -> Option<&str> {
        self.properties["run"].as_str()
    }
}

/// A local stack on a fresh database, and the id that tags this test's events.
struct Fixture {
    db: TestDb,
    stack: local_stack::LocalStack,
    run: String,
}

impl Fixture {
    async fn start() -> Self {
        let db = TestDb::empty().await;
        let stack = local_stack::start(local_stack::Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: Some(db.url.clone()),
            agents: integration_tests::stack_agents("whsec_test", "metrics-test-token"),
            ..Default::default()
        })
        .await
        .expect("start the local stack");
        Self {
            db,
            stack,
            run: uuid::Uuid::new_v4().to_string(),
        }
    }

    fn host(&self) -> String {
        self.stack.url()
    }

    /// The distinct id every script uses for its events.
    fn distinct_id(&self) -> String {
        format!("user-{}", self.run)
    }

    /// Runs `program script` from the workspace root against the stack and checks that the
    /// SDK reported success.
    async fn run_script(&self, program: &str, script: &str, expected_sent: usize) {
        assert!(
            Path::new(ROOT).join(script).is_file(),
            "{script} is missing from the work tree"
        );
        let mut command = tokio::process::Command::new(program);
        command
            .arg(script)
            .current_dir(ROOT)
            .env("SDK_HOST", self.host())
            .env("SDK_RUN_ID", &self.run)
            // The SDKs read these; a developer's own settings must not change the wire format.
            .env_remove("POSTHOG_CAPTURE_MODE")
            .env_remove("POSTHOG_CAPTURE_COMPRESSION")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = match tokio::time::timeout(SCRIPT_TIMEOUT, command.output()).await {
            Err(_) => panic!("`{program} {script}` did not finish in {SCRIPT_TIMEOUT:?}"),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {
                panic!("`{program}` is not installed: {INSTALL}")
            }
            Ok(Err(error)) => panic!("could not run `{program} {script}`: {error}"),
            Ok(Ok(output)) => output,
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "`{program} {script}` failed ({}); if an SDK is missing, {INSTALL}\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            output.status
        );
        assert!(
            stdout.contains(&format!("sent {expected_sent} events")),
            "`{program} {script}` should report `sent {expected_sent} events`\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        );
    }

    /// This run's rows, waiting up to [`ROWS_TIMEOUT`] for at least `expected` of them.
    ///
    /// Rows are found by distinct id (unique to the run), not by `properties->>'run'`:
    /// person-property events carry the run only inside `$set`.
    async fn rows(&self, expected: usize) -> Vec<EventRow> {
        let client = self.db.client().await;
        let distinct_id = self.distinct_id();
        let deadline = tokio::time::Instant::now() + ROWS_TIMEOUT;
        loop {
            let rows = client
                .query_typed(
                    "SELECT workspace_id, source, event, distinct_id, properties,
                            extract(epoch FROM now() - timestamp)::float8 AS age_seconds
                       FROM public.events
                      WHERE distinct_id = $1
                      ORDER BY timestamp, event",
                    &[(&distinct_id as &(dyn ToSql + Sync), Type::TEXT)],
                )
                .await
                .expect("query public.events");
            let rows: Vec<EventRow> = rows
                .iter()
                .map(|row| EventRow {
                    workspace_id: row.get("workspace_id"),
                    source: row.get("source"),
                    event: row.get("event"),
                    distinct_id: row.get("distinct_id"),
                    properties: row.get("properties"),
                    age_seconds: row.get("age_seconds"),
                })
                .collect();
            if rows.len() >= expected || tokio::time::Instant::now() >= deadline {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The workspace that owns `token` (the local stack's default workspace).
    async fn workspace_of(&self, token: &str) -> uuid::Uuid {
        self.db
            .client()
            .await
            .query_typed_one(
                "SELECT workspace_id FROM public.workspace_tokens WHERE token = $1",
                &[(&token as &(dyn ToSql + Sync), Type::TEXT)],
            )
            .await
            .unwrap_or_else(|error| panic!("the local stack should create token {token}: {error}"))
            .get(0)
    }

    async fn stop(self) {
        self.stack.stop().await;
    }
}

/// Checks what both PostHog SDKs must produce: two `sdk_test` captures with the run and the
/// SDK's `$lib`, and one person-property event carrying the email.
fn assert_posthog_rows(fixture: &Fixture, rows: &[EventRow], workspace: uuid::Uuid, lib: &str) {
    assert_eq!(rows.len(), 3, "expected 3 events from {lib}, got {rows:#?}");
    for row in rows {
        assert_eq!(row.source, "posthog", "{row:#?}");
        assert_eq!(row.workspace_id, workspace, "{row:#?}");
        assert_eq!(row.distinct_id, fixture.distinct_id(), "{row:#?}");
        assert_eq!(row.properties["$lib"], lib, "{row:#?}");
        assert!(
            row.age_seconds.abs() < 3600.0,
            "timestamp is the SDK's: {row:#?}"
        );
    }
    let captures: Vec<&EventRow> = rows.iter().filter(|row| row.event == "sdk_test").collect();
    assert_eq!(captures.len(), 2, "two sdk_test captures: {rows:#?}");
    for row in &captures {
        assert_eq!(row.run(), Some(fixture.run.as_str()), "{row:#?}");
    }
    let mut steps: Vec<i64> = captures
        .iter()
        .map(|row| row.properties["step"].as_i64().expect("numeric step"))
        .collect();
    steps.sort_unstable();
    assert_eq!(steps, [1, 2], "both captures, once each: {rows:#?}");

    let identities: Vec<&EventRow> = rows
        .iter()
        .filter(|row| row.event == "$identify" || row.event == "$set")
        .collect();
    assert_eq!(identities.len(), 1, "one $identify/$set event: {rows:#?}");
    let email = format!("{}@example.com", fixture.distinct_id());
    let properties = &identities[0].properties;
    assert!(
        properties["$set"]["email"] == email.as_str() || properties["email"] == email.as_str(),
        "the person's email is kept with the event: {properties:#}"
    );
}

#[tokio::test]
async fn posthog_python_sdk_events_land_in_events() {
    let fixture = Fixture::start().await;
    let workspace = fixture.workspace_of("phc_local").await;
    fixture
        .run_script("python3", "tests/sdk/posthog_python.py", 3)
        .await;
    let rows = fixture.rows(3).await;
    assert_posthog_rows(&fixture, &rows, workspace, "posthog-python");
    // posthog-python sends `$set` at the top level of the message, not in `properties`.
    assert!(rows.iter().any(|row| row.event == "$set"), "{rows:#?}");
    fixture.stop().await;
}

#[tokio::test]
async fn posthog_node_sdk_events_land_in_events() {
    let fixture = Fixture::start().await;
    let workspace = fixture.workspace_of("phc_local").await;
    fixture
        .run_script("node", "tests/sdk/posthog_node.mjs", 3)
        .await;
    let rows = fixture.rows(3).await;
    assert_posthog_rows(&fixture, &rows, workspace, "posthog-node");
    assert!(rows.iter().any(|row| row.event == "$identify"), "{rows:#?}");
    fixture.stop().await;
}

#[tokio::test]
async fn mixpanel_python_sdk_events_land_in_events() {
    let fixture = Fixture::start().await;
    let workspace = fixture.workspace_of("mp_local").await;
    fixture
        .run_script("python3", "tests/sdk/mixpanel_python.py", 4)
        .await;
    let rows = fixture.rows(4).await;
    assert_eq!(
        rows.len(),
        4,
        "expected 4 events from mixpanel, got {rows:#?}"
    );
    for row in &rows {
        assert_eq!(row.source, "mixpanel", "{row:#?}");
        assert_eq!(row.workspace_id, workspace, "{row:#?}");
        assert_eq!(row.distinct_id, fixture.distinct_id(), "{row:#?}");
        assert_eq!(row.run(), Some(fixture.run.as_str()), "{row:#?}");
        assert_eq!(row.properties["mp_lib"], "python", "{row:#?}");
    }

    // Three tracked now: one alone, two in one buffered batch.
    let tracked: Vec<&EventRow> = rows.iter().filter(|row| row.event == "sdk_test").collect();
    assert_eq!(tracked.len(), 3, "{rows:#?}");
    let mut steps: Vec<i64> = tracked
        .iter()
        .map(|row| row.properties["step"].as_i64().expect("numeric step"))
        .collect();
    steps.sort_unstable();
    assert_eq!(
        steps,
        [1, 2, 3],
        "every tracked event, once each: {rows:#?}"
    );
    for row in &tracked {
        assert!(
            row.age_seconds.abs() < 3600.0,
            "`time` is the event's: {row:#?}"
        );
    }

    // One imported a week ago: `time` (seconds) becomes the timestamp.
    let imported: Vec<&EventRow> = rows
        .iter()
        .filter(|row| row.event == "sdk_import")
        .collect();
    assert_eq!(imported.len(), 1, "{rows:#?}");
    let week = 7.0 * 24.0 * 3600.0;
    assert!(
        (imported[0].age_seconds - week).abs() < 3600.0,
        "the imported event keeps its own time: {:#?}",
        imported[0]
    );
    fixture.stop().await;
}
