//! Sending one campaign to one member, at most once.
//!
//! The recipients are members: Supabase Auth users, at the address Auth confirmed, never an
//! address that arrived in an analytics event. A [`SendCampaignEmail`] arrives from
//! `email.fifo` (grouped by member). [`send_campaign`]:
//! 1. in one transaction, re-checks the member (still there, a confirmed address, in a
//!    workspace, not unsubscribed, not suppressed, not too late) and claims
//!    `(member, campaign)` in `email_sends`: the row's
//!    unique key means one claimant at a time, and a `sent` row is never claimed again;
//! 2. renders the email once and stores it with the claim, so every later attempt sends the
//!    very same payload;
//! 3. calls the provider with the idempotency key `email-send/<row id>`, retrying transient
//!    failures with backoff; a claimant that crashed after the provider accepted the email
//!    leaves a claim that expires, and the next attempt's identical request is answered with
//!    the original email by the provider instead of a second one;
//! 4. records the outcome, fenced by the claim's attempt number.
//!
//! A claim held by someone else (a concurrent consumer) fails the message for now: the queue
//! brings it back after that claimant has finished, and it then finds the `sent` row.
//!
//! Each database step is a transaction under [`Budget::BACKGROUND`], so a row lock held
//! elsewhere fails the message for a later delivery instead of stalling the consumer; the
//! provider call runs outside any transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shared::agents::Agent;
use shared::db::{Budget, DbContext, Pool};
use shared::entry::Consumer;
use shared::lambda::Container;
use shared::messages::{MemberSignedUp, UserSignedUp};
use shared::queue::{Message, QueueDef, catalog};
use shared::retry::{RetryPolicy, retry};
use shared::runs::RunLog;
use shared::settings::{Env, SettingsError};
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::EmailError;
use crate::campaigns::Campaign;
use crate::provider::{EmailProvider, OutgoingEmail, ProviderError, Tag};
use crate::templates::{
    Numbers, Person, Personalisation, Rendered, SuggestionView, TOP_SUGGESTIONS, Templates,
    WorkspaceView, first_name,
};
use crate::unsubscribe::TokenSigner;

/// "Send this campaign to this member", from the sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendCampaignEmail {
    pub member_id: Uuid,
    pub campaign: Campaign,
    /// When the campaign became due for this member.
    pub due_at: DateTime<Utc>,
}

/// A send request queued before recipients were members, naming an audience person of
/// `users`: acknowledged and never sent, since its address came from an analytics event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AudienceSendRequest {
    pub workspace_id: Uuid,
    pub user_id: Uuid,
    pub campaign: Campaign,
}

impl Message for SendCampaignEmail {
    const QUEUE: &'static QueueDef = &catalog::EMAIL;

    /// One member's emails are decided one at a time, in the group their signup used.
    fn group_id(&self) -> String {
        format!("member:{}", self.member_id)
    }

    fn dedup_id(&self) -> String {
        format!("email:{}:{}", self.member_id, self.campaign)
    }
}

/// Everything `email.fifo` carries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum EmailQueueMessage {
    Send(SendCampaignEmail),
    /// Queued before recipients were members; acknowledged, not sent.
    AudienceSend(AudienceSendRequest),
    /// Queued by the analytics agent before audience signups stopped starting campaigns;
    /// acknowledged.
    SignedUp(UserSignedUp),
    /// From the trigger on `auth.users`. The sweep reads members from `auth.users`, so this
    /// too is only acknowledged.
    MemberSignedUp(MemberSignedUp),
}

/// A message older than this past its due time is not sent: a "welcome, yesterday you
/// signed up" email re-driven from the dead letters a week later would be wrong.
pub const EXPIRY: Duration = Duration::hours(48);

/// What sending decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Sent {
        provider_message_id: Option<String>,
    },
    /// An earlier attempt or another consumer sent it.
    AlreadyDone {
        status: String,
    },
    Skipped {
        reason: String,
    },
    /// The provider refused it for good; recorded, not retried.
    Rejected {
        reason: String,
    },
}

