//! The local stack as an attacker and a faulty client see it: every entry point is sent the
//! hostile catalogue of `integration_tests::attack`; none may answer 5xx for a fault of the
//! input, the process must go on serving, values the database refuses under a valid
//! signature are quarantined, and no stored error may carry a credential.

use integration_tests::attack;
use integration_tests::test_db::TestDb;

#[tokio::test]
async fn no_hostile_request_crashes_poisons_or_leaks() {
    let db = TestDb::empty().await;
    // The project's signing keys are reachable, as in production: a forged asymmetric token
    // is then the token's fault (401), not an outage (503).
    let auth = standins::supabase_auth::SupabaseAuth::start()
        .await
        .unwrap();
    let stack = local_stack::start(local_stack::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(db.url.clone()),
        agents: local_stack::AgentConfigs::local().with_jwt(shared::jwt::JwtConfig {
            supabase_url: auth.url(),
            ..shared::jwt::JwtConfig::local()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let target = attack::Target::local(&stack.url());
    let findings = attack::run(&target).await;
    assert!(findings.is_empty(), "{findings:#?}");
    let client = db.client().await;
    assert!(
        db.quarantined()
            .await
            .iter()
            .any(|(source, ..)| source == "stripe"),
        "a signed Stripe event the database refuses is kept, not retried"
    );
    let leaks = attack::leaked_credentials(&client, &attack::secrets_of(&target)).await;
    assert!(leaks.is_empty(), "{leaks:#?}");
    stack.stop().await;
}
