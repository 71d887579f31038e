//! `attack <base-url>` — sends the hostile-request catalogue ([`integration_tests::attack`])
//! to a running local stack started with its default secrets (for example
//! `cargo run --release -p local-stack`), then, with `DATABASE_URL` set to the stack's
//! database, looks for credentials in every stored error. Exits 1 on any finding.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base_url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let target = integration_tests::attack::Target::local(&base_url);
    let attacks =
        integration_tests::attack::catalogue(&target, chrono::Utc::now().timestamp()).len();
    let findings = integration_tests::attack::run(&target).await;
    for finding in &findings {
        println!("FINDING {}: {}", finding.attack, finding.problem);
    }
    let mut leaks = Vec::new();
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        leaks = integration_tests::attack::leaked_credentials(
            &client,
            &integration_tests::attack::secrets_of(&target),
        )
        .await;
        for leak in &leaks {
            println!("LEAK {leak}");
        }
    }
    println!(
        "{attacks} hostile requests: {} findings, {} stored errors with credentials",
        findings.len(),
        leaks.len()
    );
    if findings.is_empty() && leaks.is_empty() {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
