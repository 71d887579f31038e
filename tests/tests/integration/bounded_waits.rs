//! Bounded waits, through the local stack on a real socket: a lock held elsewhere makes the
//! requests that need it answer 503 with `Retry-After` within their budget — and leaves every
//! other agent's requests as fast as ever.

use std::time::{Duration, Instant};

use integration_tests::test_db::TestDb;
use serde_json::json;

const STRIPE_SECRET: &str = "whsec_bounded";

#[tokio::test]
async fn a_held_lock_slows_only_the_requests_that_need_it() {
    let db = TestDb::empty().await;
    let clock = shared::clock::Clock::system();
    let stack = local_stack::start(local_stack::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(db.url.clone()),
        agents: local_stack::AgentConfigs {
            billing: billing::config::Config {
                webhook_secrets: vec![STRIPE_SECRET.into()],
            },
            ..local_stack::AgentConfigs::local()
        },
        clock: clock.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let url = stack.url();

    // A transaction elsewhere holds the lock the billing agent takes for cus_1, as a stuck
    // operator session or a frozen Lambda would.
    let mut holder = db.client().await;
    let held = holder.transaction().await.unwrap();
    held.batch_execute("SELECT pg_advisory_xact_lock(hashtextextended('stripe:cus_1', 0))")
        .await
        .unwrap();

    let http = reqwest::Client::new();
    let stripe = |id: usize| {
        let body = json!({"id": format!("evt_{id}"), "object": "event", "api_version": "2024-06-20",
            "created": clock.now().timestamp(), "livemode": false, "type": "customer.updated",
            "data": {"object": {"id": "cus_1", "object": "customer", "email": format!("{id}@x.io")}}})
        .to_string();
        let signature =
            shared::webhook::sign_stripe(body.as_bytes(), STRIPE_SECRET, clock.now().timestamp());
        let request = http
            .post(format!("{url}/webhooks/stripe"))
            .header("stripe-signature", signature)
            .body(body);
        async move {
            let started = Instant::now();
            let response = request.send().await.unwrap();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_string());
            (response.status().as_u16(), retry_after, started.elapsed())
        }
    };
    let deliveries: Vec<_> = (0..16).map(|id| tokio::spawn(stripe(id))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile, capture requests of the analytics agent.
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        let batch = json!({"api_key": local_stack::LOCAL_POSTHOG_TOKEN, "batch": [{
            "event": "$pageview", "distinct_id": format!("u{round}"),
            "uuid": uuid::Uuid::new_v4().to_string(), "timestamp": clock.now().to_rfc3339()}]});
        let started = Instant::now();
        let response = http
            .post(format!("{url}/batch/"))
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        slowest = slowest.max(started.elapsed());
    }
    println!("slowest capture request while billing waited: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "capture must not wait for billing's lock: {slowest:?}"
    );

    for delivery in deliveries {
        let (status, retry_after, elapsed) =
            tokio::time::timeout(Duration::from_secs(40), delivery)
                .await
                .expect("a delivery waited past every budget")
                .unwrap();
        assert_eq!(status, 503, "a lock timeout is transient: Stripe retries");
        assert!(retry_after.is_some(), "503 says when to retry");
        assert!(
            elapsed < Duration::from_secs(27),
            "answered before API Gateway's 29 s: {elapsed:?}"
        );
    }
    held.rollback().await.unwrap();
    assert_eq!(
        db.client()
            .await
            .query_typed_one("SELECT count(*) FROM stripe.events", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0,
        "nothing half-written"
    );
    let (status, _, _) = stripe(0).await;
    assert_eq!(status, 200, "Stripe's retry succeeds once the lock is gone");
    stack.stop().await;
}
