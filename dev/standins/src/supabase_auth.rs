//! A stand-in for the part of Supabase Auth our APIs depend on: the project's signing keys,
//! published at `/auth/v1/.well-known/jwks.json`, and access tokens signed with them as
//! Supabase issues them today (ES256 by default, RS256 as the alternative, header
//! `{alg, kid, typ: "JWT"}`, the claims of a signed-in user).
//!
//! Keys are real: P-256 and 2048-bit RSA pairs generated per stand-in by aws-lc-rs, and the
//! tokens are signed here without the verifier's JWT library, so a test proves the two agree
//! on the format rather than sharing a mistake. A test rotates keys as a project owner does
//! (publish a standby key, sign with it, revoke the old one), makes the endpoint fail, and
//! counts how often it was asked.
//!
//! Left out: sign-in itself (sessions, refresh tokens, `/token`), which no agent calls.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
    RsaPublicKeyComponents,
};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The asymmetric algorithms Supabase's signing keys use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    Es256,
    Rs256,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

struct SigningKey {
    kid: String,
    pair: Pair,
}

impl SigningKey {
    fn generate(algorithm: SigningAlgorithm) -> Self {
        let pair = match algorithm {
            SigningAlgorithm::Es256 => Pair::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("generate a P-256 key"),
            ),
            SigningAlgorithm::Rs256 => Pair::Rsa(
                RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .expect("generate an RSA key"),
            ),
        };
        Self {
            kid: uuid::Uuid::new_v4().to_string(),
            pair,
        }
    }

    fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Ec(_) => "ES256",
            Pair::Rsa(_) => "RS256",
        }
    }

    /// The public half as Supabase's JWKS lists it.
    fn jwk(&self) -> Value {
        let common = json!({"kid": self.kid, "alg": self.alg(), "use": "sig",
                            "key_ops": ["verify"], "ext": true});
        let mut jwk = match &self.pair {
            Pair::Ec(pair) => {
                // An uncompressed point: 0x04, then x and y of 32 bytes each.
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256",
                       "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                       "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
            }
            Pair::Rsa(pair) => {
                let components = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&components.n),
                       "e": URL_SAFE_NO_PAD.encode(&components.e)})
            }
        };
        jwk.as_object_mut()
            .expect("an object")
            .extend(common.as_object().expect("an object").clone());
        jwk
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match &self.pair {
            Pair::Ec(pair) => pair
                .sign(&rng, input.as_bytes())
                .expect("sign with P-256")
                .as_ref()
                .to_vec(),
            Pair::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut signature)
                    .expect("sign with RSA");
                signature
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

#[derive(Default)]
struct AuthState {
    /// Published keys; the first signs new tokens.
    keys: Mutex<Vec<SigningKey>>,
    fetches: AtomicUsize,
    failing: AtomicBool,
}

impl AuthState {
    fn keys(&self) -> std::sync::MutexGuard<'_, Vec<SigningKey>> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running stand-in on `127.0.0.1:0`; dropping it stops the server.
pub struct SupabaseAuth {
    addr: SocketAddr,
    state: Arc<AuthState>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl SupabaseAuth {
    /// Serves one ES256 key, which signs new tokens.
    pub async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(AuthState::default());
        state
            .keys()
            .push(SigningKey::generate(SigningAlgorithm::Es256));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("bind the Supabase Auth stand-in to 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let router = Router::new()
            .route("/auth/v1/.well-known/jwks.json", get(jwks))
            .with_state(state.clone());
        let (shutdown, task) = crate::server::serve(listener, router, "the Supabase Auth stand-in");
        Ok(Self {
            addr,
            state,
            shutdown,
            task: Some(task),
        })
    }

    /// Stands for `https://<ref>.supabase.co`: the project's `SUPABASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `iss` of this project's tokens.
    pub fn issuer(&self) -> String {
        format!("{}/auth/v1", self.url())
    }

    /// The key that signs new tokens.
    pub fn current_kid(&self) -> String {
        self.state.keys()[0].kid.clone()
    }

    /// Publishes a new key and signs new tokens with it (a rotation); the previous keys stay
    /// published until [`Self::revoke`]. Returns the new key's id.
    pub fn rotate(&self, algorithm: SigningAlgorithm) -> String {
        let key = SigningKey::generate(algorithm);
        let kid = key.kid.clone();
        self.state.keys().insert(0, key);
        kid
    }

    /// Stops publishing `kid`.
    pub fn revoke(&self, kid: &str) {
        self.state.keys().retain(|key| key.kid != kid);
    }

    /// A signed-in user's access token, signed with the current key, valid for an hour
    /// from `issued_at` (seconds since the epoch).
    pub fn access_token(&self, user: uuid::Uuid, issued_at: i64) -> String {
        self.sign(&self.user_claims(user, issued_at))
    }

    /// The claims Supabase Auth puts in a signed-in user's access token.
    pub fn user_claims(&self, user: uuid::Uuid, issued_at: i64) -> Value {
        json!({
            "iss": self.issuer(), "sub": user.to_string(), "aud": "authenticated",
            "exp": issued_at + 3600, "iat": issued_at, "role": "authenticated",
            "aal": "aal1", "amr": [{"method": "password", "timestamp": issued_at}],
            "session_id": uuid::Uuid::new_v4().to_string(), "is_anonymous": false,
            "email": format!("{user}@example.com"), "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {},
        })
    }

    /// `claims` signed with the current key.
    pub fn sign(&self, claims: &Value) -> String {
        let keys = self.state.keys();
        let key = &keys[0];
        key.sign(
            &json!({"alg": key.alg(), "kid": key.kid, "typ": "JWT"}),
            claims,
        )
    }

    /// `claims` signed with the published key `kid` under a header of the caller's choice
    /// (an attacker's: another `alg`, another `kid`).
    pub fn sign_with_header(&self, kid: &str, header: &Value, claims: &Value) -> String {
        let keys = self.state.keys();
        let key = keys
            .iter()
            .find(|key| key.kid == kid)
            .expect("a published key");
        key.sign(header, claims)
    }

    /// The published key set, as served.
    pub fn jwks(&self) -> Value {
        published(&self.state)
    }

    /// How many times the key set was asked for.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    /// Makes the key set answer 503 (or serve again).
    pub fn fail(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }
}

impl Drop for SupabaseAuth {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn published(state: &AuthState) -> Value {
    json!({ "keys": state.keys().iter().map(SigningKey::jwk).collect::<Vec<_>>() })
}

async fn jwks(State(state): State<Arc<AuthState>>) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"code":503,"error_code":"unexpected_failure","msg":"Service Unavailable"}"#,
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=600"),
        ],
        published(&state).to_string(),
    )
        .into_response()
}
