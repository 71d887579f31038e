//! Supabase access tokens, verified the same way by every API that needs a signed-in person
//! (the member APIs, the feedback API, the status page's admins).
//!
//! A token is accepted only when all of these hold, each refusal naming what failed:
//!
//! 1. it is at most [`MAX_TOKEN_BYTES`] long and signed by the project:
//!    * ES256 or RS256 with the key its header's `kid` names in the project's published key
//!      set (`${SUPABASE_URL}/auth/v1/.well-known/jwks.json`, cached and refreshed as
//!      [`jwks`] says), as Supabase's signing keys issue them;
//!    * HS256 with the legacy JWT secret, only when `SUPABASE_JWT_SECRET` is configured;
//!    * any other algorithm, or one that does not match the key, is refused;
//! 2. `iss` is the project's Auth URL (`${SUPABASE_URL}/auth/v1`), so a token of another
//!    project is refused;
//! 3. `aud` is (or contains) `authenticated`;
//! 4. `sub` is present;
//! 5. `exp` is present and not past, and `nbf`, when present, is not in the future — both
//!    read against the agent's [`Clock`](crate::clock::Clock), with [`LEEWAY_SECS`] for clock
//!    skew between Supabase and us.
//!
//! Every refusal is the token's fault (401) except [`JwtError::KeysUnavailable`]: the key set
//! could not be fetched, which may pass (503 with `Retry-After`).

pub mod jwks;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::retry::{RetryClass, Retryable};
use crate::settings::{Env, SettingsError};
pub use jwks::KeyPolicy;

/// Longest token looked at: Supabase's are well under 2 KB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 30;
/// The audience Supabase gives a signed-in user's access token.
pub const AUDIENCE: &str = "authenticated";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the access token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the access token is not a valid JWT signed for this project: {0}")]
    Invalid(String),
    #[error("the access token is signed with {0}, which this project does not accept")]
    Algorithm(String),
    #[error("the access token is signed with a key this project does not publish (kid {0:?})")]
    UnknownKey(String),
    #[error("the project's signing keys are unavailable: {0}")]
    KeysUnavailable(String),
    #[error("the access token was issued by {0:?}, not this project's Auth")]
    Issuer(String),
    #[error("the access token is not for the `authenticated` audience")]
    Audience,
    #[error("the access token has no subject")]
    Subject,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
}

impl Retryable for JwtError {
    fn retry_class(&self) -> RetryClass {
        match self {
            JwtError::KeysUnavailable(_) => RetryClass::transient(),
            _ => RetryClass::Permanent,
        }
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: String,
    pub role: Option<String>,
    /// `app_metadata.role`, which only the service key or a dashboard hook can set.
    pub app_role: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    app_metadata: Option<AppMetadata>,
}

#[derive(Deserialize)]
struct AppMetadata {
    #[serde(default)]
    role: Option<String>,
}

/// Verifies access tokens of one Supabase project.
pub struct JwtVerifier {
    issuer: String,
    /// The legacy JWT secret, when the project still accepts HS256 tokens.
    legacy: Option<DecodingKey>,
    keys: jwks::KeySet,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("jwks", &self.keys.url())
            .field("legacy_secret", &self.legacy.is_some())
            .finish()
    }
}

impl JwtVerifier {
    /// The verifier `config` describes, with the default [`KeyPolicy`].
    pub fn from_config(config: &JwtConfig) -> Self {
        Self::with_policy(config, KeyPolicy::default())
    }

    /// [`Self::from_config`] with another key policy (tests shorten its intervals).
    pub fn with_policy(config: &JwtConfig, policy: KeyPolicy) -> Self {
        Self {
            issuer: issuer_for(&config.supabase_url),
            legacy: config
                .legacy_secret
                .as_ref()
                .map(|secret| DecodingKey::from_secret(secret.expose_secret().as_bytes())),
            keys: jwks::KeySet::new(jwks_url_for(&config.supabase_url), policy),
        }
    }

