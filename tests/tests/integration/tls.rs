//! TLS with `sslmode=require`: verified against the configured roots, host name included.
//! The test command starts a cluster with a certificate for `localhost` signed by a test CA.

use std::time::Duration;

use secrecy::SecretString;
use shared::settings::DatabaseSettings;

fn settings(url: &str, ca_file: Option<String>) -> DatabaseSettings {
    DatabaseSettings {
        url: SecretString::from(url.to_string()),
        pool_size: 1,
        ca_file,
        connect_timeout: Duration::from_secs(5),
    }
}

/// The whole error chain: the pool reports "error performing TLS handshake" and the reason
/// rustls gave is in the sources below it.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn tls_env() -> (String, String) {
    let url = std::env::var("TEST_TLS_DATABASE_URL")
        .expect("TEST_TLS_DATABASE_URL is not set: run the tests with ./scripts/test.sh");
    let ca = std::env::var("TEST_TLS_CA_FILE")
        .expect("TEST_TLS_CA_FILE is not set: run the tests with ./scripts/test.sh");
    (url, ca)
}

#[tokio::test]
async fn sslmode_require_connects_over_verified_tls() {
    let (url, ca) = tls_env();
    assert!(url.contains("sslmode=require"));
    let pool = shared::db::connect(&settings(&url, Some(ca))).unwrap();
    let client = pool
        .get()
        .await
        .expect("TLS connection with the test CA trusted");
    let encrypted: bool = client
        .query_typed_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted);
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_refused() {
    let (url, _) = tls_env();
    // Only Supabase's root is trusted: the test server's certificate must not verify.
    let pool = shared::db::connect(&settings(&url, None)).unwrap();
    let error = chain(
        &pool
            .get()
            .await
            .expect_err("must not connect to an unverified server"),
    );
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn a_host_name_outside_the_certificate_is_refused() {
    let (url, ca) = tls_env();
    let pool =
        shared::db::connect(&settings(&url.replace("localhost", "127.0.0.1"), Some(ca))).unwrap();
    let error = chain(
        &pool
            .get()
            .await
            .expect_err("the certificate names localhost only"),
    );
    assert!(error.contains("not valid for name"), "{error}");
}
