//! Resend's webhooks: what became of each email.
//!
//! A delivery is verified (Svix signature, any configured secret, 5-minute tolerance) and
//! then recorded in one transaction: the raw event in `email_events` keyed by `svix-id`
//! (a redelivery finds the key taken and changes nothing), the first time of each outcome on
//! its `email_sends` row, a suppression for a hard bounce or a complaint (and an unsubscribe
//! for a complaint), and an analytics event (`email_delivered`, `email_opened`…) for the
//! user, through the analytics agent's own writer, so the metrics agent is asked to recompute
//! that day like for any other event.
//!
//! The transaction runs under [`Budget::REQUEST`]: a send row locked elsewhere turns into a
//! retryable failure (503, Svix redelivers) within seconds. A delivery that can never be
//! stored — `\u0000` anywhere in it, a value the database refuses — is kept in `quarantine`
//! (source `resend`, key the `svix-id`) and acknowledged, so Svix stops retrying it.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Value, json};
use shared::db::{Budget, DbContext, DbError};
use shared::queue::outbox::{Outbox, Pending};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::EmailError;

/// Namespace of the analytics event ids derived from Svix message ids.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x3c1d_8a52_77e4_4f0b_a1c9_0e6b_52d8_f3a4);

/// The outcomes that change state and become analytics events.
const TRACKED: &[&str] = &[
    "email.delivered",
    "email.delivery_delayed",
    "email.opened",
    "email.clicked",
    "email.bounced",
    "email.complained",
];

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    /// Stored and applied to its send.
    Applied,
    /// This `svix-id` was recorded before.
    Duplicate,
    /// Stored; it is not about one of our sends (another sender on the same account) or its
    /// type changes nothing (`email.sent`).
    Stored,
    /// It can never be stored: kept in `quarantine` with the reason, nothing else written.
    Quarantined,
}

/// The parts of a Resend event we read.
struct ResendEvent {
    kind: String,
    occurred_at: DateTime<Utc>,
    email_id: String,
    hard_bounce: bool,
    link: Option<String>,
}

fn parse(body: &[u8]) -> Result<(ResendEvent, Value), EmailError> {
    let malformed = |reason: &str| EmailError::Malformed(reason.to_string());
    let payload: Value = serde_json::from_slice(body)
        .map_err(|error| EmailError::Malformed(format!("not JSON: {error}")))?;
    let text = |pointer: &str| payload.pointer(pointer).and_then(Value::as_str);
    let kind = text("/type")
        .filter(|kind| !kind.is_empty())
        .ok_or_else(|| malformed("no \"type\""))?
        .to_string();
    let occurred_at = text("/created_at")
        .and_then(parse_time)
        .ok_or_else(|| malformed("\"created_at\" is missing or not a timestamp"))?;
    let email_id = text("/data/email_id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| malformed("no \"data.email_id\""))?
        .to_string();
    // Resend reports permanent rejections as bounces; only an explicit transient one (a full
    // mailbox) leaves the address usable.
    let hard_bounce = kind == "email.bounced"
        && !text("/data/bounce/type").is_some_and(|kind| kind.eq_ignore_ascii_case("transient"));
    let link = text("/data/click/link").map(str::to_string);
    Ok((
        ResendEvent {
            kind,
            occurred_at,
            email_id,
            hard_bounce,
            link,
        },
        payload,
    ))
}

/// ISO 8601 as Resend documents it, or the Postgres-style text some of its payloads carry.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
                .map(|at| at.with_timezone(&Utc))
                .ok()
        })
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .map(|at| at.and_utc())
                .ok()
        })
}

/// SQLSTATE 54000: a value beyond the server's limits (a key too long for its index entry);
/// like a refused value, the same delivery fails the same way every time.
const PROGRAM_LIMIT_EXCEEDED: &str = "54000";

/// Why a delivery can never be stored, when that is what `error` says.
fn unstorable_reason(error: &EmailError) -> Option<String> {
    let database = match error {
        EmailError::Db(error) => error,
        EmailError::Events(shared::events::StoreError::Db(error)) => error,
        _ => return None,
    };
    let beyond_limits = matches!(database, DbError::Postgres { source, .. }
        if source.code().is_some_and(|code| code.code() == PROGRAM_LIMIT_EXCEEDED));
    (database.is_refused_value() || beyond_limits).then(|| database.to_string())
}