/// Who gets the mail and what we say, as composed from the database.
pub struct Composer {
    pub templates: Templates,
    pub signer: TokenSigner,
    /// `Name <address>`.
    pub from: String,
    pub product: String,
    /// The public base URL of the API (unsubscribe links point there).
    pub public_base_url: String,
    /// Where the call-to-action leads.
    pub app_url: String,
}

/// The member as the sender sees them, with the workspace whose numbers they get.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub member_id: Uuid,
    /// The address Supabase Auth confirmed; `None` while unconfirmed or absent.
    pub email: Option<String>,
    pub name: Option<String>,
    pub workspace: Option<MemberWorkspace>,
    pub signed_up_at: Option<DateTime<Utc>>,
    pub unsubscribed: bool,
    pub suppressed: bool,
}

/// The workspace a member's lifecycle email is about: the one they own, else the first they
/// joined.
#[derive(Debug, Clone)]
pub struct MemberWorkspace {
    pub id: Uuid,
    pub name: String,
    pub currency: String,
}

/// The member's workspace, as [`MemberWorkspace`] says which; also used by the sweep.
pub const PRIMARY_WORKSPACE: &str = "
    SELECT w.id, w.name, w.currency, w.timezone
      FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id
     WHERE m.user_id = u.id
     ORDER BY m.role = 'owner' DESC, m.created_at, w.id
     LIMIT 1";

impl Recipient {
    pub async fn load(
        client: &impl GenericClient,
        member: Uuid,
    ) -> Result<Option<Self>, EmailError> {
        let row = client
            .query_typed_opt(
                &format!(
                    "SELECT CASE WHEN u.email_confirmed_at IS NOT NULL AND NOT u.is_anonymous
                                 THEN u.email END,
                            coalesce(u.raw_user_meta_data->>'full_name', u.raw_user_meta_data->>'name'),
                            w.id, w.name, w.currency, u.created_at,
                            EXISTS (SELECT 1 FROM member_email_unsubscribes x WHERE x.member_id = u.id),
                            EXISTS (SELECT 1 FROM email_suppressions p WHERE p.address = lower(u.email))
                       FROM auth.users u LEFT JOIN LATERAL ({PRIMARY_WORKSPACE}) w ON true
                      WHERE u.id = $1 AND u.deleted_at IS NULL"
                ),
                &[(&member, Type::UUID)],
            )
            .await
            .context("read the recipient")?;
        Ok(row.map(|row| Recipient {
            member_id: member,
            email: row
                .get::<_, Option<String>>(0)
                .filter(|email| email.contains('@')),
            name: row.get(1),
            workspace: row.get::<_, Option<Uuid>>(2).map(|id| MemberWorkspace {
                id,
                name: row.get(3),
                currency: row.get(4),
            }),
            signed_up_at: row.get(5),
            unsubscribed: row.get(6),
            suppressed: row.get(7),
        }))
    }

    fn workspace_id(&self) -> Option<Uuid> {
        self.workspace.as_ref().map(|workspace| workspace.id)
    }

    /// Why this member must not get the email, if anything says so.
    fn reason_not_to_send(&self) -> Option<&'static str> {
        if self.email.is_none() {
            Some("no confirmed email address")
        } else if self.workspace.is_none() {
            Some("not a member of any workspace")
        } else if self.unsubscribed {
            Some("unsubscribed")
        } else if self.suppressed {
            Some("address suppressed after a bounce or complaint")
        } else {
            None
        }
    }
}

impl Composer {
    pub fn unsubscribe_url(&self, member: Uuid) -> String {
        format!(
            "{}/email/unsubscribe?token={}",
            self.public_base_url.trim_end_matches('/'),
            self.signer.token(member)
        )
    }