    /// The `iss` this verifier expects.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Checks `token` as of `now`.
    pub async fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLong);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| JwtError::Invalid(error.to_string()))?;
        let (algorithm, key) = match header.alg {
            Algorithm::HS256 => match &self.legacy {
                Some(secret) => (Algorithm::HS256, secret.clone()),
                None => return Err(JwtError::Algorithm("HS256 (the legacy secret)".into())),
            },
            Algorithm::ES256 | Algorithm::RS256 => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| JwtError::Invalid("the header names no key (kid)".into()))?;
                let found = self.keys.key(kid).await?;
                if found.algorithm != header.alg {
                    return Err(JwtError::Algorithm(format!(
                        "{:?} with a {:?} key",
                        header.alg, found.algorithm
                    )));
                }
                (found.algorithm, found.key)
            }
            other => return Err(JwtError::Algorithm(format!("{other:?}"))),
        };
        // The library checks the signature under exactly `algorithm`; the claims are checked
        // below, against our clock rather than the library's.
        let mut validation = Validation::new(algorithm);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<RawClaims>(token, &key, &validation)
            .map_err(|error| JwtError::Invalid(error.to_string()))?
            .claims;
        self.check_claims(claims, now)
    }

    fn check_claims(
        &self,
        claims: RawClaims,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, JwtError> {
        match claims.iss.as_deref() {
            Some(iss) if iss == self.issuer => {}
            other => {
                return Err(JwtError::Issuer(
                    crate::text::clip(other.unwrap_or_default(), 200).to_string(),
                ));
            }
        }
        let audience_ok = match &claims.aud {
            Some(Audience::One(aud)) => aud == AUDIENCE,
            Some(Audience::Many(auds)) => auds.iter().any(|aud| aud == AUDIENCE),
            None => false,
        };
        if !audience_ok {
            return Err(JwtError::Audience);
        }
        let sub = claims
            .sub
            .filter(|sub| !sub.is_empty())
            .ok_or(JwtError::Subject)?;
        let now = now.timestamp();
        match claims.exp {
            Some(exp) if exp.saturating_add(LEEWAY_SECS) > now => {}
            _ => return Err(JwtError::Expired),
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
        {
            return Err(JwtError::NotYetValid);
        }
        Ok(AccessClaims {
            sub,
            role: claims.role,
            app_role: claims.app_metadata.and_then(|meta| meta.role),
        })
    }
}

/// The Supabase CLI's local JWT secret, which the local stack uses.
pub const LOCAL_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";
/// The Supabase CLI's local API URL.
pub const LOCAL_SUPABASE_URL: &str = "http://127.0.0.1:54321";

/// Which project's tokens to accept: `SUPABASE_URL`, and `SUPABASE_JWT_SECRET` while the
/// project still issues legacy HS256 tokens.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The project's API URL (`https://<ref>.supabase.co`), from which `iss` and the key
    /// set's URL follow.
    pub supabase_url: String,
    pub legacy_secret: Option<SecretString>,
}

impl JwtConfig {
    /// `SUPABASE_URL` required, `SUPABASE_JWT_SECRET` optional; errors name the variable and
    /// never echo the secret.
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        let supabase_url = env.required("SUPABASE_URL")?;
        if !(supabase_url.starts_with("https://") || supabase_url.starts_with("http://")) {
            return Err(SettingsError::Malformed {
                name: "SUPABASE_URL",
                reason: "expected the project's URL, https://<ref>.supabase.co".into(),
            });
        }
        let legacy_secret = match env.optional("SUPABASE_JWT_SECRET") {
            Some(_) => Some(env.secret("SUPABASE_JWT_SECRET")?),
            None => None,
        };
        Ok(Self {
            supabase_url,
            legacy_secret,
        })
    }

    /// [`Self::from_env`] when `SUPABASE_URL` is set, else `None` (an API that has another
    /// way in, as the status page's token).
    pub fn optional_from_env(env: &Env<'_>) -> Result<Option<Self>, SettingsError> {
        match env.optional("SUPABASE_URL") {
            Some(_) => Self::from_env(env).map(Some),
            None => Ok(None),
        }
    }

    /// The Supabase CLI's local project.
    pub fn local() -> Self {
        Self {
            supabase_url: LOCAL_SUPABASE_URL.into(),
            legacy_secret: Some(SecretString::from(LOCAL_SECRET)),
        }
    }
}

/// `${supabase_url}/auth/v1`, the `iss` of the project's access tokens.
pub fn issuer_for(supabase_url: &str) -> String {
    format!("{}/auth/v1", supabase_url.trim_end_matches('/'))
}

