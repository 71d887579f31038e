//! The migration runner: idempotent, safe when two processes migrate at once, recorded where
//! the Supabase CLI looks, and leaving no table readable through Supabase's REST roles.

use integration_tests::test_db::TestDb;
use shared::db::migrations;

#[tokio::test]
async fn applies_everything_once_and_records_it_like_the_supabase_cli() {
    let db = TestDb::empty().await;
    let mut client = db.client().await;
    let first = migrations::apply(&mut client).await.unwrap();
    assert_eq!(first.len(), migrations::all().len());
    assert!(
        migrations::apply(&mut client).await.unwrap().is_empty(),
        "a second run applies nothing"
    );

    let rows = client
        .query_typed(
            "SELECT version, name FROM supabase_migrations.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let recorded: Vec<(String, String)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    let expected: Vec<(String, String)> = migrations::all()
        .iter()
        .map(|m| (m.version.to_string(), m.name.to_string()))
        .collect();
    assert_eq!(recorded, expected);
    assert_eq!(
        migrations::current_version(&client)
            .await
            .unwrap()
            .as_deref(),
        migrations::all().last().map(|m| m.version)
    );
}

#[tokio::test]
async fn concurrent_runners_apply_each_file_exactly_once() {
    let db = TestDb::empty().await;
    let mut a = db.client().await;
    let mut b = db.client().await;
    let (from_a, from_b) = tokio::join!(migrations::apply(&mut a), migrations::apply(&mut b));
    let total = from_a.unwrap().len() + from_b.unwrap().len();
    assert_eq!(total, migrations::all().len());
}

#[tokio::test]
async fn every_table_has_row_level_security() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let unprotected: Vec<String> = client
        .query_typed(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'supabase_migrations', 'auth')
                AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        unprotected.is_empty(),
        "tables without row level security: {unprotected:?}"
    );
}

#[tokio::test]
async fn a_role_like_supabase_anon_reads_nothing() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .batch_execute("INSERT INTO workspaces (name) VALUES ('acme')")
        .await
        .unwrap();
    let role = format!("anon_{}", &db.name[2..14]);
    // Everything inside one transaction (roles are transactional), with SET LOCAL, so the
    // test leaves nothing behind and stays valid behind a transaction pooler.
    let transaction = client.transaction().await.unwrap();
    transaction
        .batch_execute(&format!(
            "CREATE ROLE {role} NOLOGIN; GRANT SELECT ON workspaces TO {role}; SET LOCAL ROLE {role};"
        ))
        .await
        .unwrap();
    let visible: i64 = transaction
        .query_typed_one("SELECT count(*) FROM workspaces", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        visible, 0,
        "row level security must hide rows from API roles"
    );
    transaction.rollback().await.unwrap();
    let owner_sees: i64 = client
        .query_typed_one("SELECT count(*) FROM workspaces", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner_sees, 1);
}

#[tokio::test]
async fn an_unmigrated_database_has_no_version_and_errors_name_the_cause() {
    let db = TestDb::empty().await;
    let client = db.client().await;
    assert_eq!(migrations::current_version(&client).await.unwrap(), None);
    let error = client
        .query_typed("SELECT * FROM no_such_table", &[])
        .await
        .unwrap_err();
    let described = shared::db::DbError::Postgres {
        context: "read",
        source: error,
    }
    .to_string();
    assert!(
        described.contains("42P01") && described.contains("no_such_table"),
        "{described}"
    );
}
