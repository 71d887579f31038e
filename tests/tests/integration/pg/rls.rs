//! Row level security as the frontend meets it: PostgREST switches to the `authenticated`
//! (or `anon`) role and puts the verified claims in `request.jwt.claims` for the transaction,
//! and these tests do exactly that. For every table of `public` — each is classified below, and
//! a table left out fails the catalogue test — a member of workspace A sees A's rows and none
//! of B's, a signed-in non-member sees nothing, `anon` is refused, and no client writes.

use integration_tests::test_db::TestDb;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// Tables a member reads, with the expression giving the workspace a row belongs to. Child
/// tables name it through their parent, so a child row whose parent the member cannot see
/// shows as `NULL` and fails the test rather than passing unnoticed.
const MEMBER_READABLE: &[(&str, &str)] = &[
    ("workspaces", "id"),
    ("workspace_members", "workspace_id"),
    ("connections", "workspace_id"),
    ("ad_insights", "workspace_id"),
    ("daily_ad_metrics", "workspace_id"),
    ("daily_metrics", "workspace_id"),
    ("events", "workspace_id"),
    ("users", "workspace_id"),
    ("orders", "workspace_id"),
    ("suggestions", "workspace_id"),
    ("email_sends", "workspace_id"),
    (
        "suggestion_feedback",
        "(SELECT s.workspace_id FROM suggestions s WHERE s.id = t.suggestion_id)",
    ),
    (
        "etl_runs",
        "(SELECT c.workspace_id FROM connections c WHERE c.id = t.connection_id)",
    ),
    (
        "order_refunds",
        "(SELECT o.workspace_id FROM orders o WHERE o.shop = t.shop AND o.order_id = t.order_id)",
    ),
];

/// Tables about the running system or holding credentials: no client role reads them.
const SERVICE_ONLY: &[&str] = &[
    "agent_runs",
    "leases",
    "outbox",
    "quarantine",
    "queue_dead_letters",
    "queue_dedup",
    "queue_messages",
    "models",
    "email_events",
    "email_suppressions",
    "email_unsubscribes",
    "member_email_unsubscribes",
    "shopify_compliance_requests",
    "shopify_webhook_deliveries",
    "workspace_tokens",
];

/// One row in every member-readable table for a workspace whose owner is `member`; `n` keeps
/// the natural keys of two workspaces apart.
async fn seed_workspace(client: &tokio_postgres::Client, member: Uuid, n: u32) -> Uuid {
    let workspace = Uuid::new_v4();
    let shop = format!("shop-{n}.myshopify.com");
    client
        .batch_execute(&format!(
            "INSERT INTO auth.users (id, email, email_confirmed_at, created_at)
                  VALUES ('{member}', 'owner{n}@example.com', now(), now());
             INSERT INTO workspaces (id, name) VALUES ('{workspace}', 'W{n}');
             INSERT INTO workspace_members (workspace_id, user_id, role)
                  VALUES ('{workspace}', '{member}', 'owner');
             INSERT INTO connections (id, workspace_id, platform, external_account_id)
                  VALUES ('{workspace}', '{workspace}', 'meta', 'act_{n}');
             INSERT INTO etl_runs (connection_id, platform, account_id, window_start, window_end, status)
                  VALUES ('{workspace}', 'meta', 'act_{n}', '2026-12-01', '2026-12-01', 'ok');
             INSERT INTO ad_insights (platform, account_id, level_id, date, workspace_id, spend)
                  VALUES ('meta', 'act_{n}', 'ad_{n}', '2026-12-01', '{workspace}', 1);
             INSERT INTO daily_ad_metrics (workspace_id, date, platform, spend, impressions, clicks,
                                           conversions, conversion_value)
                  VALUES ('{workspace}', '2026-12-01', 'meta', 1, 1, 1, 1, 1);
             INSERT INTO daily_metrics (workspace_id, date, currency, spend, impressions, clicks,
                    conversions, conversion_value, orders, gross_revenue, refunds, net_revenue,
                    new_customers, subscription_revenue, mrr, new_mrr, expansion_mrr,
                    contraction_mrr, churned_mrr, reactivation_mrr, active_subscriptions, revenue,
                    events, dau, wau, mau, signups)
                  VALUES ('{workspace}', '2026-12-01', 'USD', 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0,
                          0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1);
             INSERT INTO events (id, workspace_id, source, distinct_id, event, timestamp)
                  VALUES (gen_random_uuid(), '{workspace}', 'posthog', 'visitor', 'pageview', now());
             INSERT INTO users (id, workspace_id, distinct_id, email)
                  VALUES ('{workspace}', '{workspace}', 'visitor', 'visitor{n}@example.com');
             INSERT INTO orders (shop, order_id, workspace_id, created_at, updated_at, currency, raw, source)
                  VALUES ('{shop}', {n}, '{workspace}', now(), now(), 'USD', '{{}}', 'poll');
             INSERT INTO order_refunds (shop, refund_id, order_id, amount, raw, source)
                  VALUES ('{shop}', {n}, {n}, 1, '{{}}', 'poll');
             INSERT INTO suggestions (id, workspace_id, kind, target, explanation, expected_impact,
                                      features, score, model_version)
                  VALUES ('{workspace}', '{workspace}', 'pause_ad', 'ad_{n}', 'why', 1, '{{}}', 0.5, 'v0');
             INSERT INTO suggestion_feedback (suggestion_id, user_id, verdict)
                  VALUES ('{workspace}', '{member}', 'accepted');
             INSERT INTO email_sends (workspace_id, member_id, campaign, status, due_at)
                  VALUES ('{workspace}', '{member}', 'd1', 'sent', now());"
        ))
        .await
        .expect("seed a workspace");
    workspace
}

