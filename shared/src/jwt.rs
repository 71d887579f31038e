//! Supabase access tokens, verified the same way by every API that needs a signed-in person
//! (the feedback API, the status page's admins).
//!
//! A token is accepted only when all of these hold, each refusal naming what failed:
//!
//! 1. it is at most [`MAX_TOKEN_BYTES`] long and signed HS256 with the project's JWT secret;
//! 2. `iss` is the project's Auth URL (`${SUPABASE_URL}/auth/v1`), so a token of another
//!    project signed with a leaked or shared secret is refused;
//! 3. `aud` is (or contains) `authenticated`;
//! 4. `sub` is present;
//! 5. `exp` is present and not past, and `nbf`, when present, is not in the future — both
//!    read against the agent's [`Clock`](crate::clock::Clock), with [`LEEWAY_SECS`] for clock
//!    skew between Supabase and us.
//!
//! Asymmetric keys (ES256/RS256 from the project's JWKS) are the next step; the verifier's
//! interface does not change with them.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::Deserialize;

use crate::settings::{Env, SettingsError};

/// Longest token looked at: Supabase's are well under 2 KB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 30;
/// The audience Supabase gives a signed-in user's access token.
pub const AUDIENCE: &str = "authenticated";

/// Why a token was refused. Always permanent for that token: answered 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the access token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the access token is not a valid HS256 JWT signed for this project: {0}")]
    Invalid(String),
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
    secret: SecretSlice<u8>,
    issuer: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// `secret` is the project's JWT secret; `supabase_url` its API URL
    /// (`https://<ref>.supabase.co`), from which the expected `iss` follows.
    pub fn new(secret: &[u8], supabase_url: &str) -> Self {
        Self {
            secret: SecretSlice::from(secret.to_vec()),
            issuer: issuer_for(supabase_url),
        }
    }

    /// The verifier `config` describes.
    pub fn from_config(config: &JwtConfig) -> Self {
        Self::new(
            config.secret.expose_secret().as_bytes(),
            &config.supabase_url,
        )
    }

    /// The `iss` this verifier expects.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Checks `token` as of `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLong);
        }
        // The library checks the signature and algorithm; the claims are checked below, against
        // our clock rather than the library's.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<RawClaims>(
            token,
            &DecodingKey::from_secret(self.secret.expose_secret()),
            &validation,
        )
        .map_err(|error| JwtError::Invalid(error.to_string()))?;
        let claims = data.claims;
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

/// Which project's tokens to accept: `SUPABASE_JWT_SECRET` and `SUPABASE_URL`.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub secret: SecretString,
    /// The project's API URL (`https://<ref>.supabase.co`), from which `iss` follows.
    pub supabase_url: String,
}

impl JwtConfig {
    /// Both variables required; errors name the variable and never echo the secret.
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        let secret = env.secret("SUPABASE_JWT_SECRET")?;
        let supabase_url = env.required("SUPABASE_URL")?;
        if !(supabase_url.starts_with("https://") || supabase_url.starts_with("http://")) {
            return Err(SettingsError::Malformed {
                name: "SUPABASE_URL",
                reason: "expected the project's URL, https://<ref>.supabase.co".into(),
            });
        }
        Ok(Self {
            secret,
            supabase_url,
        })
    }

    /// [`Self::from_env`] when `SUPABASE_JWT_SECRET` is set, else `None` (an API that has
    /// another way in, as the status page's token).
    pub fn optional_from_env(env: &Env<'_>) -> Result<Option<Self>, SettingsError> {
        match env.optional("SUPABASE_JWT_SECRET") {
            Some(_) => Self::from_env(env).map(Some),
            None => Ok(None),
        }
    }

    /// The Supabase CLI's local project.
    pub fn local() -> Self {
        Self {
            secret: SecretString::from(LOCAL_SECRET),
            supabase_url: LOCAL_SUPABASE_URL.into(),
        }
    }
}

