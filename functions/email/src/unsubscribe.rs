//! Unsubscribing: the opaque link token and the write behind it.
//!
//! A token is the user's id followed by a truncated HMAC of it, base64url-encoded: opaque to
//! the reader (RFC 8058 asks for an opaque URI), unforgeable without the secret, and needing
//! no table of its own. Several secrets may verify (rotation); the first one signs. Links do
//! not expire: an unsubscribe link must work for as long as the email exists.
//!
//! A token comes from anyone's address bar, so [`TokenSigner::verify`] checks its length and
//! alphabet before decoding anything: whatever it accepts is 43 base64url characters, safe to
//! put back into a page or a URL as it is. The write runs under [`Budget::REQUEST`], so a row
//! lock held elsewhere becomes a quick, retryable failure instead of a page that hangs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use shared::db::{Budget, DbContext, DbError, Pool};
use shared::webhook::{constant_time_eq, hmac_sha256};
use tokio_postgres::types::Type;
use uuid::Uuid;

/// Bytes of the MAC kept in a token: 128 bits is beyond guessing.
const MAC_BYTES: usize = 16;
/// A token's length: a 16-byte user id and the MAC, in unpadded base64url.
pub const TOKEN_CHARS: usize = (16 + MAC_BYTES) * 4 / 3 + 1;
/// Separates these MACs from any other use of the same secret.
const PURPOSE: &[u8] = b"email-unsubscribe:";

/// Signs and checks unsubscribe tokens.
#[derive(Clone)]
pub struct TokenSigner {
    secrets: Vec<Vec<u8>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the unsubscribe link is incomplete or damaged")]
    Malformed,
    #[error("the unsubscribe link was not issued by us")]
    Forged,
}

impl TokenSigner {
    /// `secrets` must not be empty; the first signs.
    pub fn new(secrets: Vec<String>) -> Self {
        assert!(!secrets.is_empty(), "at least one unsubscribe secret");
        Self {
            secrets: secrets.into_iter().map(String::into_bytes).collect(),
        }
    }

    fn mac(secret: &[u8], user: Uuid) -> [u8; 32] {
        hmac_sha256(secret, &[PURPOSE, user.as_bytes()])
    }

    pub fn token(&self, user: Uuid) -> String {
        let mut bytes = user.as_bytes().to_vec();
        bytes.extend_from_slice(&Self::mac(&self.secrets[0], user)[..MAC_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The user a token names, if one of our secrets signed it.
    pub fn verify(&self, token: &str) -> Result<Uuid, TokenError> {
        let token = token.trim();
        let base64url = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
        if token.len() != TOKEN_CHARS || !token.bytes().all(base64url) {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        let (user, claimed) = bytes
            .split_first_chunk::<16>()
            .filter(|(_, claimed)| claimed.len() == MAC_BYTES)
            .ok_or(TokenError::Malformed)?;
        let user = Uuid::from_bytes(*user);
        self.secrets
            .iter()
            .any(|secret| constant_time_eq(&Self::mac(secret, user)[..MAC_BYTES], claimed))
            .then_some(user)
            .ok_or(TokenError::Forged)
    }
}

/// How someone unsubscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The link in the email, confirmed on our page.
    Link,
    /// A mailbox provider's RFC 8058 one-click POST.
    OneClick,
    /// A spam complaint.
    Complaint,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Link => "link",
            Method::OneClick => "one_click",
            Method::Complaint => "complaint",
        }
    }
}

/// Whether the user was already unsubscribed before this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribed {
    Now,
    Already,
    /// The token is genuine but the user no longer exists: nothing will be sent to them.
    UnknownUser,
}

/// Records the unsubscribe; calling it again changes nothing. The token names a member; a
/// link in an email sent before recipients were members names an audience person of
/// `users`, and still works.
pub async fn unsubscribe(pool: &Pool, id: Uuid, method: Method) -> Result<Unsubscribed, DbError> {
    let mut client = pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, Budget::REQUEST).await?;
    let row = transaction
        .query_typed_one(
            "WITH member AS (
                 INSERT INTO member_email_unsubscribes (member_id, method)
                 SELECT id, $2 FROM auth.users WHERE id = $1
                 ON CONFLICT (member_id) DO NOTHING
                 RETURNING 1
             ), audience AS (
                 INSERT INTO email_unsubscribes (user_id, method)
                 SELECT id, $2 FROM users WHERE id = $1
                 ON CONFLICT (user_id) DO NOTHING
                 RETURNING 1)
             SELECT EXISTS (SELECT 1 FROM member) OR EXISTS (SELECT 1 FROM audience),
                    EXISTS (SELECT 1 FROM auth.users WHERE id = $1)
                      OR EXISTS (SELECT 1 FROM users WHERE id = $1)",
            &[(&id, Type::UUID), (&method.as_str(), Type::TEXT)],
        )
        .await
        .context("record an unsubscribe")?;
    transaction
        .commit()
        .await
        .context("commit the unsubscribe")?;
    Ok(match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
        (true, _) => Unsubscribed::Now,
        (false, true) => Unsubscribed::Already,
        (false, false) => Unsubscribed::UnknownUser,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let signer = TokenSigner::new(vec!["first".into()]);
        let user = Uuid::from_u128(0x1234);
        let token = signer.token(user);
        assert_eq!(signer.verify(&token), Ok(user));
        assert!(!token.contains(&user.simple().to_string()), "opaque");
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[0] ^= 1;
        assert_eq!(
            signer.verify(&URL_SAFE_NO_PAD.encode(&bytes)),
            Err(TokenError::Forged),
            "another user's id under this MAC"
        );
        assert_eq!(signer.verify("abc"), Err(TokenError::Malformed));
        assert_eq!(signer.verify("!!!"), Err(TokenError::Malformed));
        assert_eq!(token.len(), TOKEN_CHARS);
        assert_eq!(
            signer.verify(&format!(" {token}\n")),
            Ok(user),
            "pasted with spaces"
        );
        let not_base64url = format!("{}+", &token[..TOKEN_CHARS - 1]);
        assert_eq!(signer.verify(&not_base64url), Err(TokenError::Malformed));
        assert_eq!(
            signer.verify(&format!("{token}A")),
            Err(TokenError::Malformed)
        );
        let other = TokenSigner::new(vec!["second".into()]);
        assert_eq!(other.verify(&token), Err(TokenError::Forged));
    }

    #[test]
    fn rotated_secrets_still_verify_old_links() {
        let old = TokenSigner::new(vec!["old".into()]);
        let rotated = TokenSigner::new(vec!["new".into(), "old".into()]);
        let user = Uuid::from_u128(9);
        assert_eq!(rotated.verify(&old.token(user)), Ok(user));
        assert_ne!(rotated.token(user), old.token(user));
    }
}