/// Who is asking, as PostgREST would set it up for the request.
enum Caller {
    Member(Uuid),
    Anon,
}

impl Caller {
    fn set_up(&self) -> String {
        match self {
            Caller::Member(id) => format!(
                "SET LOCAL ROLE authenticated;
                 SELECT set_config('request.jwt.claims',
                        '{{\"sub\":\"{id}\",\"role\":\"authenticated\",\"aud\":\"authenticated\"}}', true);"
            ),
            Caller::Anon => "SET LOCAL ROLE anon;
                 SELECT set_config('request.jwt.claims', '{\"role\":\"anon\"}', true);"
                .into(),
        }
    }
}

/// What `caller` gets from `sql`: the rows' first column, or the SQLSTATE of the refusal.
async fn run_as(
    client: &mut tokio_postgres::Client,
    caller: &Caller,
    sql: &str,
) -> Result<Vec<Option<Uuid>>, SqlState> {
    let transaction = client.transaction().await.unwrap();
    transaction.batch_execute(&caller.set_up()).await.unwrap();
    let answer = transaction.query(sql, &[]).await;
    transaction.rollback().await.unwrap();
    match answer {
        Ok(rows) => Ok(rows.iter().map(|row| row.get(0)).collect()),
        Err(error) => Err(error.code().cloned().expect("a database error")),
    }
}

async fn workspaces_seen(
    client: &mut tokio_postgres::Client,
    caller: &Caller,
    table: &str,
    key: &str,
) -> Result<Vec<Option<Uuid>>, SqlState> {
    run_as(
        client,
        caller,
        &format!("SELECT DISTINCT {key} FROM {table} t"),
    )
    .await
}

#[tokio::test]
async fn every_public_table_is_classified_and_anon_holds_no_privilege() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let tables: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut classified: Vec<String> = MEMBER_READABLE
        .iter()
        .map(|(table, _)| table.to_string())
        .chain(SERVICE_ONLY.iter().map(|table| table.to_string()))
        .collect();
    classified.sort();
    assert_eq!(
        tables, classified,
        "a new table must be classified here, and given a policy if members read it"
    );
    for table in &tables {
        let rls: bool = client
            .query_one(
                "SELECT relrowsecurity FROM pg_class WHERE oid = ('public.' || $1)::regclass",
                &[table],
            )
            .await
            .unwrap()
            .get(0);
        assert!(rls, "{table} has row level security enabled");
    }
    let anon_grants: Vec<String> = client
        .query(
            "SELECT table_name || ': ' || privilege_type FROM information_schema.role_table_grants
              WHERE grantee = 'anon' AND table_schema IN ('public', 'stripe')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        anon_grants,
        Vec::<String>::new(),
        "anon holds no table privilege"
    );
}