    /// Renders `campaign` for `recipient` with their workspace's numbers and best open
    /// suggestions as of `now`.
    pub async fn render(
        &self,
        client: &impl GenericClient,
        recipient: &Recipient,
        campaign: Campaign,
        now: DateTime<Utc>,
    ) -> Result<Rendered, EmailError> {
        let (numbers, suggestions, workspace_name) = match &recipient.workspace {
            Some(workspace) => (
                numbers(client, recipient, workspace, campaign, now).await?,
                top_suggestions(client, workspace.id).await?,
                workspace.name.clone(),
            ),
            None => (None, Vec::new(), String::new()),
        };
        let context = Personalisation {
            product: self.product.clone(),
            user: Person {
                first_name: first_name(recipient.name.as_deref()),
                email: recipient.email.clone().unwrap_or_default(),
            },
            workspace: WorkspaceView {
                name: workspace_name,
            },
            numbers,
            suggestions,
            app_url: self.app_url.clone(),
            unsubscribe_url: self.unsubscribe_url(recipient.member_id),
        };
        Ok(self.templates.render(campaign, &context)?)
    }

    /// The email as the provider receives it.
    pub fn envelope(
        &self,
        recipient: &Recipient,
        campaign: Campaign,
        send_id: Uuid,
        rendered: &Rendered,
    ) -> OutgoingEmail {
        let mut headers = BTreeMap::new();
        // RFC 8058: an HTTPS URI with an opaque token, and the one-click POST marker.
        headers.insert(
            "List-Unsubscribe".to_string(),
            format!("<{}>", self.unsubscribe_url(recipient.member_id)),
        );
        headers.insert(
            "List-Unsubscribe-Post".to_string(),
            "List-Unsubscribe=One-Click".to_string(),
        );
        OutgoingEmail {
            from: self.from.clone(),
            to: recipient.email.iter().cloned().collect(),
            subject: rendered.subject.clone(),
            html: rendered.html.clone(),
            text: rendered.text.clone(),
            headers,
            tags: vec![
                Tag {
                    name: "campaign".into(),
                    value: campaign.to_string(),
                },
                Tag {
                    name: "send_id".into(),
                    value: send_id.to_string(),
                },
            ],
        }
    }
}

/// What `member` would receive for `campaign` at `now`, without sending or recording
/// anything (`ops email-preview`); `None` when there is no such member.
pub async fn preview(
    pool: &Pool,
    composer: &Composer,
    campaign: Campaign,
    member: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<Rendered>, EmailError> {
    let client = pool.get().await.context("check out a connection")?;
    let Some(recipient) = Recipient::load(&**client, member).await? else {
        return Ok(None);
    };
    Ok(Some(
        composer
            .render(&**client, &recipient, campaign, now)
            .await?,
    ))
}

/// The workspace's best open suggestions, as its members see them first in the app.
async fn top_suggestions(
    client: &impl GenericClient,
    workspace: Uuid,
) -> Result<Vec<SuggestionView>, EmailError> {
    let rows = client
        .query_typed(
            "SELECT explanation FROM suggestions
              WHERE workspace_id = $1 AND status = 'open'
              ORDER BY score DESC, created_at, id LIMIT $2",
            &[(&workspace, Type::UUID), (&TOP_SUGGESTIONS, Type::INT8)],
        )
        .await
        .context("read the workspace's top suggestions")?;
    Ok(rows
        .iter()
        .map(|row| SuggestionView {
            explanation: row.get(0),
        })
        .collect())
}

/// The workspace's figures over the campaign's period, `None` before it has any.
async fn numbers(
    client: &impl GenericClient,
    recipient: &Recipient,
    workspace: &MemberWorkspace,
    campaign: Campaign,
    now: DateTime<Utc>,
) -> Result<Option<Numbers>, EmailError> {
    let today = now.date_naive();
    let (from, period): (NaiveDate, String) = match campaign {
        Campaign::D1 => (
            recipient.signed_up_at.map_or(today, |at| at.date_naive()),
            "since you signed up".into(),
        ),
        Campaign::D7 => (today - Duration::days(6), "last 7 days".into()),
        Campaign::D30 => (today - Duration::days(29), "last 30 days".into()),
    };
    let row = client
        .query_typed_one(
            "SELECT count(*), COALESCE(sum(spend), 0), COALESCE(sum(revenue), 0),
                    COALESCE(sum(orders), 0)::int8, COALESCE(sum(events), 0)::int8
               FROM daily_metrics WHERE workspace_id = $1 AND date BETWEEN $2 AND $3",
            &[
                (&workspace.id, Type::UUID),
                (&from, Type::DATE),
                (&today, Type::DATE),
            ],
        )
        .await
        .context("read the workspace's numbers")?;
    if row.get::<_, i64>(0) == 0 {
        return Ok(None);
    }
    let (spend, revenue): (Decimal, Decimal) = (row.get(1), row.get(2));
    Ok(Some(Numbers {
        period,
        spend: money(spend, &workspace.currency),
        revenue: money(revenue, &workspace.currency),
        roas: revenue
            .checked_div(spend)
            .map_or_else(|| "n/a".into(), |roas| format!("{:.2}×", roas.round_dp(2))),
        orders: grouped(row.get::<_, i64>(3).to_string()),
        events: grouped(row.get::<_, i64>(4).to_string()),
    }))
}

/// `USD 1,234.50`.
pub fn money(amount: Decimal, currency: &str) -> String {
    let fixed = format!("{:.2}", amount.round_dp(2));
    let (whole, cents) = fixed.split_once('.').unwrap_or((&fixed, "00"));
    format!("{currency} {}.{cents}", grouped(whole.to_string()))
}

/// Thousands separated by commas.
fn grouped(digits: String) -> String {
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(rest) => ("-", rest.to_string()),
        None => ("", digits),
    };
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    format!("{sign}{out}")
}

