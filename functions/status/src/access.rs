//! Who may see the status page: the holder of `STATUS_TOKEN`, or a Supabase user whose access
//! token says they are an admin (`app_metadata.role = "admin"`), verified by
//! [`shared::jwt`].
//!
//! The credential comes as `Authorization: Bearer …`, or — for a person in a browser, who
//! cannot set headers — as the `status_session` cookie that `POST /status/login` sets after
//! checking the token typed into the page's form. The cookie is a session, never the token:
//! `v1.<expiry>.<nonce>.<mac>`, the MAC keyed by a key derived from the token, so a stolen
//! cookie stops working at its expiry ([`SESSION_TTL`]) and every session ends when the token
//! is rotated. It is HttpOnly, SameSite=Strict and scoped to `/status`.
//!
//! Failed logins are slowed ([`LoginThrottle`]): after [`MAX_FAILURES`] failures from one
//! client within [`FAILURE_WINDOW`], its logins are refused with 429 and `Retry-After` until the
//! window has passed. The throttle lives in the process's memory (per Lambda container);
//! API Gateway's throttling bounds the rest.

use shared::http::{BearerToken, SupabaseUser};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use shared::jwt::JwtVerifier;

/// The cookie a browser keeps its session in.
pub const COOKIE: &str = "status_session";
/// How long a session opened by the login form lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins one client may make per window before it is refused.
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Clients remembered by the throttle; the oldest are forgotten beyond this.
const MAX_CLIENTS: usize = 10_000;

pub struct Access {
    token: String,
    /// Verifies admins' access tokens; `None` accepts only the token.
    jwt: Option<JwtVerifier>,
    session_key: [u8; 32],
    pub throttle: LoginThrottle,
}

impl Access {
    pub fn new(token: String, jwt: Option<JwtVerifier>) -> Self {
        let session_key = shared::webhook::hmac_sha256(token.as_bytes(), &[b"status-session/v1"]);
        Self {
            token,
            jwt,
            session_key,
            throttle: LoginThrottle::default(),
        }
    }

    /// Whether `presented` is the token (compared in constant time).
    pub fn is_token(&self, presented: &str) -> bool {
        !self.token.is_empty()
            && shared::webhook::constant_time_eq(self.token.as_bytes(), presented.as_bytes())
    }

    /// The verifier of members' access tokens, when the page accepts them.
    pub fn verifier(&self) -> Option<&JwtVerifier> {
        self.jwt.as_ref()
    }

    /// Whether `presented` is a valid access token of an admin.
    async fn is_admin_jwt(&self, presented: &str, now: DateTime<Utc>) -> bool {
        let Some(verifier) = &self.jwt else {
            return false;
        };
        SupabaseUser::verify(verifier, presented, now)
            .await
            .is_ok_and(|user| user.claims.app_role.as_deref() == Some("admin"))
    }

    /// Whether the request carries a credential that opens the page.
    pub async fn allows(&self, headers: &HeaderMap, now: DateTime<Utc>) -> bool {
        if let Some(BearerToken(presented)) = BearerToken::from_headers(headers) {
            return self.is_token(&presented) || self.is_admin_jwt(&presented, now).await;
        }
        cookie(headers, COOKIE).is_some_and(|session| self.is_session(&session, now))
    }

    /// A new session cookie value, valid until `now` + [`SESSION_TTL`].
    pub fn new_session(&self, now: DateTime<Utc>) -> String {
        let expires = now.timestamp().saturating_add(SESSION_TTL.as_secs() as i64);
        // The MAC makes a session unforgeable; the random nonce keeps two sessions opened in
        // the same second apart.
        let nonce = uuid::Uuid::new_v4().simple();
        let body = format!("v1.{expires}.{nonce}");
        let mac = shared::webhook::hmac_sha256(&self.session_key, &[body.as_bytes()]);
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    fn is_session(&self, value: &str, now: DateTime<Utc>) -> bool {
        let Some((body, mac)) = value.rsplit_once('.') else {
            return false;
        };
        let mut parts = body.split('.');
        let (Some("v1"), Some(expires), Some(_nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(expires) = expires.parse::<i64>() else {
            return false;
        };
        let Ok(mac) = URL_SAFE_NO_PAD.decode(mac) else {
            return false;
        };
        let expected = shared::webhook::hmac_sha256(&self.session_key, &[body.as_bytes()]);
        shared::webhook::constant_time_eq(&expected, &mac) && now.timestamp() < expires
    }
}

/// Failed logins per client, in memory.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    /// `Some(wait)` when `client` has failed too often and must wait before trying again.
    pub fn refused(&self, client: &str) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, since) = failures.get(client)?;
        let elapsed = since.elapsed();
        (*count >= MAX_FAILURES && elapsed < FAILURE_WINDOW).then(|| FAILURE_WINDOW - elapsed)
    }

    pub fn failed(&self, client: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_CLIENTS && !failures.contains_key(client) {
            // Forget the windows that are over; if none is, the oldest.
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            if failures.len() >= MAX_CLIENTS
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, (_, since))| *since)
                    .map(|(key, _)| key.clone())
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures
            .entry(shared::text::clip(client, 64).to_string())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }

    pub fn succeeded(&self, client: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(client);
    }
}

