//! Hostile and faulty requests against every entry point of a running stack.
//!
//! [`run`] sends each request of [`catalogue`] — forged and stale signatures, malformed,
//! huge, compressed and nested bodies, Unicode at the edges, values the database refuses
//! under a valid signature, brute-forced logins — and reports every answer that breaks the
//! rules: a 5xx for a fault of the input (every request here is one), or a stack that stops
//! answering. [`leaked_credentials`] then looks for credentials in every error the stack
//! stored. The suite runs it against the local stack in-process; the `attack` binary runs it
//! against any URL, such as a `--release` build of the local stack.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// The secrets and tokens the target was started with (the local stack's defaults).
#[derive(Debug, Clone)]
pub struct Target {
    pub base_url: String,
    pub stripe_secret: String,
    pub shopify_secret: String,
    pub resend_secret: String,
    pub posthog_token: String,
    pub posthog_webhook_secret: String,
    pub mixpanel_token: String,
    pub status_token: String,
}

impl Target {
    /// A local stack started with its default secrets at `base_url`.
    pub fn local(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            stripe_secret: billing::config::LOCAL_WEBHOOK_SECRET.into(),
            shopify_secret: etl::config::LOCAL_SHOPIFY_WEBHOOK_SECRET.into(),
            resend_secret: email::LOCAL_RESEND_WEBHOOK_SECRET.into(),
            posthog_token: local_stack::LOCAL_POSTHOG_TOKEN.into(),
            posthog_webhook_secret: local_stack::LOCAL_POSTHOG_WEBHOOK_SECRET.into(),
            mixpanel_token: local_stack::LOCAL_MIXPANEL_TOKEN.into(),
            status_token: status::LOCAL_TOKEN.into(),
        }
    }
}

/// One request of the catalogue.
#[derive(Debug, Clone)]
pub struct Attack {
    pub name: String,
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An answer that broke the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub attack: String,
    pub problem: String,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// A small gzip that inflates to about `objects` empty JSON objects in an array.
pub fn gzip_bomb(objects: usize) -> Vec<u8> {
    let mut json = Vec::with_capacity(objects * 3 + 2);
    json.push(b'[');
    for index in 0..objects {
        if index > 0 {
            json.push(b',');
        }
        json.extend_from_slice(b"{}");
    }
    json.push(b']');
    gzip(&json)
}

fn attack(
    name: &str,
    method: &'static str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> Attack {
    Attack {
        name: name.to_string(),
        method,
        path: path.to_string(),
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_string(), (*value).to_string()))
            .collect(),
        body: body.into(),
    }
}

/// Bodies every JSON route is sent, each a fault of the client.
fn hostile_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let cut = format!("{}é", "a".repeat(199));
    vec![
        ("empty", Vec::new()),
        ("not JSON", b"not json at all".to_vec()),
        ("invalid UTF-8", vec![0xff, 0xfe, b'{', 0xc3, 0x28, b'}']),
        (
            "a lone surrogate",
            br#"{"event":"\ud800","distinct_id":"u"}"#.to_vec(),
        ),
        (
            "NUL everywhere",
            br#"{"event":"x\u0000","distinct_id":"\u0000","properties":{"\u0000":"\u0000"}}"#
                .to_vec(),
        ),
        (
            "deep nesting",
            format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        ),
        (
            "a huge number",
            br#"{"event":"x","distinct_id":"u","properties":{"n":1e400},"amount":1e400}"#.to_vec(),
        ),
        (
            "a multi-byte character at the cut",
            json!({"event": "x", "distinct_id": cut, "properties": {"distinct_id": cut}})
                .to_string()
                .into_bytes(),
        ),
        (
            "a truncated gzip",
            gzip(b"{\"event\":\"x\"}")[..12].to_vec(),
        ),
        ("a gzip bomb", gzip_bomb(3_000_000)),
        ("nested gzip", gzip(&gzip(&gzip(b"[{}]")))),
        ("11 MB of spaces", vec![b' '; 11 * 1024 * 1024]),
    ]
}