/// What the sender needs.
pub struct SenderDeps {
    pub pool: Pool,
    pub provider: Arc<dyn EmailProvider>,
    pub composer: Composer,
    pub retry: RetryPolicy,
    /// How long a claim keeps others away; longer than one attempt can take (the provider
    /// calls and their backoff), shorter than the queue's redelivery.
    pub claim_ttl: std::time::Duration,
    pub clock: shared::clock::Clock,
}

/// The `email` function's settings: where emails go and how they are written.
pub struct Config {
    pub provider: Arc<dyn EmailProvider>,
    pub composer: Composer,
}

impl Config {
    /// See [`crate::provider_from_env`] and [`crate::composer_from_env`].
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        Ok(Self {
            provider: crate::provider_from_env(env)?,
            composer: crate::composer_from_env(env)?,
        })
    }

    /// The local stack's: emails land as JSON files in `mailbox`, and their links point at
    /// `public_base_url`.
    pub fn local(mailbox: &std::path::Path, public_base_url: &str) -> Self {
        Self {
            provider: Arc::new(crate::provider::Mailbox::new(mailbox)),
            composer: Composer {
                templates: crate::templates::Templates::new(),
                signer: TokenSigner::new(vec![crate::LOCAL_UNSUBSCRIBE_SECRET.into()]),
                from: crate::LOCAL_EMAIL_FROM.into(),
                product: crate::DEFAULT_PRODUCT_NAME.into(),
                public_base_url: public_base_url.into(),
                app_url: format!("{public_base_url}/status.json"),
            },
        }
    }
}

impl SenderDeps {
    pub fn new(container: &Container, config: Config) -> Self {
        Self {
            pool: container.pool.clone(),
            provider: config.provider,
            composer: config.composer,
            retry: RetryPolicy::default(),
            claim_ttl: crate::CLAIM_TTL,
            clock: container.clock.clone(),
        }
    }
}

/// The `email.fifo` consumer, recorded in the run log.
pub fn consumer(deps: Arc<SenderDeps>) -> Consumer<EmailQueueMessage> {
    let runs = RunLog::new(deps.pool.clone(), Agent::Email);
    Consumer::new(runs, move |message: EmailQueueMessage| {
        let deps = deps.clone();
        async move { handle(&deps, message).await }
    })
}

