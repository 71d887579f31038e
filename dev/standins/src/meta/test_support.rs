//! What the Meta stand-in's tests share: a pinned configuration, the first request of a
//! sync as the ETL agent sends it, and a walk along `paging.next`.

use axum::Router;
use axum::http::StatusCode;

use super::{DEFAULT_META_ACCOUNT, DEFAULT_META_APP_SECRET, DEFAULT_META_TOKEN, appsecret_proof};
use crate::StandinConfig;
use crate::query::encode_query;
use crate::test_support::{get, path_of, pinned_config};

/// Today pinned, and `ads` ads on the default account.
pub(super) fn config(ads: usize) -> StandinConfig {
    let mut config = pinned_config();
    config.meta.accounts[0].ads = ads;
    config
}

const FIELDS: &str = "account_id,campaign_id,campaign_name,adset_id,ad_id,ad_name,spend,impressions,clicks,actions,action_values";

pub(super) fn first_uri(since: &str, until: &str, limit: u32) -> String {
    format!(
        "/meta/v27.0/act_{DEFAULT_META_ACCOUNT}/insights?{}",
        encode_query([
            ("level", "ad"),
            ("time_increment", "1"),
            (
                "time_range",
                &format!(r#"{{"since":"{since}","until":"{until}"}}"#)
            ),
            ("fields", FIELDS),
            ("limit", &limit.to_string()),
            ("access_token", DEFAULT_META_TOKEN),
            ("appsecret_proof", &proof(DEFAULT_META_TOKEN)),
        ])
    )
}

pub(super) fn proof(token: &str) -> String {
    appsecret_proof(token, DEFAULT_META_APP_SECRET)
}

/// Follows `paging.next` to the end; returns every row.
pub(super) async fn walk(router: &Router, uri: String) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    let mut next = Some(uri);
    while let Some(uri) = next.take() {
        let (status, _, body) = get(router, &uri, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        rows.extend(body["data"].as_array().unwrap().iter().cloned());
        next = body["paging"]["next"].as_str().map(path_of);
    }
    rows
}