/// Every request of the attack, for `target`.
pub fn catalogue(target: &Target, now: i64) -> Vec<Attack> {
    let mut attacks = Vec::new();
    let json_routes = [
        "/webhooks/stripe",
        "/webhooks/shopify",
        "/webhooks/resend",
        "/webhooks/posthog",
        "/batch/",
        "/e/",
        "/i/v0/e/",
        "/capture/",
        "/track",
        "/engage/",
        "/flags/?v=2&config=true",
        "/decide/",
        "/import",
        "/status/login",
        "/email/unsubscribe",
        "/suggestions/00000000-0000-0000-0000-000000000000/feedback",
    ];
    for route in json_routes {
        for (what, body) in hostile_bodies() {
            attacks.push(attack(
                &format!("{route} with {what}"),
                "POST",
                route,
                &[("content-type", "application/json")],
                body.clone(),
            ));
            attacks.push(attack(
                &format!("{route} with {what}, gzip-encoded"),
                "POST",
                route,
                &[("content-encoding", "gzip"), ("content-type", "text/plain")],
                body,
            ));
        }
        attacks.push(attack(
            &format!("{route} as a form without data"),
            "POST",
            route,
            &[("content-type", "application/x-www-form-urlencoded")],
            "a=%ZZ&data",
        ));
    }

    // Valid signatures over bodies the database refuses or that overflow our arithmetic.
    let stripe_bodies = [
        ("an overflowing price", json!({"id": "evt_attack_overflow", "object": "event", "created": now, "type": "customer.subscription.created", "data": {"object": {"id": "sub_attack", "object": "subscription", "customer": "cus_attack", "status": "active", "currency": "usd", "items": {"data": [{"id": "si_attack", "quantity": 9_223_372_036_854_775_807_i64, "price": {"id": "price_attack", "unit_amount": 9_223_372_036_854_775_807_i64, "currency": "usd", "recurring": {"interval": "month", "interval_count": 1}}}]}}}}).to_string()),
        ("NUL in metadata", json!({"id": "evt_attack_nul", "object": "event", "created": now, "type": "customer.created", "data": {"object": {"id": "cus_attack_nul", "object": "customer", "email": "a\u{0}@x.io", "metadata": {"k\u{0}": "v\u{0}"}}}}).to_string()),
        ("a huge created", json!({"id": "evt_attack_time", "object": "event", "created": i64::MAX, "type": "customer.created", "data": {"object": {"id": "cus_attack_time", "object": "customer"}}}).to_string()),
        ("no object", json!({"id": "evt_attack_none", "object": "event", "created": now, "type": "customer.created"}).to_string()),
    ];
    for (what, body) in stripe_bodies {
        let signature = shared::webhook::sign_stripe(body.as_bytes(), &target.stripe_secret, now);
        attacks.push(attack(
            &format!("a signed Stripe event with {what}"),
            "POST",
            "/webhooks/stripe",
            &[("stripe-signature", &signature)],
            body,
        ));
    }
    let forged = shared::webhook::sign_stripe(b"{}", "whsec_attacker", now);
    attacks.push(attack(
        "a forged Stripe signature",
        "POST",
        "/webhooks/stripe",
        &[("stripe-signature", &forged)],
        "{}",
    ));
    let stale = shared::webhook::sign_stripe(b"{}", &target.stripe_secret, now - 3_600);
    attacks.push(attack(
        "a stale Stripe signature",
        "POST",
        "/webhooks/stripe",
        &[("stripe-signature", &stale)],
        "{}",
    ));
    attacks.push(attack(
        "a garbage Stripe signature header",
        "POST",
        "/webhooks/stripe",
        &[("stripe-signature", "t=ü,v1=ü,,=,t=99999999999999999999999")],
        "{}",
    ));

    let shopify_order = json!({"id": 1, "name": "#1", "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z", "currency": "USD", "total_price": "1e30", "financial_status": "paid\u{0}", "line_items": []}).to_string();
    let shopify_signature =
        shared::webhook::sign_shopify(shopify_order.as_bytes(), &target.shopify_secret);
    let triggered_at = chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .to_rfc3339();
    attacks.push(attack(
        "a signed Shopify order the database refuses",
        "POST",
        "/webhooks/shopify",
        &[
            ("x-shopify-hmac-sha256", &shopify_signature),
            ("x-shopify-topic", "orders/updated"),
            ("x-shopify-shop-domain", "local-demo.myshopify.com"),
            ("x-shopify-webhook-id", "attack-1"),
            ("x-shopify-event-id", "attack-event-1"),
            ("x-shopify-triggered-at", &triggered_at),
        ],
        shopify_order.clone(),
    ));
    attacks.push(attack(
        "a signed Shopify order with garbage headers",
        "POST",
        "/webhooks/shopify",
        &[
            ("x-shopify-hmac-sha256", &shopify_signature),
            ("x-shopify-topic", "ü/ü"),
            ("x-shopify-shop-domain", "ü"),
            ("x-shopify-webhook-id", &"w".repeat(10_000)),
            ("x-shopify-triggered-at", "yesterday"),
        ],
        shopify_order,
    ));

    let resend_body = json!({"type": "email.delivered", "created_at": "2026-12-01T10:00:00.000Z", "data": {"email_id": "e\u{0}", "to": ["a\u{0}@x.io"], "created_at": "x"}}).to_string();
    let svix_id = format!("msg_attack_{now}");
    let svix_signature =
        shared::webhook::sign_svix(resend_body.as_bytes(), &svix_id, now, &target.resend_secret)
            .expect("the local Resend secret is whsec_<base64>");
    attacks.push(attack(
        "a signed Resend event with NUL",
        "POST",
        "/webhooks/resend",
        &[
            ("svix-id", &svix_id),
            ("svix-timestamp", &now.to_string()),
            ("svix-signature", &svix_signature),
        ],
        resend_body,
    ));

    let posthog_bearer = format!("Bearer {}", target.posthog_webhook_secret);
    attacks.push(attack(
        "a PostHog webhook event with NUL",
        "POST",
        "/webhooks/posthog",
        &[("authorization", &posthog_bearer)],
        r#"{"event":{"event":"x\u0000","distinct_id":"u","properties":{"a":"\u0000"}},"person":{"properties":{"email":"\u0000"}}}"#,
    ));
    let token = &target.posthog_token;
    let many: Vec<Value> = (0..5_000)
        .map(|i| json!({"event": "e", "distinct_id": format!("u{i}")}))
        .collect();
    attacks.push(attack(
        "5,000 events in one capture batch",
        "POST",
        "/batch/",
        &[],
        json!({"api_key": token, "batch": many}).to_string(),
    ));
    attacks.push(attack(
        "a capture batch of siblings and one NUL",
        "POST",
        "/batch/",
        &[],
        json!({"api_key": token, "batch": [{"event": "ok", "distinct_id": "u"}, {"event": "bad\u{0}", "distinct_id": "u"}]}).to_string(),
    ));
    let basic_token = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", target.mixpanel_token))
    );
    attacks.push(attack(
        "Mixpanel /import with only the public token",
        "POST",
        "/import",
        &[("authorization", &basic_token)],
        r#"[{"event":"x","properties":{"distinct_id":"u","time":1}}]"#,
    ));
    attacks.push(attack(
        "Mixpanel /import with garbage Basic auth",
        "POST",
        "/import?project_id=ü",
        &[("authorization", "Basic ü€")],
        "[]",
    ));

    for _ in 0..8 {
        attacks.push(attack(
            "a wrong status login",
            "POST",
            "/status/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-forwarded-for", "192.0.2.66"),
            ],
            "token=guess",
        ));
    }
    let huge_bearer = format!("Bearer {}", "a".repeat(60_000));
    for path in [
        "/status.json",
        "/status",
        "/metrics?workspace=ü&from=9999-99-99&to=x",
        "/suggestions?workspace=%00",
        "/suggestions/adoption?workspace=nope",
        "/status/workspace.json?workspace=ü",
        "/array/%00/config",
        "/array/phc_%F0%9F%92%A5/config.js",
    ] {
        attacks.push(attack(
            &format!("GET {path} with a huge bearer"),
            "GET",
            path,
            &[("authorization", &huge_bearer)],
            "",
        ));
        attacks.push(attack(
            &format!("GET {path} with an alg=none token"),
            "GET",
            path,
            &[(
                "authorization",
                "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
            )],
            "",
        ));
        // Asymmetric headers: a key the project never published, and a signature of noise.
        for (what, header) in [
            (
                "a made-up ES256 key",
                r#"{"alg":"ES256","kid":"made-up","typ":"JWT"}"#,
            ),
            (
                "an RS256 header over HS256",
                r#"{"alg":"RS256","kid":"k","typ":"JWT"}"#,
            ),
            (
                "a huge kid",
                &format!(r#"{{"alg":"ES256","kid":"{}"}}"#, "k".repeat(4_000)),
            ),
        ] {
            use base64::Engine;
            let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
            let token = format!(
                "{}.{}.{}",
                encode(header),
                encode(
                    r#"{"sub":"00000000-0000-0000-0000-000000000001","aud":"authenticated","exp":9999999999}"#
                ),
                encode("noise")
            );
            attacks.push(attack(
                &format!("GET {path} with {what}"),
                "GET",
                path,
                &[("authorization", &format!("Bearer {token}"))],
                "",
            ));
        }
        attacks.push(attack(
            &format!("GET {path} with a garbage cookie"),
            "GET",
            path,
            &[(
                "cookie",
                "status_session=v1.99999999999.ü.ü; status_session=;;;=",
            )],
            "",
        ));
    }
    for token in [
        "",
        "%00",
        "ü",
        &"A".repeat(5_000),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "..",
        "Zm9v.YmFy",
    ] {
        attacks.push(attack(
            &format!(
                "GET unsubscribe with token {:?}",
                shared::text::clip(token, 20)
            ),
            "GET",
            &format!("/email/unsubscribe?token={token}"),
            &[],
            "",
        ));
        attacks.push(attack(
            &format!(
                "POST unsubscribe with token {:?}",
                shared::text::clip(token, 20)
            ),
            "POST",
            &format!("/email/unsubscribe?token={token}"),
            &[("content-type", "application/x-www-form-urlencoded")],
            "List-Unsubscribe=One-Click",
        ));
    }
    attacks.push(attack(
        "a path of 8 KB",
        "GET",
        &format!("/{}", "a".repeat(8_000)),
        &[],
        "",
    ));
    attacks
}