/// `${supabase_url}/auth/v1/.well-known/jwks.json`, where the project publishes its keys.
pub fn jwks_url_for(supabase_url: &str) -> String {
    format!("{}/.well-known/jwks.json", issuer_for(supabase_url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    const SECRET: &str = "jwt-secret-of-the-project";
    /// Nothing listens on port 9 of loopback: fetching the key set fails at once.
    const URL: &str = "http://127.0.0.1:9";

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    fn verifier(legacy_secret: Option<&str>) -> JwtVerifier {
        JwtVerifier::from_config(&JwtConfig {
            // A trailing slash on the configured URL changes nothing.
            supabase_url: format!("{URL}/"),
            legacy_secret: legacy_secret.map(SecretString::from),
        })
    }

    fn sign(claims: Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn unsigned(header: Value, claims: &Value) -> String {
        use base64::Engine;
        let encode = |value: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
        };
        format!("{}.{}.", encode(&header), encode(claims))
    }

    fn good() -> Value {
        let at = now().timestamp();
        json!({"sub": "7d2b0d1e-0000-4000-8000-000000000001", "iss": format!("{URL}/auth/v1"),
               "aud": "authenticated", "exp": at + 600, "iat": at, "role": "authenticated",
               "app_metadata": {"role": "admin"}})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut claims = good();
        claims[field] = value;
        claims
    }

    fn without(field: &str) -> Value {
        let mut claims = good();
        claims.as_object_mut().unwrap().remove(field);
        claims
    }

    #[tokio::test]
    async fn every_claim_is_checked() {
        let verifier = verifier(Some(SECRET));
        let at = now().timestamp();
        let claims = verifier.verify(&sign(good(), SECRET), now()).await.unwrap();
        assert_eq!(claims.app_role.as_deref(), Some("admin"));
        assert_eq!(claims.role.as_deref(), Some("authenticated"));
        let verdict = async |claims: Value| verifier.verify(&sign(claims, SECRET), now()).await;
        assert!(matches!(
            verifier.verify(&sign(good(), "another"), now()).await,
            Err(JwtError::Invalid(_))
        ));
        let refusals = [
            (
                with("iss", json!("https://evil.supabase.co/auth/v1")),
                JwtError::Issuer("https://evil.supabase.co/auth/v1".into()),
            ),
            (without("iss"), JwtError::Issuer(String::new())),
            (with("aud", json!("anon")), JwtError::Audience),
            (without("aud"), JwtError::Audience),
            (without("sub"), JwtError::Subject),
            (with("sub", json!("")), JwtError::Subject),
            (without("exp"), JwtError::Expired),
            (with("exp", json!(at - 31)), JwtError::Expired),
            (with("nbf", json!(at + 60)), JwtError::NotYetValid),
        ];
        for (claims, refusal) in refusals {
            assert_eq!(verdict(claims.clone()).await, Err(refusal), "{claims}");
        }
        let accepted = [
            with("aud", json!(["x", "authenticated"])),
            // Within the leeway.
            with("exp", json!(at - 29)),
            with("nbf", json!(at)),
        ];
        for claims in accepted {
            assert!(verdict(claims.clone()).await.is_ok(), "{claims}");
        }
        assert_eq!(
            verifier
                .verify(&"a".repeat(MAX_TOKEN_BYTES + 1), now())
                .await,
            Err(JwtError::TooLong)
        );
        assert_eq!(verifier.issuer(), "http://127.0.0.1:9/auth/v1");
    }

    #[tokio::test]
    async fn legacy_tokens_need_the_legacy_secret() {
        let refused = verifier(None)
            .verify(&sign(good(), SECRET), now())
            .await
            .unwrap_err();
        assert!(matches!(refused, JwtError::Algorithm(_)), "{refused}");
        assert!(!refused.retry_class().is_transient());
    }

    #[tokio::test]
    async fn unsigned_and_unexpected_algorithms_are_refused() {
        let verifier = verifier(Some(SECRET));
        for alg in ["none", "HS384", "PS256", "EdDSA"] {
            let token = unsigned(json!({"alg": alg, "typ": "JWT"}), &good());
            let refused = verifier.verify(&token, now()).await.unwrap_err();
            assert!(
                matches!(refused, JwtError::Invalid(_) | JwtError::Algorithm(_)),
                "{alg}: {refused}"
            );
        }
        let no_kid = unsigned(json!({"alg": "ES256", "typ": "JWT"}), &good());
        assert_eq!(
            verifier.verify(&no_kid, now()).await,
            Err(JwtError::Invalid("the header names no key (kid)".into()))
        );
    }

    #[tokio::test]
    async fn unreachable_keys_may_pass_and_say_so() {
        let token = unsigned(json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}), &good());
        let refused = verifier(None).verify(&token, now()).await.unwrap_err();
        assert!(matches!(refused, JwtError::KeysUnavailable(_)), "{refused}");
        assert!(refused.retry_class().is_transient());
        assert!(
            refused
                .to_string()
                .contains("/auth/v1/.well-known/jwks.json")
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_tokens_are_refused_without_panicking(token in ".{0,300}") {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let verifier = verifier(Some(SECRET));
            proptest::prop_assert!(runtime.block_on(verifier.verify(&token, now())).is_err());
        }

        #[test]
        fn arbitrary_claims_never_panic(sub in proptest::option::of(".{0,40}"), exp in proptest::num::i64::ANY, nbf in proptest::option::of(proptest::num::i64::ANY)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let verifier = verifier(Some(SECRET));
            let mut claims = good();
            claims["exp"] = json!(exp);
            if let Some(sub) = sub { claims["sub"] = json!(sub); }
            if let Some(nbf) = nbf { claims["nbf"] = json!(nbf); }
            let _ = runtime.block_on(verifier.verify(&sign(claims, SECRET), now()));
        }
    }
}
