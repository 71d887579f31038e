//! Webhook signature checks.
//!
//! All three providers we receive webhooks from sign with HMAC-SHA256 over the raw body
//! bytes (never a re-serialised body, whose bytes would differ):
//!
//! * Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]` over `"{t}.{body}"`, keyed by
//!   the endpoint secret; any `v1` may match, and during a secret roll several secrets are
//!   valid. Tolerance 300 s.
//! * Shopify: `X-Shopify-Hmac-Sha256: base64(HMAC(app secret, body))`.
//! * Svix (Resend): `svix-signature: v1,<base64> [v1,<base64>…]` over `"{id}.{timestamp}.{body}"`,
//!   keyed by the base64 decoding of the secret after `whsec_`. Tolerance 5 minutes.
//!
//! Comparisons are constant-time, so a forger learns nothing from response timing. The
//! timestamp checks stop a captured request from being replayed later.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was rejected. Always permanent: retrying the same request cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header is missing")]
    Missing,
    #[error("signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("signature timestamp is outside the {tolerance_secs} s tolerance")]
    Expired { tolerance_secs: u64 },
    #[error("signature does not match")]
    Mismatch,
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of a computed MAC and a claimed one.
pub fn constant_time_eq(expected: &[u8], claimed: &[u8]) -> bool {
    expected.ct_eq(claimed).into()
}

/// Checks a hex-encoded HMAC-SHA256 signature.
pub fn verify_hex(key: &[u8], parts: &[&[u8]], claimed_hex: &str) -> bool {
    hex::decode(claimed_hex.trim())
        .is_ok_and(|claimed| constant_time_eq(&hmac_sha256(key, parts), &claimed))
}

/// Checks a base64-encoded HMAC-SHA256 signature.
pub fn verify_base64(key: &[u8], parts: &[&[u8]], claimed_base64: &str) -> bool {
    BASE64
        .decode(claimed_base64.trim())
        .is_ok_and(|claimed| constant_time_eq(&hmac_sha256(key, parts), &claimed))
}

fn check_tolerance(timestamp: i64, now: i64, tolerance_secs: u64) -> Result<(), SignatureError> {
    if now.abs_diff(timestamp) > tolerance_secs {
        Err(SignatureError::Expired { tolerance_secs })
    } else {
        Ok(())
    }
}

/// Stripe's default tolerance.
pub const STRIPE_TOLERANCE_SECS: u64 = 300;

