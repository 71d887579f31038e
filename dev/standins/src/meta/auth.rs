//! How the Meta stand-in checks credentials, in Meta's order: the token (from
//! `access_token`, else `Authorization: Bearer`) must be the configured one and not
//! expired, and then — when the app requires it — `appsecret_proof` must be the token's
//! HMAC under the app secret.

use axum::http::{HeaderMap, header};
use axum::response::Response;

use super::faults::MetaState;
use super::graph_error::GraphError;
use crate::query::first;

/// `appsecret_proof` as Meta computes it: the lowercase hex HMAC-SHA256 of the token, keyed
/// by the app secret.
pub fn appsecret_proof(token: &str, app_secret: &str) -> String {
    shared::webhook::hmac_sha256(app_secret.as_bytes(), &[token.as_bytes()])
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The token a request carries: `access_token`, else `Authorization: Bearer`.
fn token_of(query: &[(String, String)], headers: &HeaderMap) -> Option<String> {
    first(query, "access_token").map(str::to_owned).or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::to_owned)
    })
}

impl MetaState {
    /// The refusal of a request whose token or proof does not pass; `None` lets it through.
    pub(super) fn refuse_credentials(
        &self,
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Option<Response> {
        let refusal = match token_of(query, headers) {
            None => GraphError::oauth(104, "An access token is required to request this resource."),
            Some(token) if token != self.token => {
                GraphError::oauth(190, "Invalid OAuth access token - Cannot parse access token")
            }
            Some(_) if self.switches.token_expired() => GraphError::oauth(
                190,
                "Error validating access token: Session has expired on Monday, 30-Nov-26 09:00:00 PST. The current time is Tuesday, 01-Dec-26 06:00:00 PST.",
            )
            .subcode(463),
            Some(_) => return self.refuse_proof(query),
        };
        Some(self.error(refusal))
    }

    /// The refusal of a request whose `appsecret_proof` is missing or wrong, when the app
    /// requires one. Called after the token was accepted, as Meta checks it.
    fn refuse_proof(&self, query: &[(String, String)]) -> Option<Response> {
        let secret = self.app_secret.as_deref()?;
        let expected = appsecret_proof(&self.token, secret);
        let message = match first(query, "appsecret_proof") {
            None => "API calls from the server require an appsecret_proof argument",
            Some(proof) if proof.eq_ignore_ascii_case(&expected) => return None,
            Some(_) => "Invalid appsecret_proof provided in the API argument",
        };
        Some(self.error(GraphError::method(100, message)))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::super::DEFAULT_META_TOKEN;
    use super::super::test_support::{config, first_uri, proof};
    use crate::test_support::get;
    use crate::{Outcome, router};

    #[tokio::test]
    async fn tokens_missing_wrong_or_expired_get_oauth_errors() {
        let (router, handles) = router(&config(3), "http://standins.test");
        let uri = first_uri("2026-11-01", "2026-11-02", 10);
        handles.meta.expire_token();
        let (status, _, body) = get(&router, &uri, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], 190);
        assert_eq!(body["error"]["error_subcode"], 463);
        assert_eq!(body["error"]["type"], "OAuthException");
        handles.meta.renew_token();

        let wrong = uri.replace(DEFAULT_META_TOKEN, "nope");
        let (_, _, body) = get(&router, &wrong, &[]).await;
        assert_eq!(body["error"]["code"], 190);
        assert!(body["error"].get("error_subcode").is_none());

        let bearer = uri.replace(&format!("&access_token={DEFAULT_META_TOKEN}"), "");
        let (status, _, body) = get(&router, &bearer, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], 104);
        let auth = format!("Bearer {DEFAULT_META_TOKEN}");
        let (status, _, _) = get(&router, &bearer, &[("authorization", &auth)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(handles.meta.count(Outcome::AuthFailed), 3);
        // The next page repeats the token, as Meta's links do, though it came as a header.
        let paged = first_uri("2026-11-01", "2026-11-02", 2)
            .replace(&format!("&access_token={DEFAULT_META_TOKEN}"), "");
        let (_, _, body) = get(&router, &paged, &[("authorization", &auth)]).await;
        let next = body["paging"]["next"].as_str().unwrap();
        assert!(
            next.contains(&format!("access_token={DEFAULT_META_TOKEN}")),
            "{next}"
        );
    }

    #[tokio::test]
    async fn the_app_secret_proof_is_required_and_checked() {
        let (router, handles) = router(&config(3), "http://standins.test");
        let uri = first_uri("2026-11-01", "2026-11-02", 10);
        let unsigned = uri.replace(
            &format!("&appsecret_proof={}", proof(DEFAULT_META_TOKEN)),
            "",
        );
        let (status, _, body) = get(&router, &unsigned, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], 100);
        assert_eq!(body["error"]["type"], "GraphMethodException");
        assert_eq!(
            body["error"]["message"],
            "API calls from the server require an appsecret_proof argument"
        );
        let forged = uri.replace(&proof(DEFAULT_META_TOKEN), &proof("another-token"));
        let (status, _, body) = get(&router, &forged, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["error"]["message"],
            "Invalid appsecret_proof provided in the API argument"
        );
        assert_eq!(handles.meta.count(Outcome::AuthFailed), 2);
        let (status, _, _) = get(&router, &uri, &[]).await;
        assert_eq!(status, StatusCode::OK);

        // An app that does not require the proof takes requests without one.
        let mut open = config(3);
        open.meta.app_secret = None;
        let (router, _) = crate::router(&open, "http://standins.test");
        let (status, _, _) = get(&router, &unsigned, &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
}
