//! Secrets at rest: platform tokens sealed, webhook secrets hashed.
//!
//! * [`Keys::seal`] / [`Keys::open`] — an AES-256-GCM envelope. Each value gets its own random
//!   data key; the data key is wrapped by the current key-encryption key (KEK) and stored
//!   beside the ciphertext with the KEK's id. The caller's `context` (for example the
//!   connection's id) is authenticated with both, so a sealed token copied onto another row
//!   does not open there. Rotating means putting a new KEK first in `ENCRYPTION_KEYS`:
//!   new values use it, old ones still open under theirs. In AWS the KEKs are a Secrets
//!   Manager secret; a KMS key could wrap the data keys instead without changing the
//!   envelope's shape.
//! * [`Keys::hash`] — a keyed hash (HMAC-SHA256 under a key derived from each KEK) for
//!   secrets we only ever compare (a PostHog webhook secret, a Mixpanel API secret): the
//!   database holds `hmac-sha256:<hex>`, which says nothing without the key, and a lookup
//!   asks for any of [`Keys::hash_candidates`], one per KEK.
//!
//! Envelope layout, version 1:
//! `01 | kid length | kid | wrap nonce (12) | wrapped data key (32 + 16) | nonce (12) | ciphertext + tag (16)`.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretSlice, SecretString};

use crate::settings::{Env, SettingsError};

const VERSION: u8 = 1;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Prefix of a stored keyed hash.
pub const HASH_PREFIX: &str = "hmac-sha256:";

/// Why a sealed value did not open. Permanent: the same bytes never open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value names key {0:?}, which is not configured")]
    UnknownKey(String),
    #[error("sealed value does not open: wrong key or context, or tampered")]
    Rejected,
    #[error("the system random source failed")]
    Random,
}

struct Kek {
    id: String,
    key: SecretSlice<u8>,
}

/// The key-encryption keys: the current one, which seals and hashes new values, and older
/// ones that still open and match what was sealed or hashed under them. Never empty, by
/// construction.
pub struct Keys {
    current: Kek,
    older: Vec<Kek>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.all().map(|kek| kek.id.as_str()).collect();
        f.debug_struct("Keys").field("ids", &ids).finish()
    }
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Malformed)
}

fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}

fn seal_with(
    key: &[u8],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut sealed = plaintext.to_vec();
    aead_key(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut sealed,
        )
        .map_err(|_| CryptoError::Rejected)?;
    Ok(sealed)
}

fn open_with(key: &[u8], nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Malformed)?;
    let mut buffer = sealed.to_vec();
    let opened = aead_key(key)?
        .open_in_place(nonce, Aad::from(aad), &mut buffer)
        .map_err(|_| CryptoError::Rejected)?;
    Ok(opened.to_vec())
}