/// `${supabase_url}/auth/v1`, the `iss` of the project's access tokens.
pub fn issuer_for(supabase_url: &str) -> String {
    format!("{}/auth/v1", supabase_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    const SECRET: &[u8] = b"jwt-secret-of-the-project";
    const URL: &str = "https://abc.supabase.co";

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    fn sign(claims: Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn good() -> Value {
        let at = now().timestamp();
        json!({"sub": "7d2b0d1e-0000-4000-8000-000000000001", "iss": "https://abc.supabase.co/auth/v1",
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

    #[test]
    fn every_claim_is_checked() {
        // A trailing slash on the configured URL changes nothing.
        let verifier = JwtVerifier::new(SECRET, &format!("{URL}/"));
        let at = now().timestamp();
        let claims = verifier.verify(&sign(good(), SECRET), now()).unwrap();
        assert_eq!(claims.app_role.as_deref(), Some("admin"));
        assert_eq!(claims.role.as_deref(), Some("authenticated"));
        let refused = |claims: Value| verifier.verify(&sign(claims, SECRET), now()).unwrap_err();
        assert!(matches!(
            verifier.verify(&sign(good(), b"another"), now()),
            Err(JwtError::Invalid(_))
        ));
        assert_eq!(
            refused(with("iss", json!("https://evil.supabase.co/auth/v1"))),
            JwtError::Issuer("https://evil.supabase.co/auth/v1".into())
        );
        assert_eq!(refused(without("iss")), JwtError::Issuer(String::new()));
        assert_eq!(refused(with("aud", json!("anon"))), JwtError::Audience);
        assert_eq!(refused(without("aud")), JwtError::Audience);
        assert!(
            verifier
                .verify(
                    &sign(with("aud", json!(["x", "authenticated"])), SECRET),
                    now()
                )
                .is_ok()
        );
        assert_eq!(refused(without("sub")), JwtError::Subject);
        assert_eq!(refused(with("sub", json!(""))), JwtError::Subject);
        assert_eq!(refused(without("exp")), JwtError::Expired);
        assert_eq!(refused(with("exp", json!(at - 31))), JwtError::Expired);
        assert!(
            verifier
                .verify(&sign(with("exp", json!(at - 29)), SECRET), now())
                .is_ok(),
            "within the leeway"
        );
        assert_eq!(refused(with("nbf", json!(at + 60))), JwtError::NotYetValid);
        assert!(
            verifier
                .verify(&sign(with("nbf", json!(at)), SECRET), now())
                .is_ok()
        );
        assert_eq!(
            verifier.verify(&"a".repeat(MAX_TOKEN_BYTES + 1), now()),
            Err(JwtError::TooLong)
        );
        assert_eq!(verifier.issuer(), "https://abc.supabase.co/auth/v1");
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let verifier = JwtVerifier::new(SECRET, URL);
        // alg "none": header {"alg":"none","typ":"JWT"}, the good claims, no signature.
        use base64::Engine;
        let encode = |value: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
        };
        let token = format!(
            "{}.{}.",
            encode(&json!({"alg": "none", "typ": "JWT"})),
            encode(&good())
        );
        assert!(matches!(
            verifier.verify(&token, now()),
            Err(JwtError::Invalid(_))
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_tokens_are_refused_without_panicking(token in ".{0,300}") {
            let verifier = JwtVerifier::new(SECRET, URL);
            proptest::prop_assert!(verifier.verify(&token, now()).is_err());
        }

        #[test]
        fn arbitrary_claims_never_panic(sub in proptest::option::of(".{0,40}"), exp in proptest::num::i64::ANY, nbf in proptest::option::of(proptest::num::i64::ANY)) {
            let verifier = JwtVerifier::new(SECRET, URL);
            let mut claims = good();
            claims["exp"] = json!(exp);
            if let Some(sub) = sub { claims["sub"] = json!(sub); }
            if let Some(nbf) = nbf { claims["nbf"] = json!(nbf); }
            let _ = verifier.verify(&sign(claims, SECRET), now());
        }
    }
}