/// Verifies a `Stripe-Signature` header against any of `secrets` (more than one while a
/// secret is being rolled). `now` is Unix seconds.
pub fn verify_stripe(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[&str],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is not a number"))?,
                )
            }
            Some(("v1", value)) => signatures.push(value),
            Some(_) => {}
            None => return Err(SignatureError::Malformed("expected key=value pairs")),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t= timestamp"))?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed("no v1 signature"));
    }
    check_tolerance(timestamp, now, STRIPE_TOLERANCE_SECS)?;
    let stamp = timestamp.to_string();
    let parts: [&[u8]; 3] = [stamp.as_bytes(), b".", payload];
    let matched = secrets.iter().any(|secret| {
        signatures
            .iter()
            .any(|signature| verify_hex(secret.as_bytes(), &parts, signature))
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Builds a `Stripe-Signature` header; used by tests and the demo traffic generator.
pub fn sign_stripe(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let stamp = timestamp.to_string();
    let mac = hmac_sha256(secret.as_bytes(), &[stamp.as_bytes(), b".", payload]);
    format!("t={timestamp},v1={}", hex::encode(mac))
}

/// Verifies `X-Shopify-Hmac-Sha256`.
pub fn verify_shopify(
    payload: &[u8],
    header: Option<&str>,
    secret: &str,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if verify_base64(secret.as_bytes(), &[payload], header) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

pub fn sign_shopify(payload: &[u8], secret: &str) -> String {
    BASE64.encode(hmac_sha256(secret.as_bytes(), &[payload]))
}

pub const SVIX_TOLERANCE_SECS: u64 = 300;

/// The headers Svix sends with each delivery.
#[derive(Debug, Clone, Copy)]
pub struct SvixHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

fn svix_key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    BASE64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| SignatureError::Malformed("secret is not whsec_<base64>"))
}

/// Verifies a Svix-signed delivery (Resend webhooks).
pub fn verify_svix(
    payload: &[u8],
    headers: SvixHeaders<'_>,
    secret: &str,
    now: i64,
) -> Result<(), SignatureError> {
    let (id, timestamp, signature) = match (headers.id, headers.timestamp, headers.signature) {
        (Some(id), Some(timestamp), Some(signature)) => (id, timestamp, signature),
        _ => return Err(SignatureError::Missing),
    };
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed("svix-timestamp is not a number"))?;
    check_tolerance(seconds, now, SVIX_TOLERANCE_SECS)?;
    let key = svix_key(secret)?;
    let parts: [&[u8]; 5] = [
        id.as_bytes(),
        b".",
        timestamp.trim().as_bytes(),
        b".",
        payload,
    ];
    let matched = signature
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|claimed| verify_base64(&key, &parts, claimed));
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Builds a `svix-signature` header value.
pub fn sign_svix(
    payload: &[u8],
    id: &str,
    timestamp: i64,
    secret: &str,
) -> Result<String, SignatureError> {
    let key = svix_key(secret)?;
    let stamp = timestamp.to_string();
    let mac = hmac_sha256(
        &key,
        &[id.as_bytes(), b".", stamp.as_bytes(), b".", payload],
    );
    Ok(format!("v1,{}", BASE64.encode(mac)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_hex(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &hex::encode(mac)
        ));
        assert!(verify_base64(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &BASE64.encode(mac)
        ));
        assert!(!verify_hex(
            b"Jefe",
            &[b"what do ya want for nothing!"],
            &hex::encode(mac)
        ));
        assert!(!verify_hex(b"Jefe", &[b"x"], "not hex"));
    }

    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
    const NOW: i64 = 1_764_590_000;

    #[test]
    fn stripe_accepts_any_v1_and_any_rolled_secret() {
        let header = sign_stripe(BODY, "whsec_new", NOW);
        let with_old = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(
            verify_stripe(BODY, Some(&with_old), &["whsec_old", "whsec_new"], NOW + 10),
            Ok(())
        );
        assert_eq!(
            verify_stripe(BODY, Some(&header), &["whsec_old"], NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stripe_rejects_tampering_staleness_and_garbage() {
        let header = sign_stripe(BODY, "whsec_a", NOW);
        assert_eq!(
            verify_stripe(b"{}", Some(&header), &["whsec_a"], NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_stripe(BODY, Some(&header), &["whsec_a"], NOW + 301),
            Err(SignatureError::Expired {
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify_stripe(BODY, None, &["whsec_a"], NOW),
            Err(SignatureError::Missing)
        );
        assert!(matches!(
            verify_stripe(BODY, Some("v1=abc"), &["whsec_a"], NOW),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify_stripe(BODY, Some(&format!("t={NOW}")), &["whsec_a"], NOW),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn shopify_base64() {
        let header = sign_shopify(BODY, "shpss_secret");
        assert_eq!(verify_shopify(BODY, Some(&header), "shpss_secret"), Ok(()));
        assert_eq!(
            verify_shopify(BODY, Some(&header), "other"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_shopify(BODY, None, "shpss_secret"),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn svix_signatures() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let signature = sign_svix(BODY, "msg_1", NOW, secret).unwrap();
        let stamp = NOW.to_string();
        let headers = |signature| SvixHeaders {
            id: Some("msg_1"),
            timestamp: Some(&stamp),
            signature,
        };
        let several = format!("v1,AAAA {signature}");
        assert_eq!(
            verify_svix(BODY, headers(Some(&several)), secret, NOW),
            Ok(())
        );
        assert_eq!(
            verify_svix(b"{}", headers(Some(&signature)), secret, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_svix(BODY, headers(Some(&signature)), secret, NOW - 301),
            Err(SignatureError::Expired {
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify_svix(BODY, headers(None), secret, NOW),
            Err(SignatureError::Missing)
        );
    }
}