/// Records one verified delivery; returns what to dispatch after commit.
pub async fn record(
    pool: &shared::db::Pool,
    outbox: &Outbox,
    svix_id: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(Recorded, Pending), EmailError> {
    let (event, payload) = parse(body)?;
    let reason = match shared::text::unstorable(&payload) {
        Some(path) => format!("`\\u0000` at {path}: PostgreSQL's text and jsonb cannot hold it"),
        None => match apply(pool, outbox, svix_id, &event, &payload, now).await {
            Err(error) => unstorable_reason(&error).ok_or(error)?,
            recorded => return recorded,
        },
    };
    tracing::warn!(svix_id, reason, "Resend delivery quarantined");
    shared::quarantine::keep(
        pool,
        shared::quarantine::Quarantined {
            source: "resend",
            key: svix_id,
            reason: &reason,
            payload: body,
        },
    )
    .await?;
    Ok((Recorded::Quarantined, Pending::default()))
}

/// The delivery's one transaction.
async fn apply(
    pool: &shared::db::Pool,
    outbox: &Outbox,
    svix_id: &str,
    event: &ResendEvent,
    payload: &Value,
    now: DateTime<Utc>,
) -> Result<(Recorded, Pending), EmailError> {
    let mut client = pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, Budget::REQUEST).await?;
    let inserted = transaction
        .query_typed_opt(
            "INSERT INTO email_events (svix_id, type, email_id, send_id, occurred_at, payload)
             SELECT $1, $2, $3, (SELECT id FROM email_sends WHERE provider_message_id = $3), $4, $5
             ON CONFLICT (svix_id) DO NOTHING
             RETURNING send_id",
            &[
                (&svix_id, Type::TEXT),
                (&event.kind, Type::TEXT),
                (&event.email_id, Type::TEXT),
                (&event.occurred_at, Type::TIMESTAMPTZ),
                (payload, Type::JSONB),
            ],
        )
        .await
        .context("store the email event")?;
    let Some(row) = inserted else {
        return Ok((Recorded::Duplicate, Pending::default()));
    };
    let send_id: Option<Uuid> = row.get(0);
    let (Some(send_id), true) = (send_id, TRACKED.contains(&event.kind.as_str())) else {
        transaction.commit().await.context("commit email event")?;
        return Ok((Recorded::Stored, Pending::default()));
    };
    let send = transaction
        .query_typed_one(
            "UPDATE email_sends s SET
                    delivered_at  = CASE WHEN $2 = 'email.delivered'  THEN LEAST(s.delivered_at, $3)  ELSE s.delivered_at END,
                    opened_at     = CASE WHEN $2 = 'email.opened'     THEN LEAST(s.opened_at, $3)     ELSE s.opened_at END,
                    clicked_at    = CASE WHEN $2 = 'email.clicked'    THEN LEAST(s.clicked_at, $3)    ELSE s.clicked_at END,
                    bounced_at    = CASE WHEN $2 = 'email.bounced'    THEN LEAST(s.bounced_at, $3)    ELSE s.bounced_at END,
                    complained_at = CASE WHEN $2 = 'email.complained' THEN LEAST(s.complained_at, $3) ELSE s.complained_at END
             WHERE s.id = $1
             RETURNING s.campaign, s.to_address, s.member_id, s.user_id,
                       -- Where the outcome is an analytics event: a member's in the product's
                       -- own workspace, keyed by member; a send from before recipients were
                       -- members in its tenant's, keyed by the audience person.
                       CASE WHEN s.member_id IS NOT NULL
                            THEN (SELECT w.id FROM workspaces w WHERE w.is_product)
                            ELSE s.workspace_id END,
                       coalesce(s.member_id::text,
                                (SELECT u.distinct_id FROM users u WHERE u.id = s.user_id))",
            &[
                (&send_id, Type::UUID),
                (&event.kind, Type::TEXT),
                (&event.occurred_at, Type::TIMESTAMPTZ),
            ],
        )
        .await
        .context("apply the email event")?;
    let (campaign, address, member, audience_person): (
        String,
        Option<String>,
        Option<Uuid>,
        Option<Uuid>,
    ) = (send.get(0), send.get(1), send.get(2), send.get(3));
    let (event_workspace, distinct_id): (Option<Uuid>, Option<String>) = (send.get(4), send.get(5));
    let suppression = match event.kind.as_str() {
        "email.complained" => Some("complained"),
        "email.bounced" if event.hard_bounce => Some("bounced"),
        _ => None,
    };
    if let (Some(reason), Some(address)) = (suppression, &address) {
        transaction
            .execute_typed(
                "INSERT INTO email_suppressions (address, reason, svix_id) VALUES (lower($1), $2, $3)
                 ON CONFLICT (address) DO NOTHING",
                &[(address, Type::TEXT), (&reason, Type::TEXT), (&svix_id, Type::TEXT)],
            )
            .await
            .context("suppress the address")?;
    }
    if event.kind == "email.complained" {
        transaction
            .execute_typed(
                "WITH member AS (
                     INSERT INTO member_email_unsubscribes (member_id, method)
                     SELECT $1, 'complaint' WHERE $1 IS NOT NULL
                     ON CONFLICT (member_id) DO NOTHING)
                 INSERT INTO email_unsubscribes (user_id, method)
                 SELECT $2, 'complaint' WHERE $2 IS NOT NULL
                 ON CONFLICT (user_id) DO NOTHING",
                &[(&member, Type::UUID), (&audience_person, Type::UUID)],
            )
            .await
            .context("unsubscribe the complainant")?;
    }
    // Without a product workspace configured, members' email outcomes stay in `email_sends`.
    let pending = match (event_workspace, distinct_id) {
        (Some(workspace), Some(distinct_id)) => {
            let analytics_event = shared::events::Event {
                id: Uuid::new_v5(&EVENT_NAMESPACE, svix_id.as_bytes()),
                distinct_id,
                name: event.kind.replacen("email.", "email_", 1),
                timestamp: event.occurred_at,
                properties: json!({
                    "campaign": campaign,
                    "email_id": event.email_id,
                    "send_id": send_id,
                    "link": &event.link,
                    "hard_bounce": (event.kind == "email.bounced").then_some(event.hard_bounce),
                }),
                token: None,
            };
            shared::events::store_within(
                &transaction,
                outbox,
                workspace,
                shared::events::Source::Email,
                &[analytics_event],
                now,
            )
            .await?
            .1
        }
        _ => Pending::default(),
    };
    transaction.commit().await.context("commit email event")?;
    Ok((Recorded::Applied, pending))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_payloads_parse() {
        let body = br#"{"type":"email.bounced","created_at":"2026-12-01T10:00:00.123Z",
            "data":{"email_id":"e-1","bounce":{"type":"Permanent","subType":"General"}}}"#;
        let (event, _) = parse(body).unwrap();
        assert_eq!(event.email_id, "e-1");
        assert!(event.hard_bounce);
        let soft = br#"{"type":"email.bounced","created_at":"2026-12-01 10:00:00.5+00",
            "data":{"email_id":"e-1","bounce":{"type":"Transient"}}}"#;
        let (event, _) = parse(soft).unwrap();
        assert!(!event.hard_bounce);
        assert_eq!(
            event.occurred_at,
            "2026-12-01T10:00:00.5Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Map, Value, json};

        use super::super::{parse, parse_time};
        use crate::EmailError;

        const FIELDS: &[&str] = &[
            "type",
            "created_at",
            "data",
            "email_id",
            "bounce",
            "click",
            "link",
        ];

        fn timestamp() -> impl Strategy<Value = String> {
            "[+-]?[0-9]{1,7}-[0-9]{1,2}-[0-9]{1,2}[T ][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?"
        }

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                ".{0,16}".prop_map(Value::String),
                timestamp().prop_map(Value::String),
                prop::sample::select(vec![
                    "email.bounced",
                    "email.opened",
                    "Transient",
                    "a\u{0}b"
                ])
                .prop_map(|text| Value::String(text.into())),
            ];
            leaf.prop_recursive(3, 32, 5, |inner| {
                let key = prop_oneof![
                    3 => prop::sample::select(FIELDS).prop_map(str::to_string),
                    1 => ".{0,8}",
                ];
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((key, inner), 0..5).prop_map(|fields| Value::Object(
                        fields.into_iter().collect::<Map<_, _>>()
                    )),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_bytes_parse_or_are_malformed(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                prop_assert!(matches!(parse(&bytes), Ok(_) | Err(EmailError::Malformed(_))));
            }

            #[test]
            fn arbitrary_events_give_what_is_needed_or_say_what_is_missing(
                kind in json(),
                created_at in prop_oneof![json(), timestamp().prop_map(Value::String)],
                data in json(),
                email_id in json(),
            ) {
                let mut data = data;
                if let Value::Object(fields) = &mut data {
                    fields.insert("email_id".into(), email_id);
                }
                let body = json!({"type": kind, "created_at": created_at, "data": data}).to_string();
                match parse(body.as_bytes()) {
                    Ok((event, _)) => prop_assert!(!event.kind.is_empty() && !event.email_id.is_empty()),
                    Err(error) => prop_assert!(matches!(error, EmailError::Malformed(_)), "{error}"),
                }
            }

            #[test]
            fn any_time_text_parses_or_is_none(text in prop_oneof![".{0,40}", timestamp()]) {
                let _ = parse_time(&text);
            }
        }
    }

    #[test]
    fn incomplete_payloads_say_what_is_missing() {
        for (body, missing) in [
            (
                &br#"{"created_at":"2026-12-01T10:00:00Z","data":{"email_id":"e"}}"#[..],
                "type",
            ),
            (
                br#"{"type":"email.opened","data":{"email_id":"e"}}"#,
                "created_at",
            ),
            (
                br#"{"type":"email.opened","created_at":"2026-12-01T10:00:00Z","data":{}}"#,
                "email_id",
            ),
            (b"{", "not JSON"),
        ] {
            let error = parse(body).err().unwrap().to_string();
            assert!(error.contains(missing), "{error}");
        }
    }
}
