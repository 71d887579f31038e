//! Running a Node script of `tests/sdk/` that drives Debian's Chromium (playwright-core) and
//! prints one JSON value, as the browser tests do.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Runs `node tests/sdk/<script> <args…>` from the repository's root within `deadline` and
/// returns what it printed, as JSON; panics with its output when it fails.
pub async fn run_script(script: &str, args: &[&str], deadline: Duration) -> Value {
    let output = tokio::time::timeout(
        deadline,
        tokio::process::Command::new("node")
            .arg(format!("tests/sdk/{script}"))
            .args(args)
            .current_dir(ROOT)
            // Under scripts/test-shifted-clock.sh every process runs under libfaketime, which
            // Chromium's crash handler cannot: the browser keeps the real clock (it only
            // renders what the shifted server says).
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} finished within {deadline:?}"))
    .expect("node runs (scripts/install-sdk-clients.sh installs it, the SDKs and Chromium)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("the script prints JSON")
}
