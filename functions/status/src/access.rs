//! Who may see the status page: the holder of `STATUS_TOKEN`, or a Supabase user whose JWT
//! says they are an admin (`app_metadata.role = "admin"`, or the `service_role` key).
//!
//! The credential comes as `Authorization: Bearer …`, or — for a person in a browser, who
//! cannot set headers — as the `status_token` cookie that `POST /status/login` sets after
//! checking the token typed into the page's form. The cookie is HttpOnly and SameSite=Strict,
//! scoped to `/status`.

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The cookie a browser keeps the token in.
pub const COOKIE: &str = "status_token";

pub struct Access {
    pub token: String,
    /// Supabase's JWT secret; `None` accepts only the token.
    pub jwt_secret: Option<Vec<u8>>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    app_metadata: AppMetadata,
}

#[derive(Debug, Default, Deserialize)]
struct AppMetadata {
    #[serde(default)]
    role: Option<String>,
}

impl Access {
    /// Whether `presented` is the token (compared in constant time).
    pub fn is_token(&self, presented: &str) -> bool {
        !self.token.is_empty()
            && shared::webhook::constant_time_eq(self.token.as_bytes(), presented.as_bytes())
    }

    /// Whether `presented` is a valid Supabase JWT of an admin.
    fn is_admin_jwt(&self, presented: &str) -> bool {
        let Some(secret) = &self.jwt_secret else {
            return false;
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        jsonwebtoken::decode::<Claims>(presented, &DecodingKey::from_secret(secret), &validation)
            .is_ok_and(|data| {
                data.claims.role.as_deref() == Some("service_role")
                    || data.claims.app_metadata.role.as_deref() == Some("admin")
            })
    }

    /// Whether the request carries a credential that opens the page.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if let Some(presented) = bearer {
            return self.is_token(presented) || self.is_admin_jwt(presented);
        }
        cookie(headers, COOKIE).is_some_and(|presented| self.is_token(&presented))
    }
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

    fn access() -> Access {
        Access {
            token: "local-admin".into(),
            jwt_secret: Some(b"jwt-secret".to_vec()),
        }
    }

    fn jwt(claims: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {value}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn the_token_a_cookie_or_an_admin_jwt_opens_the_page() {
        let access = access();
        let exp = chrono::Utc::now().timestamp() + 600;
        assert!(access.allows(&bearer("local-admin")));
        assert!(!access.allows(&bearer("local-admin2")));
        assert!(!access.allows(&HeaderMap::new()));
        let mut cookies = HeaderMap::new();
        cookies.insert(
            header::COOKIE,
            "theme=dark; status_token=local-admin".parse().unwrap(),
        );
        assert!(access.allows(&cookies));
        let admin = jwt(
            json!({"sub": "u", "exp": exp, "aud": "authenticated", "app_metadata": {"role": "admin"}}),
            b"jwt-secret",
        );
        assert!(access.allows(&bearer(&admin)));
        let service = jwt(json!({"role": "service_role", "exp": exp}), b"jwt-secret");
        assert!(access.allows(&bearer(&service)));
        let member = jwt(
            json!({"sub": "u", "exp": exp, "aud": "authenticated", "role": "authenticated"}),
            b"jwt-secret",
        );
        assert!(
            !access.allows(&bearer(&member)),
            "a signed-in user is not an admin"
        );
        let forged = jwt(
            json!({"exp": exp, "app_metadata": {"role": "admin"}}),
            b"other-secret",
        );
        assert!(!access.allows(&bearer(&forged)));
        let expired = jwt(
            json!({"exp": exp - 4000, "app_metadata": {"role": "admin"}}),
            b"jwt-secret",
        );
        assert!(!access.allows(&bearer(&expired)));
    }

    #[test]
    fn an_empty_token_opens_nothing() {
        let access = Access {
            token: String::new(),
            jwt_secret: None,
        };
        assert!(!access.allows(&bearer("")));
    }
}
