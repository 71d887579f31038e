//! Access tokens as Supabase issues them now, against a local Supabase Auth stand-in that
//! publishes real ES256 and RS256 keys: every API's verifier (`shared::jwt`) accepts tokens
//! from the published keys, follows a rotation to a new `kid`, refuses revoked keys,
//! confused algorithms and made-up key ids without asking Supabase more than once per
//! interval, and says "retry later" — never "you are refused" — while the keys are
//! unreachable.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use shared::jwt::{JwtConfig, JwtError, JwtVerifier, KeyPolicy};
use standins::supabase_auth::{SigningAlgorithm, SupabaseAuth};
use uuid::Uuid;

const LEGACY_SECRET: &str = "legacy-jwt-secret-of-at-least-32-characters";

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn verifier(auth: &SupabaseAuth, legacy: bool, policy: KeyPolicy) -> JwtVerifier {
    JwtVerifier::with_policy(
        &JwtConfig {
            supabase_url: auth.url(),
            legacy_secret: legacy.then(|| LEGACY_SECRET.into()),
        },
        policy,
    )
}

/// Intervals short enough for a test to wait one out.
fn quick() -> KeyPolicy {
    KeyPolicy {
        max_age: Duration::from_millis(400),
        min_refresh: Duration::from_millis(200),
        max_stale: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
    }
}

