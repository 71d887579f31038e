//! `cargo run -p local-stack [-- --listen 127.0.0.1:8080]`: the whole system in one process.
//! See the crate documentation for what runs; this file only reads options, prints where
//! things are, and stops on Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;

fn options() -> anyhow::Result<local_stack::Options> {
    let mut listen: SocketAddr = "127.0.0.1:8080".parse()?;
    let mut demo = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args
                    .next()
                    .context("--listen needs an address, e.g. 127.0.0.1:8080")?;
                listen = value
                    .parse()
                    .with_context(|| format!("--listen {value}: not an address"))?;
            }
            "--demo" => demo = true,
            "--help" | "-h" => {
                println!(
                    "usage: local-stack [--listen ADDR] [--demo]   (DATABASE_URL: use this database instead of a throwaway one)"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}; try --help"),
        }
    }
    let database_url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let stripe_webhook_secrets = billing::webhook_secrets(|name| std::env::var(name).ok())
        .unwrap_or_else(|_| vec![local_stack::DEFAULT_STRIPE_WEBHOOK_SECRET.to_string()]);
    let shopify_webhook_secrets = etl::shopify::webhook_secrets(|name| std::env::var(name).ok())
        .unwrap_or_else(|_| vec![local_stack::DEFAULT_SHOPIFY_WEBHOOK_SECRET.to_string()]);
    let metrics_api_token = std::env::var("METRICS_API_TOKEN")
        .ok()
        .filter(|token| !token.is_empty())
        .unwrap_or_else(|| local_stack::DEFAULT_METRICS_API_TOKEN.to_string());
    let jwt_secret = std::env::var("SUPABASE_JWT_SECRET")
        .ok()
        .filter(|secret| !secret.is_empty())
        .unwrap_or_else(|| local_stack::DEFAULT_JWT_SECRET.to_string());
    let lookup = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let defaults = local_stack::EmailOptions::default();
    let email = local_stack::EmailOptions {
        mailbox_dir: lookup("EMAIL_MAILBOX_DIR").map_or(defaults.mailbox_dir, Into::into),
        unsubscribe_secret: lookup("EMAIL_UNSUBSCRIBE_SECRET")
            .unwrap_or(defaults.unsubscribe_secret),
        resend_webhook_secrets: email::api::webhook_secrets(&shared::settings::Env(&lookup))
            .unwrap_or(defaults.resend_webhook_secrets),
        campaigns: email::campaigns::Rules::from_lookup(lookup)?,
    };
    Ok(local_stack::Options {
        listen,
        database_url,
        stripe_webhook_secrets,
        shopify_webhook_secrets,
        metrics_api_token,
        jwt_secret,
        supabase_url: lookup("SUPABASE_URL")
            .unwrap_or_else(|| local_stack::DEFAULT_SUPABASE_URL.to_string()),
        status_token: lookup("STATUS_TOKEN")
            .unwrap_or_else(|| local_stack::DEFAULT_STATUS_TOKEN.to_string()),
        email,
        demo,
        clock: shared::clock::Clock::system(),
        encryption_keys: lookup("ENCRYPTION_KEYS")
            .unwrap_or_else(|| local_stack::DEFAULT_ENCRYPTION_KEYS.to_string()),
    })
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let options = options()?;
    let mailbox = options.email.mailbox_dir.clone();
    let stack = local_stack::start(options).await?;
    println!("growth-agents local stack is ready");
    println!(
        "  open      {}/status (token: STATUS_TOKEN, default {}; also GET /status.json with Authorization: Bearer)",
        stack.url(),
        local_stack::DEFAULT_STATUS_TOKEN
    );
    println!("  data      {}", stack.data);
    println!("  agents    {}", local_stack::AGENTS.join(", "));
    println!(
        "  stripe    POST {}/webhooks/stripe (endpoint secret: STRIPE_WEBHOOK_SECRET, default {})",
        stack.url(),
        local_stack::DEFAULT_STRIPE_WEBHOOK_SECRET
    );
    println!(
        "  posthog   host {} (project token {}, webhook secret {} for POST /webhooks/posthog)",
        stack.url(),
        local_stack::LOCAL_POSTHOG_TOKEN,
        local_stack::LOCAL_POSTHOG_WEBHOOK_SECRET
    );
    println!(
        "  mixpanel  {}/track (project token {}) and /import (API secret {} as the Basic user)",
        stack.url(),
        local_stack::LOCAL_MIXPANEL_TOKEN,
        local_stack::LOCAL_MIXPANEL_API_SECRET
    );
    println!(
        "  shopify   POST {}/webhooks/shopify (app secret: SHOPIFY_WEBHOOK_SECRET, default {})",
        stack.url(),
        local_stack::DEFAULT_SHOPIFY_WEBHOOK_SECRET
    );
    println!(
        "  metrics   GET {}/metrics?workspace=…&from=…&to=… (Authorization: Bearer {})",
        stack.url(),
        if std::env::var("METRICS_API_TOKEN").is_ok() {
            "$METRICS_API_TOKEN"
        } else {
            local_stack::DEFAULT_METRICS_API_TOKEN
        }
    );
    println!(
        "  email     sent to {} (one JSON file per email); Resend webhooks POST {}/webhooks/resend (secret: RESEND_WEBHOOK_SECRET, default {})",
        mailbox.display(),
        stack.url(),
        local_stack::DEFAULT_RESEND_WEBHOOK_SECRET
    );
    println!("  stop      Ctrl-C");
    shutdown_signal().await;
    println!("stopping…");
    stack.stop().await;
    Ok(())
}
