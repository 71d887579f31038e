//! Calls to the platforms, bounded: a whole-request timeout, no redirects, answers capped at
//! [`crate::MAX_RESPONSE_BYTES`], retries only for what may pass, and every error text
//! redacted before it is kept. Every Meta answer is also read for its usage headers, and
//! the next call waits when they say the quota is nearly spent ([`meta::pacing`]).

use reqwest::Method;
use secrecy::ExposeSecret;

use crate::{
    Credentials, EtlDeps, ExtractError, MAX_RESPONSE_BYTES, Page, Platform, meta, shopify, tiktok,
    transport_error,
};

/// Fetches one page of ad rows, classifying the platform's error answers. A Meta page's
/// `next` is made safe to follow ([`meta::next_page`]).
pub(crate) async fn fetch(
    deps: &EtlDeps,
    platform: Platform,
    url: &str,
    credentials: &Credentials,
) -> Result<Page, ExtractError> {
    match platform {
        Platform::Meta => {
            let json = call_meta(deps, Method::GET, url, credentials).await?;
            let mut page = meta::parse_page(&json)?;
            page.next = page
                .next
                .map(|next| {
                    meta::next_page(
                        &next,
                        &deps.endpoints.meta_base_url,
                        credentials.proof.as_deref(),
                    )
                })
                .transpose()?;
            Ok(page)
        }
        Platform::Tiktok => {
            let (_, json) = fetch_json(&deps.http, platform, url, credentials).await?;
            tiktok::parse_page(&json, url).map_err(|error| tiktok_backoff(deps, error))
        }
        Platform::Shopify => Err(ExtractError::Malformed(
            "Shopify pages carry orders, not ad rows".into(),
        )),
    }
}

/// Calls Meta (`method` on `url`, the proof already in it) and returns the JSON answer;
/// when the answer's usage headers say the quota is nearly spent, waits as
/// [`meta::pacing::pause`] says before returning, so the next call comes later.
pub(crate) async fn call_meta(
    deps: &EtlDeps,
    method: Method,
    url: &str,
    credentials: &Credentials,
) -> Result<serde_json::Value, ExtractError> {
    let (headers, json) =
        send_json(&deps.http, Platform::Meta, method, url, credentials, None).await?;
    let usage = meta::pacing::usage(&headers);
    if let Some(pause) = meta::pacing::pause(usage, deps.meta.pacing_pause) {
        let highest_pct = usage.map_or(0.0, |usage| usage.highest_pct);
        tracing::info!(
            highest_pct,
            ?pause,
            "Meta usage near its quota; pausing before the next call"
        );
        tokio::time::sleep(pause).await;
    }
    Ok(json)
}

/// A TikTok throttle (40100, which names no wait) waits [`tiktok::TikTokSettings::throttle_wait`].
pub(crate) fn tiktok_backoff(deps: &EtlDeps, error: ExtractError) -> ExtractError {
    match error {
        ExtractError::Throttled {
            message,
            retry_after: None,
        } => ExtractError::Throttled {
            message,
            retry_after: Some(deps.tiktok.throttle_wait),
        },
        other => other,
    }
}

/// Calls TikTok (`method` on `url`, with `body` as JSON) and returns its envelope, its
/// `code` checked ([`tiktok::envelope_error`]).
pub(crate) async fn call_tiktok(
    deps: &EtlDeps,
    method: Method,
    url: &str,
    body: Option<&serde_json::Value>,
    credentials: &Credentials,
) -> Result<serde_json::Value, ExtractError> {
    let (_, text) = request_text(&deps.http, Platform::Tiktok, method, url, body, credentials)
        .await
        .map_err(|error| error.redacted(&credentials.secrets()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| ExtractError::Malformed(error.to_string()))?;
    match tiktok::envelope_error(&json) {
        Some(error) => Err(tiktok_backoff(deps, error)),
        None => Ok(json),
    }
}

/// GETs a TikTok task's download: the report as text (CSV).
pub(crate) async fn download_tiktok(
    deps: &EtlDeps,
    url: &str,
    credentials: &Credentials,
) -> Result<String, ExtractError> {
    request_text(
        &deps.http,
        Platform::Tiktok,
        Method::GET,
        url,
        None,
        credentials,
    )
    .await
    .map(|(_, text)| text)
    .map_err(|error| tiktok_backoff(deps, error.redacted(&credentials.secrets())))
}

/// GETs `url` with the platform's authentication; a success's headers and JSON body, or the
/// platform's error answer classified. Errors never quote the credentials.
pub(crate) async fn fetch_json(
    http: &reqwest::Client,
    platform: Platform,
    url: &str,
    credentials: &Credentials,
) -> Result<(reqwest::header::HeaderMap, serde_json::Value), ExtractError> {
    send_json(http, platform, Method::GET, url, credentials, None).await
}

/// [`fetch_json`] as a `POST` of `body` (Shopify's GraphQL).
pub(crate) async fn post_json(
    http: &reqwest::Client,
    platform: Platform,
    url: &str,
    credentials: &Credentials,
    body: &serde_json::Value,
) -> Result<(reqwest::header::HeaderMap, serde_json::Value), ExtractError> {
    send_json(http, platform, Method::POST, url, credentials, Some(body)).await
}

/// [`fetch_json`] with any method, and a JSON body when there is one.
async fn send_json(
    http: &reqwest::Client,
    platform: Platform,
    method: Method,
    url: &str,
    credentials: &Credentials,
    body: Option<&serde_json::Value>,
) -> Result<(reqwest::header::HeaderMap, serde_json::Value), ExtractError> {
    let parsed = async {
        let (headers, text) = request_text(http, platform, method, url, body, credentials).await?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|error| ExtractError::Malformed(error.to_string()))?;
        Ok((headers, json))
    };
    parsed
        .await
        .map_err(|error: ExtractError| error.redacted(&credentials.secrets()))
}

/// One call with the platform's authentication (and `body` as JSON): a success's headers
/// and body text, or the platform's error answer classified. Not yet redacted.
async fn request_text(
    http: &reqwest::Client,
    platform: Platform,
    method: Method,
    url: &str,
    body: Option<&serde_json::Value>,
    credentials: &Credentials,
) -> Result<(reqwest::header::HeaderMap, String), ExtractError> {
    let token = credentials.token.expose_secret();
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(body);
    }
    let request = match platform {
        // The proof is already in `url`; the token never is.
        Platform::Meta => request.bearer_auth(token),
        Platform::Tiktok => request.header("Access-Token", token),
        Platform::Shopify => request.header("X-Shopify-Access-Token", token),
    };
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = capped_text(response).await?;
    if !status.is_success() {
        return Err(match platform {
            Platform::Meta => meta::classify(status, &headers, &body),
            Platform::Tiktok => tiktok::classify(status, &headers, &body),
            Platform::Shopify => shopify::classify(status, &headers, &body),
        });
    }
    Ok((headers, body))
}

/// The body as text, refusing one larger than [`MAX_RESPONSE_BYTES`] without holding it.
async fn capped_text(mut response: reqwest::Response) -> Result<String, ExtractError> {
    let too_large = |length: u64| {
        ExtractError::Malformed(format!(
            "an answer of {length} bytes or more exceeds the {MAX_RESPONSE_BYTES} bytes a page may have"
        ))
    };
    if let Some(length) = response.content_length()
        && length > MAX_RESPONSE_BYTES as u64
    {
        return Err(too_large(length));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        let length = body.len().saturating_add(chunk.len());
        if length > MAX_RESPONSE_BYTES {
            return Err(too_large(length as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
