//! Lambda entrypoint of the email sender: `email.fifo` batches (grouped per user) send each
//! campaign once. As `email preview <d1|d7|d30> <user-id> [--html]` it prints what that user
//! would receive now, without sending or recording anything.

use std::sync::Arc;

use email::campaigns::Campaign;
use email::send::EmailQueueMessage;
use shared::lambda::{Container, LambdaError};
use shared::runs::{RunLog, Trigger};
use shared::settings::Env;

#[tokio::main]
async fn main() -> Result<(), LambdaError> {
    let container = Container::init().await?;
    let lookup = |name: &str| std::env::var(name).ok();
    let env = Env(&lookup);
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            let runs = RunLog::new(container.pool.clone(), "email");
            let deps = Arc::new(email::sender_from_env(container.pool, &env)?);
            shared::lambda::sqs::serve(move |message: EmailQueueMessage| {
                let (deps, runs) = (deps.clone(), runs.clone());
                async move {
                    runs.observe(Trigger::Queue, email::send::handle(&deps, message))
                        .await
                }
            })
            .await
        }
        [command, campaign, user, rest @ ..] if command == "preview" => {
            let campaign: Campaign = campaign.parse()?;
            let user: uuid::Uuid = user.parse().map_err(|error| format!("user id: {error}"))?;
            let composer = email::composer_from_env(&env)?;
            let rendered = email::send::preview(
                &container.pool,
                &composer,
                campaign,
                user,
                container.clock.now(),
            )
            .await?
            .ok_or_else(|| format!("no user {user}"))?;
            if rest.iter().any(|flag| flag == "--html") {
                println!("{}", rendered.html);
            } else {
                println!("Subject: {}\n\n{}", rendered.subject, rendered.text);
            }
            Ok(())
        }
        _ => Err("usage: email [preview <d1|d7|d30> <user-id> [--html]]".into()),
    }
}