/// Who is logging in, as far as we can tell: the first `X-Forwarded-For` hop (API Gateway sets
/// it to the caller's address), else one shared bucket.
pub fn client_of(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map_or_else(
            || "unknown".to_string(),
            |value| shared::text::clip(value, 64).to_string(),
        )
}

/// A cookie's value.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const URL: &str = "https://abc.supabase.co";

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    fn access() -> Access {
        Access::new(
            "local-admin".into(),
            Some(JwtVerifier::from_config(&shared::jwt::JwtConfig {
                supabase_url: URL.into(),
                legacy_secret: Some("jwt-secret".into()),
            })),
        )
    }

    fn jwt(claims: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    fn bearer(value: &str) -> HeaderMap {
        headers(header::AUTHORIZATION, &format!("Bearer {value}"))
    }

    #[tokio::test]
    async fn the_token_or_an_admin_access_token_opens_the_page() {
        let access = access();
        let exp = now().timestamp() + 600;
        let iss = shared::jwt::issuer_for(URL);
        assert!(access.allows(&bearer("local-admin"), now()).await);
        assert!(!access.allows(&bearer("local-admin2"), now()).await);
        assert!(!access.allows(&HeaderMap::new(), now()).await);
        let admin = |secret: &[u8], exp: i64, iss: &str| {
            jwt(
                json!({"sub": "9d3e61b0-2a7c-4c55-8f14-c0dede3000aa", "exp": exp, "aud": "authenticated", "iss": iss, "app_metadata": {"role": "admin"}}),
                secret,
            )
        };
        assert!(
            access
                .allows(&bearer(&admin(b"jwt-secret", exp, &iss)), now())
                .await
        );
        let member = jwt(
            json!({"sub": "9d3e61b0-2a7c-4c55-8f14-c0dede3000ab", "exp": exp, "aud": "authenticated", "iss": iss, "role": "authenticated"}),
            b"jwt-secret",
        );
        assert!(
            !access.allows(&bearer(&member), now()).await,
            "a signed-in user is not an admin"
        );
        assert!(
            !access
                .allows(&bearer(&admin(b"other-secret", exp, &iss)), now())
                .await
        );
        assert!(
            !access
                .allows(&bearer(&admin(b"jwt-secret", exp - 4000, &iss)), now())
                .await
        );
        assert!(
            !access
                .allows(
                    &bearer(&admin(
                        b"jwt-secret",
                        exp,
                        "https://other.supabase.co/auth/v1"
                    )),
                    now()
                )
                .await,
            "another project's token"
        );
    }

    #[tokio::test]
    async fn a_session_cookie_opens_the_page_until_it_expires_and_the_token_itself_does_not() {
        let access = access();
        let session = access.new_session(now());
        let with_cookie =
            |value: &str| headers(header::COOKIE, &format!("theme=dark; {COOKIE}={value}"));
        assert!(access.allows(&with_cookie(&session), now()).await);
        assert!(
            !access.allows(&with_cookie("local-admin"), now()).await,
            "the raw token is not a session"
        );
        let later = now() + chrono::Duration::seconds(SESSION_TTL.as_secs() as i64);
        assert!(
            !access.allows(&with_cookie(&session), later).await,
            "expired"
        );
        let (body, _) = session.rsplit_once('.').unwrap();
        let stretched = body.replacen(
            &(now().timestamp() + SESSION_TTL.as_secs() as i64).to_string(),
            "99999999999",
            1,
        );
        assert!(
            !access
                .allows(
                    &with_cookie(&format!(
                        "{stretched}.{}",
                        session.rsplit_once('.').unwrap().1
                    )),
                    now()
                )
                .await,
            "a session cannot be extended"
        );
        let rotated = Access::new("new-token".into(), None);
        assert!(
            !rotated.allows(&with_cookie(&session), now()).await,
            "rotating the token ends every session"
        );
        for garbage in [
            "",
            ".",
            "v1",
            "v1.1.2.3.4",
            "v1.x.y.z",
            "v2.1.2.abc",
            "ü.ü.ü.ü",
        ] {
            assert!(
                !access.allows(&with_cookie(garbage), now()).await,
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn repeated_failures_are_refused_for_the_rest_of_the_window() {
        let throttle = LoginThrottle::default();
        for _ in 0..MAX_FAILURES - 1 {
            throttle.failed("10.0.0.1");
        }
        assert_eq!(throttle.refused("10.0.0.1"), None);
        throttle.failed("10.0.0.1");
        let wait = throttle.refused("10.0.0.1").unwrap();
        assert!(wait > FAILURE_WINDOW - Duration::from_secs(5) && wait <= FAILURE_WINDOW);
        assert_eq!(throttle.refused("10.0.0.2"), None, "per client");
        throttle.succeeded("10.0.0.1");
        assert_eq!(throttle.refused("10.0.0.1"), None);
        assert_eq!(
            client_of(&headers(
                "x-forwarded-for".parse().unwrap(),
                "203.0.113.9, 10.0.0.1"
            )),
            "203.0.113.9"
        );
        assert_eq!(client_of(&HeaderMap::new()), "unknown");
    }

    #[tokio::test]
    async fn an_empty_token_opens_nothing() {
        let access = Access::new(String::new(), None);
        assert!(!access.allows(&bearer(""), now()).await);
    }
}