#[tokio::test]
async fn a_member_reads_exactly_their_workspaces_rows() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let (ada, bob, eve) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let a = seed_workspace(&client, ada, 1).await;
    let b = seed_workspace(&client, bob, 2).await;
    client
        .execute(
            "INSERT INTO auth.users (id, email, created_at) VALUES ($1, 'eve@example.com', now())",
            &[&eve],
        )
        .await
        .unwrap();
    for (table, key) in MEMBER_READABLE {
        for (who, caller, expected) in [
            ("a member of A", Caller::Member(ada), vec![Some(a)]),
            ("a member of B", Caller::Member(bob), vec![Some(b)]),
            ("a signed-in non-member", Caller::Member(eve), vec![]),
        ] {
            assert_eq!(
                workspaces_seen(&mut client, &caller, table, key).await,
                Ok(expected),
                "what {who} reads of {table}"
            );
        }
        assert_eq!(
            workspaces_seen(&mut client, &Caller::Anon, table, key).await,
            Err(SqlState::INSUFFICIENT_PRIVILEGE),
            "anon reads nothing of {table}"
        );
    }
}

#[tokio::test]
async fn no_client_reads_the_service_tables_or_writes_any() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let ada = Uuid::new_v4();
    seed_workspace(&client, ada, 1).await;
    for caller in [Caller::Member(ada), Caller::Anon] {
        for table in SERVICE_ONLY {
            assert_eq!(
                run_as(
                    &mut client,
                    &caller,
                    &format!("SELECT NULL::uuid FROM {table}")
                )
                .await,
                Err(SqlState::INSUFFICIENT_PRIVILEGE),
                "{table} is refused"
            );
        }
        for (table, _) in MEMBER_READABLE {
            for write in [
                format!("INSERT INTO {table} DEFAULT VALUES RETURNING NULL::uuid"),
                format!("DELETE FROM {table} RETURNING NULL::uuid"),
                format!("TRUNCATE {table} CASCADE"),
            ] {
                assert_eq!(
                    run_as(&mut client, &caller, &write).await,
                    Err(SqlState::INSUFFICIENT_PRIVILEGE),
                    "{write} is refused"
                );
            }
        }
    }
    // The credentials of a connection stay on the server, while its description is readable.
    assert_eq!(
        run_as(
            &mut client,
            &Caller::Member(ada),
            "SELECT NULL::uuid FROM connections WHERE access_token IS NULL"
        )
        .await,
        Err(SqlState::INSUFFICIENT_PRIVILEGE)
    );
}

#[tokio::test]
async fn a_members_signup_is_in_the_outbox_in_the_same_transaction() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let (kept, undone) = (Uuid::new_v4(), Uuid::new_v4());
    for (id, commit) in [(kept, true), (undone, false)] {
        let transaction = client.transaction().await.unwrap();
        transaction
            .execute(
                "INSERT INTO auth.users (id, email, created_at) VALUES ($1, 'm@example.com', now())",
                &[&id],
            )
            .await
            .unwrap();
        if commit {
            transaction.commit().await.unwrap();
        } else {
            transaction.rollback().await.unwrap();
        }
    }
    let rows = client
        .query("SELECT queue, dedup_id, body FROM outbox", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only the committed signup is announced");
    assert_eq!(rows[0].get::<_, String>(0), "email.fifo");
    assert_eq!(rows[0].get::<_, String>(1), format!("member-signup:{kept}"));
    let body: shared::messages::MemberSignedUp =
        serde_json::from_str(&rows[0].get::<_, String>(2)).expect("the message type reads it");
    assert_eq!(body.member_id, kept);
}

#[tokio::test]
async fn the_supabase_seed_gives_a_local_member_their_workspace() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let seed = include_str!("../../../../supabase/seed.sql");
    // `supabase db reset` may run it on a database that has it already.
    for _ in 0..2 {
        client.batch_execute(seed).await.expect("the seed applies");
    }
    let owner: Uuid = client
        .query_one(
            "SELECT id FROM auth.users WHERE email = 'owner@example.com'
                AND encrypted_password = extensions.crypt('local-password', encrypted_password)",
            &[],
        )
        .await
        .expect("the seeded member signs in with the documented password")
        .get(0);
    let seen = workspaces_seen(&mut client, &Caller::Member(owner), "workspaces", "id").await;
    assert_eq!(seen.map(|ids| ids.len()), Ok(1), "their one workspace");
}