/// Splits `n` bytes off the front of `bytes`.
fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], CryptoError> {
    if bytes.len() < n {
        return Err(CryptoError::Malformed);
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Ok(head)
}

/// The local stack's key-encryption key: it seals the platform tokens and hashes the
/// ingestion secrets of local data only.
pub const LOCAL_KEYS: &str = "local:bG9jYWwtZW5jcnlwdGlvbi1rZXktMzItYnl0ZXMhISE=";

impl Keys {
    /// [`LOCAL_KEYS`], for the local stack and the tests.
    pub fn local() -> Self {
        Self::parse(LOCAL_KEYS).expect("the local key is well-formed")
    }

    /// `ENCRYPTION_KEYS`: comma-separated `id:base64(32 bytes)`, the first sealing, all
    /// opening. Errors name the variable and never echo a key.
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        Self::parse(&env.required("ENCRYPTION_KEYS")?).map_err(|reason| SettingsError::Malformed {
            name: "ENCRYPTION_KEYS",
            reason,
        })
    }

    /// Parses the `ENCRYPTION_KEYS` format; the error says what is wrong without the key.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for (position, entry) in list.split(',').map(str::trim).enumerate() {
            let Some((id, encoded)) = entry.split_once(':') else {
                return Err(format!("entry {} is not id:base64", position + 1));
            };
            let valid_id = !id.is_empty()
                && id.len() <= 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_id {
                return Err(format!(
                    "entry {}: the id must be 1-32 of [A-Za-z0-9_-]",
                    position + 1
                ));
            }
            let key = BASE64
                .decode(encoded.trim())
                .ok()
                .filter(|key| key.len() == KEY_LEN)
                .ok_or_else(|| {
                    format!(
                        "entry {} ({id}): the key is not base64 of 32 bytes",
                        position + 1
                    )
                })?;
            keys.push(Kek {
                id: id.to_string(),
                key: SecretSlice::from(key),
            });
        }
        let mut keys = keys.into_iter();
        let current = keys.next().ok_or_else(|| "no key".to_string())?;
        Ok(Self {
            current,
            older: keys.collect(),
        })
    }

    /// A key set from raw keys, for tests and the local stack: `current` seals, `older` only
    /// open.
    pub fn from_bytes(current: (&str, [u8; KEY_LEN]), older: &[(&str, [u8; KEY_LEN])]) -> Self {
        let kek = |(id, key): (&str, [u8; KEY_LEN])| Kek {
            id: id.to_string(),
            key: SecretSlice::from(key.to_vec()),
        };
        Self {
            current: kek(current),
            older: older.iter().copied().map(kek).collect(),
        }
    }

    fn all(&self) -> impl Iterator<Item = &Kek> {
        std::iter::once(&self.current).chain(&self.older)
    }

    /// Seals `plaintext` for `context` under the current key.
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        let kek = &self.current;
        let data_key: [u8; KEY_LEN] = random()?;
        let wrap_nonce: [u8; NONCE_LEN] = random()?;
        let nonce: [u8; NONCE_LEN] = random()?;
        let aad = [kek.id.as_bytes(), b"\x1f", context.as_bytes()].concat();
        let wrapped = seal_with(kek.key.expose_secret(), wrap_nonce, &aad, &data_key)?;
        let ciphertext = seal_with(&data_key, nonce, &aad, plaintext.as_bytes())?;
        let mut out =
            Vec::with_capacity(2 + kek.id.len() + 2 * NONCE_LEN + wrapped.len() + ciphertext.len());
        out.push(VERSION);
        out.push(kek.id.len() as u8);
        out.extend_from_slice(kek.id.as_bytes());
        out.extend_from_slice(&wrap_nonce);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens what [`Keys::seal`] sealed for the same `context`.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<SecretString, CryptoError> {
        let mut rest = sealed;
        if take(&mut rest, 1)? != [VERSION] {
            return Err(CryptoError::Malformed);
        }
        let id_len = usize::from(take(&mut rest, 1)?[0]);
        let id =
            std::str::from_utf8(take(&mut rest, id_len)?).map_err(|_| CryptoError::Malformed)?;
        let kek = self
            .all()
            .find(|kek| kek.id == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_string()))?;
        let wrap_nonce = take(&mut rest, NONCE_LEN)?;
        let wrapped = take(&mut rest, KEY_LEN + TAG_LEN)?;
        let nonce = take(&mut rest, NONCE_LEN)?;
        if rest.len() < TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let aad = [id.as_bytes(), b"\x1f", context.as_bytes()].concat();
        let data_key = open_with(kek.key.expose_secret(), wrap_nonce, &aad, wrapped)?;
        let plaintext = open_with(&data_key, nonce, &aad, rest)?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Malformed)
    }

    /// The keyed hash of `secret` under the current key, as stored.
    pub fn hash(&self, secret: &str) -> String {
        self.hash_under(&self.current, secret)
    }

    /// The keyed hash of `secret` under every configured key: a lookup matches any, so
    /// secrets hashed before a rotation are still found.
    pub fn hash_candidates(&self, secret: &str) -> Vec<String> {
        self.all().map(|kek| self.hash_under(kek, secret)).collect()
    }

    fn hash_under(&self, kek: &Kek, secret: &str) -> String {
        // A key of its own for hashing, so no value is ever both encrypted and MACed under
        // the same key.
        let hash_key = crate::webhook::hmac_sha256(kek.key.expose_secret(), &[b"secret-hash/v1"]);
        let mac = crate::webhook::hmac_sha256(&hash_key, &[secret.as_bytes()]);
        format!("{HASH_PREFIX}{}", hex::encode(mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::from_bytes(("k2", [2; 32]), &[("k1", [1; 32])])
    }

    #[test]
    fn sealed_values_open_only_in_their_context() {
        let keys = keys();
        let sealed = keys.seal("EAAB-token", "connection:1").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"EAAB-token"));
        assert_eq!(
            keys.open(&sealed, "connection:1").unwrap().expose_secret(),
            "EAAB-token"
        );
        assert_eq!(
            keys.open(&sealed, "connection:2").unwrap_err(),
            CryptoError::Rejected
        );
        assert_ne!(sealed, keys.seal("EAAB-token", "connection:1").unwrap());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            keys.open(&tampered, "connection:1").unwrap_err(),
            CryptoError::Rejected
        );
        assert_eq!(
            keys.open(&sealed[..20], "connection:1").unwrap_err(),
            CryptoError::Malformed
        );
        assert_eq!(
            keys.open(&[], "connection:1").unwrap_err(),
            CryptoError::Malformed
        );
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = Keys::from_bytes(("k1", [1; 32]), &[]);
        let sealed = old.seal("t", "c").unwrap();
        let stored_hash = old.hash("whsec");
        let rotated = keys();
        assert_eq!(rotated.open(&sealed, "c").unwrap().expose_secret(), "t");
        assert!(rotated.hash_candidates("whsec").contains(&stored_hash));
        assert_ne!(rotated.hash("whsec"), stored_hash);
        let unknown = Keys::from_bytes(("k9", [9; 32]), &[]);
        assert_eq!(
            unknown.open(&sealed, "c").unwrap_err(),
            CryptoError::UnknownKey("k1".into())
        );
    }

    #[test]
    fn the_key_list_is_parsed_without_echoing_keys() {
        let key = BASE64.encode([7u8; 32]);
        let parsed = Keys::parse(&format!("new:{key}, old:{key}")).unwrap();
        assert_eq!(format!("{parsed:?}"), r#"Keys { ids: ["new", "old"] }"#);
        for bad in ["", "nokey", "id:short", "bad id:x", &format!(":{key}")] {
            let error = Keys::parse(bad).err().unwrap();
            assert!(!error.contains(&key), "{error}");
        }
        assert!(parsed.hash("s").starts_with(HASH_PREFIX));
    }
}