/// The claim this attempt holds.
struct Claim {
    send_id: Uuid,
    attempt: i32,
    stored: Option<Rendered>,
}

enum ClaimResult {
    Claimed(Claim),
    Finished(SendOutcome),
}

/// Handles one message of `email.fifo`.
pub async fn handle(deps: &SenderDeps, message: EmailQueueMessage) -> Result<(), EmailError> {
    match message {
        EmailQueueMessage::Send(request) => {
            let outcome = send_campaign(deps, &request, deps.clock.now()).await?;
            tracing::info!(
                member = %request.member_id,
                campaign = %request.campaign,
                ?outcome,
                "campaign email handled"
            );
            Ok(())
        }
        EmailQueueMessage::AudienceSend(request) => {
            tracing::warn!(
                workspace = %request.workspace_id,
                user = %request.user_id,
                campaign = %request.campaign,
                "a send to an audience person, queued before recipients were members: not sent"
            );
            Ok(())
        }
        EmailQueueMessage::SignedUp(signup) => {
            tracing::debug!(
                workspace = %signup.workspace_id,
                distinct_id = signup.distinct_id,
                "signup noted; the hourly sweep sends its campaigns when due"
            );
            Ok(())
        }
        EmailQueueMessage::MemberSignedUp(signup) => {
            tracing::debug!(
                member = %signup.member_id,
                "member signup noted; the hourly sweep sends its campaigns when due"
            );
            Ok(())
        }
    }
}

/// Sends `request` unless it was sent, claimed by someone else, or must not be.
pub async fn send_campaign(
    deps: &SenderDeps,
    request: &SendCampaignEmail,
    now: DateTime<Utc>,
) -> Result<SendOutcome, EmailError> {
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let claim = match claim(&mut client, deps, request, now).await? {
        ClaimResult::Finished(outcome) => return Ok(outcome),
        ClaimResult::Claimed(claim) => claim,
    };
    let preparation = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
    let recipient = Recipient::load(&*preparation, request.member_id)
        .await?
        .ok_or(EmailError::ClaimLost)?;
    let rendered = match claim.stored {
        Some(rendered) => rendered,
        None => {
            let rendered = deps
                .composer
                .render(&*preparation, &recipient, request.campaign, now)
                .await?;
            let stored = preparation
                .execute_typed(
                    "UPDATE email_sends SET subject = $3, html = $4, text_body = $5
                      WHERE id = $1 AND attempts = $2 AND status = 'claimed'",
                    &[
                        (&claim.send_id, Type::UUID),
                        (&claim.attempt, Type::INT4),
                        (&rendered.subject, Type::TEXT),
                        (&rendered.html, Type::TEXT),
                        (&rendered.text, Type::TEXT),
                    ],
                )
                .await
                .context("store the rendered email")?;
            if stored == 0 {
                return Err(EmailError::ClaimLost);
            }
            rendered
        }
    };
    preparation
        .commit()
        .await
        .context("commit the rendered email")?;
    let email = deps
        .composer
        .envelope(&recipient, request.campaign, claim.send_id, &rendered);
    let key = format!("email-send/{}", claim.send_id);
    let provider = deps.provider.as_ref();
    let result = retry(deps.retry, || provider.send(&email, &key)).await;
    let (status, message_id, error, outcome) = match result {
        Ok(id) => (
            "sent",
            Some(id.clone()),
            None,
            Ok(SendOutcome::Sent {
                provider_message_id: Some(id),
            }),
        ),
        Err(ProviderError::AlreadySent { message, .. }) => (
            "sent",
            None,
            Some(message),
            Ok(SendOutcome::Sent {
                provider_message_id: None,
            }),
        ),
        Err(ProviderError::Rejected { message, .. }) => (
            "rejected",
            None,
            Some(message.clone()),
            Ok(SendOutcome::Rejected { reason: message }),
        ),
        Err(error @ ProviderError::Unavailable { .. }) => (
            "failed",
            None,
            Some(error.to_string()),
            Err(EmailError::Provider(error)),
        ),
    };
    let recording = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
    let recorded = recording
        .execute_typed(
            "UPDATE email_sends
                SET status = $3, provider = $4, provider_message_id = $5, error = $6,
                    sent_at = CASE WHEN $3 = 'sent' THEN now() END
              WHERE id = $1 AND attempts = $2 AND status = 'claimed'",
            &[
                (&claim.send_id, Type::UUID),
                (&claim.attempt, Type::INT4),
                (&status, Type::TEXT),
                (&provider.name(), Type::TEXT),
                (&message_id, Type::TEXT),
                (&error, Type::TEXT),
            ],
        )
        .await
        .context("record the send")?;
    recording.commit().await.context("commit the send")?;
    if recorded == 0 {
        // Our claim expired while the provider call ran and someone else took over: the
        // shared idempotency key kept it to one email, and the new claimant records it.
        tracing::warn!(send = %claim.send_id, "claim taken over before the outcome was recorded");
    }
    outcome
}

