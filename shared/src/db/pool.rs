//! The process-wide connection pool.
//!
//! Built once in `main` and borrowed by every invocation: a Lambda container handles one
//! event at a time, so one or two connections suffice, and opening a TLS connection per event
//! would cost more than the work. Connections are verified with an empty query before reuse
//! because a frozen Lambda's socket may have been dropped by the pooler meanwhile; the
//! `Clean` recycling method is avoided since it issues session-level resets on whatever
//! backend the pooler lends.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::ExposeSecret;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::DbError;
use crate::settings::DatabaseSettings;

/// "Supabase Root 2021 CA" (valid until 2031-04-26), the root of every Supabase Postgres
/// endpoint's certificate chain. It is not in public trust stores, hence bundled.
pub const SUPABASE_ROOT_CA: &[u8] = include_bytes!("../../certs/supabase-prod-ca-2021.crt");

/// Builds the pool. Nothing connects yet; the first checkout does.
///
/// TLS is used exactly when the URL says `sslmode=require`; rustls then verifies the chain
/// and the host name (verify-full in effect). Any other mode connects in plain text, so a
/// local server with TLS enabled is not accidentally negotiated against untrusted roots.
pub fn connect(settings: &DatabaseSettings) -> Result<Pool, DbError> {
    let mut config = tokio_postgres::Config::from_str(settings.url.expose_secret())
        .map_err(|error| DbError::Config(format!("DATABASE_URL: {error}")))?;
    if config.get_ssl_mode() != SslMode::Require {
        config.ssl_mode(SslMode::Disable);
    }
    config.connect_timeout(settings.connect_timeout);
    config.keepalives(true);
    if config.get_application_name().is_none() {
        config.application_name("growth-agents");
    }
    let extra_roots = match &settings.ca_file {
        Some(path) => std::fs::read(path)
            .map_err(|error| DbError::Config(format!("DATABASE_CA_FILE {path}: {error}")))?,
        None => Vec::new(),
    };
    let tls = tls_connector(&extra_roots)?;
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .build()
        .map_err(|error| DbError::Config(error.to_string()))
}

/// A rustls connector trusting Supabase's root plus any PEM certificates in `extra_pem`.
pub fn tls_connector(extra_pem: &[u8]) -> Result<MakeRustlsConnect, DbError> {
    let mut roots = RootCertStore::empty();
    for pem in [SUPABASE_ROOT_CA, extra_pem] {
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate =
                certificate.map_err(|error| DbError::Config(format!("CA certificate: {error}")))?;
            roots
                .add(certificate)
                .map_err(|error| DbError::Config(format!("CA certificate: {error}")))?;
        }
    }
    // The provider is named explicitly: with two crypto providers compiled in, rustls refuses
    // to pick a process default.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| DbError::Config(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supabase_root_is_trusted_by_default() {
        let mut count = 0;
        for certificate in CertificateDer::pem_slice_iter(SUPABASE_ROOT_CA) {
            certificate.unwrap();
            count += 1;
        }
        assert_eq!(count, 1);
        assert!(tls_connector(b"").is_ok());
    }

    #[test]
    fn garbage_ca_file_is_a_config_error() {
        let pem = b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert!(matches!(tls_connector(pem), Err(DbError::Config(_))));
    }
}