/// Bodies above this go over a raw connection (see [`send_raw`]).
const RAW_ABOVE_BYTES: usize = 1024 * 1024;

/// One request through an HTTP client: the status and the body's length.
async fn send(
    http: &reqwest::Client,
    base_url: &str,
    attack: &Attack,
) -> Result<(u16, usize), String> {
    let method =
        reqwest::Method::from_bytes(attack.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = http
        .request(method, format!("{base_url}{}", attack.path))
        .body(attack.body.clone());
    for (name, value) in &attack.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map(|b| b.len()).unwrap_or(0);
    Ok((status, body))
}

/// One request on a bare TCP connection, reading the answer while the body is still being
/// written. A server may answer a body over its limit with 413 before reading it and close
/// the connection; an HTTP client that is still writing then reports a broken pipe instead
/// of the answer that did arrive.
async fn send_raw(base_url: &str, attack: &Attack) -> Result<(u16, usize), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base_url
        .strip_prefix("http://")
        .ok_or("raw requests need an http:// URL")?;
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|error| error.to_string())?;
    let (mut reader, mut writer) = stream.into_split();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        attack.method,
        attack.path,
        attack.body.len()
    );
    for (name, value) in &attack.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let body = attack.body.clone();
    let writing = tokio::spawn(async move {
        // The server may stop reading at any point; that is its right.
        if writer.write_all(head.as_bytes()).await.is_ok() {
            let _ = writer.write_all(&body).await;
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(40), reader.read_to_end(&mut answer)).await;
    writing.abort();
    if answer.is_empty() {
        return Err(format!("the connection closed without an answer: {read:?}"));
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {}", shared::text::clip(&text, 80)))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(0, |(_, body)| body.len());
    Ok((status, body))
}

/// Sends every request of the catalogue; what broke the rules.
pub async fn run(target: &Target) -> Vec<Finding> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .expect("an HTTP client");
    let now = chrono::Utc::now().timestamp();
    let mut findings = Vec::new();
    for attack in catalogue(target, now) {
        let answered = if attack.body.len() > RAW_ABOVE_BYTES {
            send_raw(&target.base_url, &attack).await
        } else {
            send(&http, &target.base_url, &attack).await
        };
        match answered {
            Ok((status, body)) => {
                if status >= 500 {
                    findings.push(Finding {
                        attack: attack.name.clone(),
                        problem: format!("answered {status} to a fault of the input"),
                    });
                }
                if body > 64 * 1024 {
                    findings.push(Finding {
                        attack: attack.name.clone(),
                        problem: format!("answered {body} bytes"),
                    });
                }
            }
            Err(error) => findings.push(Finding {
                attack: attack.name.clone(),
                problem: format!("no answer: {error}"),
            }),
        }
    }
    // Still serving: the process survived every request.
    let alive = http
        .get(format!("{}/status.json", target.base_url))
        .bearer_auth(&target.status_token)
        .send()
        .await
        .map(|response| response.status().as_u16());
    if alive.as_ref().ok() != Some(&200) {
        findings.push(Finding {
            attack: "after the attack".into(),
            problem: format!("GET /status.json no longer answers 200: {alive:?}"),
        });
    }
    findings
}

/// Every stored error text (run log, ETL runs, quarantine, outbox) that carries a credential:
/// one of `secrets`, or an `access_token=`-like parameter whose value was not redacted.
pub async fn leaked_credentials(client: &tokio_postgres::Client, secrets: &[&str]) -> Vec<String> {
    let texts = client
        .query_typed(
            "SELECT 'agent_runs: ' || detail FROM agent_runs WHERE detail IS NOT NULL
             UNION ALL SELECT 'etl_runs: ' || error FROM etl_runs WHERE error IS NOT NULL
             UNION ALL SELECT 'quarantine: ' || reason FROM quarantine
             UNION ALL SELECT 'outbox: ' || last_error FROM outbox WHERE last_error IS NOT NULL",
            &[],
        )
        .await
        .expect("read the stored errors");
    texts
        .iter()
        .map(|row| row.get::<_, String>(0))
        .filter(|text| {
            secrets
                .iter()
                .any(|secret| !secret.is_empty() && text.contains(secret))
                || shared::redact::credentials(text) != *text
        })
        .collect()
}

/// The secrets of `target` that must never appear in a stored error.
pub fn secrets_of(target: &Target) -> Vec<&str> {
    vec![
        target.stripe_secret.as_str(),
        target.shopify_secret.as_str(),
        target.resend_secret.as_str(),
        target.posthog_webhook_secret.as_str(),
        target.status_token.as_str(),
    ]
}
