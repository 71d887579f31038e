//! Platform access tokens at rest: sealed, bound to their connection, opened only to call the
//! platform.
//!
//! `connections.access_token_sealed` holds `keys.seal(token, "connections.access_token:{id}")`
//! ([`shared::crypto::Keys`]): an AES-256-GCM envelope whose context is the connection's id,
//! so a sealed token copied onto another connection's row does not open there, and a dump of
//! the table gives no token without the key-encryption key.
//!
//! * [`store`] is the one way a token is written (the demo, and the OAuth flow later): it
//!   seals the token and clears any plaintext.
//! * [`open`] turns a row's token columns into the token. A row written before tokens were
//!   sealed (or by a test) still has `access_token` in plaintext: the first reader seals it
//!   and clears the plaintext in one guarded `UPDATE`, so two readers racing do not both
//!   rewrite it, and a token stored meanwhile by [`store`] is never overwritten by the stale
//!   one — the loser reads the row again.

use secrecy::SecretString;
use shared::crypto::{CryptoError, Keys};
use shared::db::{DbContext, DbError};
use shared::retry::{RetryClass, Retryable};
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;
use uuid::Uuid;

/// How often [`open`] reads the row again when another writer changed it under it.
const ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The sealed token does not open here: another key set, a row it was copied from, or
    /// tampered bytes. Permanent: the same bytes never open; the token must be stored anew.
    #[error("the stored access token of connection {connection} does not open: {source}")]
    Sealed {
        connection: Uuid,
        #[source]
        source: CryptoError,
    },
    /// Sealing failed (the system's random source). Transient.
    #[error("the access token of connection {connection} could not be sealed: {source}")]
    Seal {
        connection: Uuid,
        #[source]
        source: CryptoError,
    },
    /// The row kept changing while it was read; the next attempt will find it settled.
    #[error("the access token of connection {0} changed while it was read")]
    Contended(Uuid),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Retryable for TokenError {
    fn retry_class(&self) -> RetryClass {
        match self {
            TokenError::Sealed { .. } => RetryClass::Permanent,
            TokenError::Seal { .. } | TokenError::Contended(_) => RetryClass::transient(),
            TokenError::Db(error) => error.retry_class(),
        }
    }
}

/// The authenticated context of a connection's sealed token.
pub fn context(connection: Uuid) -> String {
    format!("connections.access_token:{connection}")
}

/// A row's two token columns, as read.
#[derive(Debug, Default)]
pub struct StoredToken {
    /// `access_token`: only on rows written before tokens were sealed.
    pub plaintext: Option<String>,
    /// `access_token_sealed`.
    pub sealed: Option<Vec<u8>>,
}

/// Seals `token` for `connection` and stores it, clearing any plaintext; a connection that
/// waited for a new token (`needs_reauth`) becomes active again. False when the connection
/// does not exist.
pub async fn store<C: GenericClient>(
    client: &C,
    keys: &Keys,
    connection: Uuid,
    token: &str,
) -> Result<bool, TokenError> {
    let sealed = keys
        .seal(token, &context(connection))
        .map_err(|source| TokenError::Seal { connection, source })?;
    let updated = client
        .execute_typed(
            "UPDATE connections SET access_token_sealed = $2, access_token = NULL, updated_at = now(),
                    status = CASE WHEN status = 'needs_reauth' THEN 'active' ELSE status END,
                    status_reason = CASE WHEN status = 'needs_reauth' THEN NULL ELSE status_reason END
              WHERE id = $1",
            &[(&connection, Type::UUID), (&sealed, Type::BYTEA)],
        )
        .await
        .context("store a sealed access token")?;
    Ok(updated == 1)
}

/// The token of `connection` from its `stored` columns, sealing a plaintext one on the way;
/// `None` when the connection has no token (or no longer exists).
pub async fn open<C: GenericClient>(
    client: &C,
    keys: &Keys,
    connection: Uuid,
    stored: StoredToken,
) -> Result<Option<SecretString>, TokenError> {
    let context = context(connection);
    let mut stored = stored;
    for _ in 0..ATTEMPTS {
        match (stored.sealed.take(), stored.plaintext.take()) {
            (Some(sealed), leftover) => {
                let token = keys
                    .open(&sealed, &context)
                    .map_err(|source| TokenError::Sealed { connection, source })?;
                if leftover.is_some() {
                    // Sealed and plaintext both: a writer that set the plaintext by hand.
                    client
                        .execute_typed(
                            "UPDATE connections SET access_token = NULL
                              WHERE id = $1 AND access_token_sealed = $2",
                            &[(&connection, Type::UUID), (&sealed, Type::BYTEA)],
                        )
                        .await
                        .context("clear a plaintext access token")?;
                }
                return Ok(Some(token));
            }
            (None, Some(plaintext)) => {
                let sealed = keys
                    .seal(&plaintext, &context)
                    .map_err(|source| TokenError::Seal { connection, source })?;
                let sealed_here = client
                    .execute_typed(
                        "UPDATE connections SET access_token_sealed = $2, access_token = NULL
                          WHERE id = $1 AND access_token_sealed IS NULL AND access_token = $3",
                        &[
                            (&connection, Type::UUID),
                            (&sealed, Type::BYTEA),
                            (&plaintext, Type::TEXT),
                        ],
                    )
                    .await
                    .context("seal a plaintext access token")?;
                if sealed_here == 1 {
                    return Ok(Some(SecretString::from(plaintext)));
                }
                // Another reader sealed it, or a new token was stored: read what is there now.
                stored = reread(client, connection).await?;
            }
            (None, None) => return Ok(None),
        }
    }
    Err(TokenError::Contended(connection))
}

async fn reread<C: GenericClient>(client: &C, connection: Uuid) -> Result<StoredToken, DbError> {
    let row = client
        .query_typed_opt(
            "SELECT access_token, access_token_sealed FROM connections WHERE id = $1",
            &[(&connection, Type::UUID)],
        )
        .await
        .context("read an access token again")?;
    Ok(row.map_or_else(StoredToken::default, |row| StoredToken {
        plaintext: row.get(0),
        sealed: row.get(1),
    }))
}
