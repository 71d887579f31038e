//! The project's signing keys, as Supabase Auth publishes them at
//! `${SUPABASE_URL}/auth/v1/.well-known/jwks.json`, cached in the process.
//!
//! Rules, in order:
//!
//! 1. Only asymmetric keys are taken from the set: EC P-256 keys for ES256 and RSA keys for
//!    RS256. A symmetric (`oct`) key or any other algorithm in the set is ignored, so a set
//!    an attacker could influence never turns into an HMAC secret.
//! 2. A key is found by the token's `kid`. The set is fetched on first use and again when
//!    it is older than [`KeyPolicy::max_age`] or a `kid` is unknown (a rotation: Supabase
//!    publishes a standby key before signing with it).
//! 3. Fetches are at most one per [`KeyPolicy::min_refresh`], and one at a time: a flood of
//!    tokens with made-up `kid`s costs Supabase one request per interval, not one per
//!    token, and is refused at once in between.
//! 4. When a fetch fails, keys fetched before stay usable for [`KeyPolicy::max_stale`]; with
//!    none to use, the refusal is [`super::JwtError::KeysUnavailable`], which may pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use super::JwtError;

/// Largest key set read: Supabase's hold a handful of keys, a few KB.
const MAX_SET_BYTES: usize = 64 * 1024;

/// How long keys are trusted and how often they may be fetched.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    /// A set older than this is fetched again before use (Supabase's edge caches it for
    /// ten minutes, so a fresher copy cannot be had).
    pub max_age: Duration,
    /// At most one fetch per this interval, whatever the tokens say.
    pub min_refresh: Duration,
    /// How long a fetched set stays usable while fetching fails.
    pub max_stale: Duration,
    /// Deadline of one fetch.
    pub timeout: Duration,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(600),
            min_refresh: Duration::from_secs(30),
            max_stale: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
        }
    }
}

/// One verification key.
#[derive(Clone)]
pub(super) struct VerificationKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

struct Fetched {
    keys: Arc<HashMap<String, VerificationKey>>,
    at: Instant,
}

/// The cached key set of one project.
pub(super) struct KeySet {
    url: String,
    client: reqwest::Client,
    policy: KeyPolicy,
    fetched: RwLock<Option<Fetched>>,
    /// When a fetch last started; held while fetching, so fetches never overlap.
    last_attempt: Mutex<Option<Instant>>,
}

impl KeySet {
    pub fn new(url: String, policy: KeyPolicy) -> Self {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS client with the process's crypto provider");
        Self {
            url,
            client,
            policy,
            fetched: RwLock::new(None),
            last_attempt: Mutex::new(None),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key `kid` names, fetching the set when rule 2 says so and rule 3 allows.
    pub async fn key(&self, kid: &str) -> Result<VerificationKey, JwtError> {
        if let Some(key) = self.cached(kid, self.policy.max_age).await {
            return Ok(key);
        }
        let refreshed = self.refresh().await;
        if let Some(key) = self.cached(kid, self.policy.max_stale).await {
            return Ok(key);
        }
        match refreshed {
            _ if self.has_usable_set().await => Err(JwtError::UnknownKey(
                crate::text::clip(kid, 100).to_string(),
            )),
            Err(error) => Err(error),
            // Fetching failed moments ago and may not be tried again yet (rule 3).
            Ok(()) => Err(JwtError::KeysUnavailable(
                "the project's signing keys could not be fetched".into(),
            )),
        }
    }

    async fn cached(&self, kid: &str, within: Duration) -> Option<VerificationKey> {
        let fetched = self.fetched.read().await;
        let fetched = fetched.as_ref().filter(|set| set.at.elapsed() < within)?;
        fetched.keys.get(kid).cloned()
    }

    async fn has_usable_set(&self) -> bool {
        let fetched = self.fetched.read().await;
        fetched
            .as_ref()
            .is_some_and(|set| set.at.elapsed() < self.policy.max_stale)
    }

    /// Fetches the set unless one was fetched (or tried) within `min_refresh`.
    async fn refresh(&self) -> Result<(), JwtError> {
        let mut last_attempt = self.last_attempt.lock().await;
        if last_attempt.is_some_and(|at| at.elapsed() < self.policy.min_refresh) {
            return Ok(());
        }
        *last_attempt = Some(Instant::now());
        let keys = self.fetch().await.inspect_err(|error| {
            tracing::warn!(url = %self.url, %error, "fetching the project's signing keys failed");
        })?;
        *self.fetched.write().await = Some(Fetched {
            keys: Arc::new(keys),
            at: Instant::now(),
        });
        Ok(())
    }

    async fn fetch(&self) -> Result<HashMap<String, VerificationKey>, JwtError> {
        let unavailable = |reason: String| JwtError::KeysUnavailable(reason);
        let response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| unavailable(format!("GET {}: {error}", self.url)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!("GET {} answered {status}", self.url)));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_SET_BYTES as u64)
        {
            return Err(unavailable("the key set is too large".into()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| unavailable(format!("reading the key set: {error}")))?;
        if body.len() > MAX_SET_BYTES {
            return Err(unavailable("the key set is too large".into()));
        }
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|error| unavailable(format!("the key set is not a JWKS: {error}")))?;
        Ok(usable_keys(&set))
    }
}

/// The keys of `set` that rule 1 accepts, by `kid`.
fn usable_keys(set: &JwkSet) -> HashMap<String, VerificationKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                _ => return None,
            };
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((kid, VerificationKey { algorithm, key }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(keys: serde_json::Value) -> JwkSet {
        serde_json::from_value(json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn only_asymmetric_keys_with_an_id_are_taken() {
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let rsa = json!({"kty": "RSA", "kid": "rsa", "alg": "RS256", "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        let keys = usable_keys(&set(json!([
            ec,
            rsa,
            {"kty": "oct", "kid": "secret", "alg": "HS256", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "e": "AQAB", "n": "0vx7"},
            {"kty": "EC", "crv": "P-256", "alg": "ES256", "x": "AA", "y": "AA"},
        ])));
        let mut taken: Vec<_> = keys
            .iter()
            .map(|(kid, key)| (kid.as_str(), key.algorithm))
            .collect();
        taken.sort_by_key(|(kid, _)| *kid);
        assert_eq!(taken, [("ec", Algorithm::ES256), ("rsa", Algorithm::RS256)]);
    }
}
