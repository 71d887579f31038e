//! `cargo run -p local-stack [-- --listen 127.0.0.1:8080]`: the whole system in one process.
//! See the crate documentation for what runs; this file only reads options, prints where
//! things are, and stops on Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use secrecy::ExposeSecret;
use shared::agents::Agent;
use shared::settings::Env;

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
    let env = Env::process();
    Ok(local_stack::Options {
        listen,
        database_url: env.optional("DATABASE_URL"),
        agents: local_stack::AgentConfigs::from_env_or_local(&env),
        mailbox_dir: env
            .optional("EMAIL_MAILBOX_DIR")
            .map_or_else(|| local_stack::Options::default().mailbox_dir, Into::into),
        demo,
        clock: shared::clock::Clock::system(),
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
    let agents = options.agents.clone();
    let mailbox = options.mailbox_dir.clone();
    let stack = local_stack::start(options).await?;
    // Only here, for the banner: whether each secret is still the local default.
    let url = stack.url();
    // What the banner shows of a secret: the local default itself, or only the variable
    // that replaced it.
    let shown = |value: &str, local: &str, variable: &str| {
        if value == local {
            local.to_string()
        } else {
            format!("${variable}")
        }
    };
    let first = |secrets: &[secrecy::SecretString]| {
        secrets
            .first()
            .map(|secret| secret.expose_secret().to_string())
            .unwrap_or_default()
    };
    println!("growth-agents local stack is ready");
    println!(
        "  open      {url}/status (token {}; also GET /status.json with Authorization: Bearer)",
        shown(
            agents.status.token.expose_secret(),
            status::LOCAL_TOKEN,
            "STATUS_TOKEN"
        )
    );
    println!("  data      {}", stack.data);
    let names: Vec<&str> = Agent::ALL.iter().map(|agent| agent.name()).collect();
    println!("  agents    {}", names.join(", "));
    println!(
        "  stripe    POST {url}/webhooks/stripe (endpoint secret {})",
        shown(
            &first(&agents.billing.webhook_secrets),
            billing::config::LOCAL_WEBHOOK_SECRET,
            "STRIPE_WEBHOOK_SECRET"
        )
    );
    println!(
        "  posthog   host {url} (project token {}, webhook secret {} for POST /webhooks/posthog)",
        local_stack::LOCAL_POSTHOG_TOKEN,
        local_stack::LOCAL_POSTHOG_WEBHOOK_SECRET
    );
    println!(
        "  product   host {url} (the frontend's own project token {}, events keyed by member id)",
        local_stack::LOCAL_PRODUCT_POSTHOG_TOKEN
    );
    println!(
        "  mixpanel  {url}/track (project token {}) and /import (API secret {} as the Basic user)",
        local_stack::LOCAL_MIXPANEL_TOKEN,
        local_stack::LOCAL_MIXPANEL_API_SECRET
    );
    println!(
        "  shopify   POST {url}/webhooks/shopify (app secret {})",
        shown(
            &first(&agents.shopify_webhook.webhook_secrets),
            etl::config::LOCAL_SHOPIFY_WEBHOOK_SECRET,
            "SHOPIFY_WEBHOOK_SECRET"
        )
    );
    println!(
        "  metrics   GET {url}/metrics?workspace=…&from=…&to=… (Authorization: Bearer <a member's access token>, or the service token {})",
        shown(
            agents
                .metrics_api
                .token
                .as_ref()
                .map_or("", |token| token.expose_secret()),
            metrics::api::LOCAL_TOKEN,
            "METRICS_API_TOKEN"
        )
    );
    println!(
        "  email     sent to {} (one JSON file per email); Resend webhooks POST {url}/webhooks/resend (secret {})",
        mailbox.display(),
        shown(
            &first(&agents.email_api.webhook_secrets),
            email::LOCAL_RESEND_WEBHOOK_SECRET,
            "RESEND_WEBHOOK_SECRET"
        )
    );
    if let Some(member) = &stack.demo {
        let workspace = member.workspace;
        let today = chrono::Utc::now().date_naive();
        let from = today - chrono::Duration::days(29);
        println!(
            "  member    {} owns workspace {workspace}; read as them (token valid 24 h):",
            member.email
        );
        println!("            export MEMBER_TOKEN={}", member.access_token);
        for path in [
            format!("/metrics?workspace={workspace}&from={from}&to={today}"),
            format!("/suggestions?workspace={workspace}"),
            format!("/status/workspace.json?workspace={workspace}"),
        ] {
            println!("            curl -H \"Authorization: Bearer $MEMBER_TOKEN\" '{url}{path}'");
        }
    }
    println!("  stop      Ctrl-C");
    shutdown_signal().await;
    println!("stopping…");
    stack.stop().await;
    Ok(())
}