async fn claim(
    client: &mut deadpool_postgres::Object,
    deps: &SenderDeps,
    request: &SendCampaignEmail,
    now: DateTime<Utc>,
) -> Result<ClaimResult, EmailError> {
    let transaction = shared::db::begin(client, Budget::BACKGROUND).await?;
    let Some(recipient) = Recipient::load(&*transaction, request.member_id).await? else {
        return Ok(ClaimResult::Finished(SendOutcome::Skipped {
            reason: "member no longer exists".into(),
        }));
    };
    // `due_at` comes from the queue message: at the end of chrono's range it has no expiry.
    let too_late = request
        .due_at
        .checked_add_signed(EXPIRY)
        .is_some_and(|deadline| now >= deadline);
    let skip = recipient
        .reason_not_to_send()
        .or(too_late.then_some("more than 48 hours past due"));
    if let Some(reason) = skip {
        // A failed earlier attempt becomes skipped too: whoever asked to stop, stops it.
        transaction
            .execute_typed(
                "INSERT INTO email_sends (workspace_id, member_id, campaign, status, due_at, to_address, error)
                 VALUES ($1, $2, $3, 'skipped', $4, $5, $6)
                 ON CONFLICT (member_id, campaign) WHERE member_id IS NOT NULL
                 DO UPDATE SET status = 'skipped', error = EXCLUDED.error
                  WHERE email_sends.status = 'failed'",
                &[
                    (&recipient.workspace_id(), Type::UUID),
                    (&request.member_id, Type::UUID),
                    (&request.campaign.as_str(), Type::TEXT),
                    (&request.due_at, Type::TIMESTAMPTZ),
                    (&recipient.email, Type::TEXT),
                    (&reason, Type::TEXT),
                ],
            )
            .await
            .context("record a skipped send")?;
        transaction.commit().await.context("commit skip")?;
        return Ok(ClaimResult::Finished(SendOutcome::Skipped {
            reason: reason.to_string(),
        }));
    }
    let ttl_seconds = deps.claim_ttl.as_secs_f64();
    let claimed = transaction
        .query_typed_opt(
            "INSERT INTO email_sends (workspace_id, member_id, campaign, status, attempts, due_at, claimed_at, to_address)
             VALUES ($1, $2, $3, 'claimed', 1, $4, now(), $5)
             ON CONFLICT (member_id, campaign) WHERE member_id IS NOT NULL DO UPDATE
                SET status = 'claimed', attempts = email_sends.attempts + 1, claimed_at = now(), error = NULL
              WHERE email_sends.status = 'failed'
                 OR (email_sends.status = 'claimed'
                     AND email_sends.claimed_at < now() - make_interval(secs => $6))
             RETURNING id, attempts, subject, html, text_body",
            &[
                (&recipient.workspace_id(), Type::UUID),
                (&request.member_id, Type::UUID),
                (&request.campaign.as_str(), Type::TEXT),
                (&request.due_at, Type::TIMESTAMPTZ),
                (&recipient.email, Type::TEXT),
                (&ttl_seconds, Type::FLOAT8),
            ],
        )
        .await
        .context("claim the send")?;
    let result = match claimed {
        Some(row) => {
            let stored = match (row.get(2), row.get(3), row.get(4)) {
                (Some(subject), Some(html), Some(text)) => Some(Rendered {
                    subject,
                    html,
                    text,
                }),
                _ => None,
            };
            ClaimResult::Claimed(Claim {
                send_id: row.get(0),
                attempt: row.get(1),
                stored,
            })
        }
        None => {
            let status: String = transaction
                .query_typed_one(
                    "SELECT status FROM email_sends WHERE member_id = $1 AND campaign = $2",
                    &[
                        (&request.member_id, Type::UUID),
                        (&request.campaign.as_str(), Type::TEXT),
                    ],
                )
                .await
                .context("read the existing send")?
                .get(0);
            if status == "claimed" {
                return Err(EmailError::ClaimedElsewhere);
            }
            ClaimResult::Finished(SendOutcome::AlreadyDone { status })
        }
    };
    transaction.commit().await.context("commit claim")?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped_with_two_decimals() {
        assert_eq!(money(Decimal::new(123_450, 2), "USD"), "USD 1,234.50");
        assert_eq!(money(Decimal::new(5, 1), "EUR"), "EUR 0.50");
        assert_eq!(
            money(Decimal::new(-1_000_000, 0), "USD"),
            "USD -1,000,000.00"
        );
        assert_eq!(grouped("123".into()), "123");
        assert_eq!(grouped("1234567".into()), "1,234,567");
    }

    #[test]
    fn every_kind_of_queue_message_parses() {
        let send = SendCampaignEmail {
            member_id: Uuid::from_u128(2),
            campaign: Campaign::D7,
            due_at: "2026-12-01T09:00:00Z".parse().unwrap(),
        };
        let body = serde_json::to_string(&send).unwrap();
        assert_eq!(
            serde_json::from_str::<EmailQueueMessage>(&body).unwrap(),
            EmailQueueMessage::Send(send.clone())
        );
        // Queued before recipients were members: recognised, so it is acknowledged unsent.
        let audience = r#"{"workspace_id": "00000000-0000-0000-0000-000000000001", "user_id": "00000000-0000-0000-0000-000000000002", "campaign": "d1", "due_at": "2026-12-01T09:00:00Z"}"#;
        assert!(matches!(
            serde_json::from_str::<EmailQueueMessage>(audience).unwrap(),
            EmailQueueMessage::AudienceSend(request) if request.user_id == Uuid::from_u128(2)
        ));
        let signup = UserSignedUp {
            workspace_id: Uuid::from_u128(1),
            distinct_id: "u-1".into(),
            signed_up_at: "2026-12-01T09:00:00Z".parse().unwrap(),
        };
        let body = serde_json::to_string(&signup).unwrap();
        assert_eq!(
            serde_json::from_str::<EmailQueueMessage>(&body).unwrap(),
            EmailQueueMessage::SignedUp(signup)
        );
        // As the trigger on auth.users writes it.
        let member = r#"{"member_id": "00000000-0000-0000-0000-000000000003", "signed_up_at": "2026-12-07T20:11:27.024569+00:00"}"#;
        assert!(matches!(
            serde_json::from_str::<EmailQueueMessage>(member).unwrap(),
            EmailQueueMessage::MemberSignedUp(signup) if signup.member_id == Uuid::from_u128(3)
        ));
        assert!(serde_json::from_str::<EmailQueueMessage>(r#"{"user_id":"x"}"#).is_err());
        let outgoing = send.to_outgoing().unwrap();
        assert_eq!(outgoing.group_id, format!("member:{}", Uuid::from_u128(2)));
        assert_eq!(
            outgoing.dedup_id,
            format!("email:{}:d7", Uuid::from_u128(2))
        );
    }
}