fn legacy_token(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn es256_rs256_and_legacy_hs256_tokens_are_accepted_as_supabase_issues_them() {
    let auth = SupabaseAuth::start().await.unwrap();
    let user = Uuid::new_v4();
    let at = now().timestamp();
    let with_legacy = verifier(&auth, true, KeyPolicy::default());
    let es256 = auth.access_token(user, at);
    // Both keys published before the first fetch (a rotation moments later is covered by
    // the rotation test: it waits out the refresh interval).
    auth.rotate(SigningAlgorithm::Rs256);
    let rs256 = auth.access_token(user, at);
    assert_eq!(
        with_legacy.verify(&es256, now()).await.unwrap().sub,
        user.to_string()
    );
    assert_eq!(
        jsonwebtoken::decode_header(&rs256).unwrap().alg,
        jsonwebtoken::Algorithm::RS256
    );
    assert_eq!(
        with_legacy.verify(&rs256, now()).await.unwrap().sub,
        user.to_string()
    );
    let hs256 = legacy_token(&auth.user_claims(user, at), LEGACY_SECRET);
    assert!(with_legacy.verify(&hs256, now()).await.is_ok());

    // Without the legacy secret configured, HS256 is refused — whatever it is signed with.
    let asymmetric_only = verifier(&auth, false, KeyPolicy::default());
    assert!(asymmetric_only.verify(&es256, now()).await.is_ok());
    assert!(matches!(
        asymmetric_only.verify(&hs256, now()).await,
        Err(JwtError::Algorithm(_))
    ));
    // Claims are still checked on asymmetric tokens: another project's, expired, or anon.
    let mut claims = auth.user_claims(user, at);
    claims["iss"] = json!("https://other.supabase.co/auth/v1");
    assert!(matches!(
        asymmetric_only.verify(&auth.sign(&claims), now()).await,
        Err(JwtError::Issuer(_))
    ));
    let expired = auth.access_token(user, at - 7200);
    assert_eq!(
        asymmetric_only.verify(&expired, now()).await,
        Err(JwtError::Expired)
    );
    let mut anon = auth.user_claims(user, at);
    anon["aud"] = json!("anon");
    assert_eq!(
        asymmetric_only.verify(&auth.sign(&anon), now()).await,
        Err(JwtError::Audience)
    );
    // A tampered payload fails the signature.
    let mut parts: Vec<String> = es256.split('.').map(str::to_string).collect();
    let mut forged = auth.user_claims(Uuid::new_v4(), at);
    forged["app_metadata"]["role"] = json!("admin");
    parts[1] = base64(&forged.to_string());
    assert!(matches!(
        asymmetric_only.verify(&parts.join("."), now()).await,
        Err(JwtError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_rotation_to_a_new_kid_is_followed_and_a_revoked_key_is_refused() {
    let auth = SupabaseAuth::start().await.unwrap();
    let verifier = verifier(&auth, false, quick());
    let user = Uuid::new_v4();
    let at = now().timestamp();
    let old_kid = auth.current_kid();
    let old = auth.access_token(user, at);
    assert!(verifier.verify(&old, now()).await.is_ok());
    assert_eq!(auth.fetches(), 1);
    for _ in 0..20 {
        verifier.verify(&old, now()).await.unwrap();
    }
    assert_eq!(auth.fetches(), 1, "the key set is cached");

    // Supabase publishes the standby key, then signs with it: the unknown kid is fetched.
    tokio::time::sleep(quick().min_refresh).await;
    let new_kid = auth.rotate(SigningAlgorithm::Es256);
    let new = auth.access_token(user, at);
    assert!(verifier.verify(&new, now()).await.is_ok());
    assert_eq!(auth.fetches(), 2, "one fetch for the new kid");
    assert!(
        verifier.verify(&old, now()).await.is_ok(),
        "the previous key works until it is revoked"
    );

    // Revoking the old key takes effect once the cached set is older than max_age.
    auth.revoke(&old_kid);
    tokio::time::sleep(quick().max_age).await;
    assert_eq!(
        verifier.verify(&old, now()).await,
        Err(JwtError::UnknownKey(old_kid))
    );
    assert!(verifier.verify(&new, now()).await.is_ok());
    assert_eq!(auth.current_kid(), new_kid);
}

#[tokio::test]
async fn made_up_key_ids_cost_supabase_one_fetch_per_interval_even_concurrently() {
    let auth = SupabaseAuth::start().await.unwrap();
    let verifier = Arc::new(verifier(&auth, false, KeyPolicy::default()));
    let kid = auth.current_kid();
    let claims = auth.user_claims(Uuid::new_v4(), now().timestamp());
    // 64 tokens at once, each naming a key that does not exist, signed with the real one.
    let mut attempts = tokio::task::JoinSet::new();
    for attempt in 0..64 {
        let verifier = verifier.clone();
        let token = auth.sign_with_header(
            &kid,
            &json!({"alg": "ES256", "typ": "JWT", "kid": format!("made-up-{attempt}")}),
            &claims,
        );
        attempts.spawn(async move { verifier.verify(&token, now()).await });
    }
    for verdict in attempts.join_all().await {
        assert!(matches!(verdict, Err(JwtError::UnknownKey(_))));
    }
    assert_eq!(auth.fetches(), 1, "one fetch for all of them");
    // And a genuine token is still served from that one fetch.
    assert!(verifier.verify(&auth.sign(&claims), now()).await.is_ok());
    assert_eq!(auth.fetches(), 1);
}

#[tokio::test]
async fn confused_algorithms_are_refused() {
    let auth = SupabaseAuth::start().await.unwrap();
    let verifier = verifier(&auth, true, KeyPolicy::default());
    let claims = auth.user_claims(Uuid::new_v4(), now().timestamp());
    let ec_kid = auth.current_kid();
    let jwks = auth.jwks();
    // The classic confusion: HS256 keyed with the published public key (here its `x`).
    let public_x = jwks["keys"][0]["x"].as_str().unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(ec_kid.clone());
    let confused = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(public_x.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        verifier.verify(&confused, now()).await,
        Err(JwtError::Invalid(_))
    ));
    // A header claiming RS256 for the EC key.
    let claimed_rsa =
        auth.sign_with_header(&ec_kid, &json!({"alg": "RS256", "kid": ec_kid}), &claims);
    assert!(matches!(
        verifier.verify(&claimed_rsa, now()).await,
        Err(JwtError::Algorithm(_))
    ));
    // An algorithm Supabase does not use, and none at all.
    for alg in ["ES384", "PS256", "none"] {
        let token = auth.sign_with_header(&ec_kid, &json!({"alg": alg, "kid": ec_kid}), &claims);
        assert!(
            matches!(
                verifier.verify(&token, now()).await,
                Err(JwtError::Algorithm(_) | JwtError::Invalid(_))
            ),
            "{alg}"
        );
    }
}

#[tokio::test]
async fn unreachable_keys_are_a_retry_not_a_refusal_and_cached_keys_carry_on() {
    let auth = SupabaseAuth::start().await.unwrap();
    let verifier = verifier(&auth, false, quick());
    let token = auth.access_token(Uuid::new_v4(), now().timestamp());

    auth.fail(true);
    let refused = verifier.verify(&token, now()).await.unwrap_err();
    assert!(matches!(refused, JwtError::KeysUnavailable(_)), "{refused}");
    let answer = shared::http::ApiError::from(refused);
    assert_eq!(answer.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.retryable());
    // Within the refresh interval nobody asks again, and the answer is the same.
    assert!(matches!(
        verifier.verify(&token, now()).await,
        Err(JwtError::KeysUnavailable(_))
    ));
    assert_eq!(auth.fetches(), 1);

    auth.fail(false);
    tokio::time::sleep(quick().min_refresh).await;
    assert!(verifier.verify(&token, now()).await.is_ok(), "back");

    // Once fetched, keys stay usable while Supabase is down, up to max_stale.
    auth.fail(true);
    tokio::time::sleep(quick().max_age).await;
    assert!(verifier.verify(&token, now()).await.is_ok(), "stale keys");
    assert!(auth.fetches() >= 3, "it tried to refresh");
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
