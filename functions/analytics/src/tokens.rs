//! Who may write into which workspace: the ingestion credentials and how they are kept.
//!
//! `workspace_tokens(token, workspace_id, kind)` holds two sorts of credential:
//!
//! * public identifiers, stored as they are because they are meant to be seen: PostHog and
//!   Mixpanel project tokens (in every browser that sends events) and the Mixpanel project id;
//! * secrets, stored as keyed hashes (`hmac-sha256:<hex>`, [`shared::crypto::Keys::hash`]):
//!   the PostHog webhook destination's secret, a Mixpanel project's API secret, a Mixpanel
//!   service account (the hash of `username:secret`). A lookup asks for any of the presented
//!   secret's [`shared::crypto::Keys::hash_candidates`], so secrets hashed under an older key
//!   are still found; a stolen table says nothing about them.
//!
//! A webhook secret stored verbatim before hashing was introduced is still honoured, compared
//! in constant time, and replaced by its hash by the first request that presents it.
//!
//! Presented values that hold `\u0000` are never sent to the database (its `text` refuses
//! them, which would turn a forged token into a server error): they name nothing.

use std::collections::{BTreeMap, BTreeSet};

use shared::crypto::{HASH_PREFIX, Keys};
use shared::db::{Budget, DbContext, DbError, Pool, begin};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::AnalyticsError;

/// The kinds of credential a workspace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    PosthogProject,
    MixpanelProject,
    PosthogWebhookSecret,
    /// Mixpanel's numeric project id, named by `?project_id=` with a service account.
    MixpanelProjectId,
    MixpanelApiSecret,
    /// A Mixpanel service account, as `username:secret`.
    MixpanelServiceAccount,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::PosthogProject => "posthog_project",
            TokenKind::MixpanelProject => "mixpanel_project",
            TokenKind::PosthogWebhookSecret => "posthog_webhook_secret",
            TokenKind::MixpanelProjectId => "mixpanel_project_id",
            TokenKind::MixpanelApiSecret => "mixpanel_api_secret",
            TokenKind::MixpanelServiceAccount => "mixpanel_service_account",
        }
    }

    /// Whether this kind is a secret, kept only as a keyed hash.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            TokenKind::PosthogWebhookSecret
                | TokenKind::MixpanelApiSecret
                | TokenKind::MixpanelServiceAccount
        )
    }

    /// What is stored for `token` of this kind.
    pub fn stored(self, keys: &Keys, token: &str) -> String {
        if self.is_secret() {
            keys.hash(token)
        } else {
            token.to_string()
        }
    }
}

fn nameable(token: &str) -> bool {
    !token.contains('\0')
}

/// The workspace of each of `tokens` that is a known token of `kind`.
pub async fn workspaces_of(
    pool: &Pool,
    tokens: &[&str],
    kind: TokenKind,
) -> Result<BTreeMap<String, Uuid>, DbError> {
    let tokens: Vec<&str> = tokens.iter().copied().filter(|t| nameable(t)).collect();
    if tokens.is_empty() {
        return Ok(BTreeMap::new());
    }
    let client = pool.get().await.context("check out a connection")?;
    let rows = client
        .query_typed(
            "SELECT token, workspace_id FROM workspace_tokens WHERE token = ANY ($1) AND kind = $2",
            &[(&tokens, Type::TEXT_ARRAY), (&kind.as_str(), Type::TEXT)],
        )
        .await
        .context("look up project tokens")?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Which of `tokens` are tokens of `kind` of `workspace`.
pub async fn tokens_of(
    pool: &Pool,
    workspace: Uuid,
    tokens: &[&str],
    kind: TokenKind,
) -> Result<BTreeSet<String>, DbError> {
    let tokens: Vec<&str> = tokens.iter().copied().filter(|t| nameable(t)).collect();
    if tokens.is_empty() {
        return Ok(BTreeSet::new());
    }
    let client = pool.get().await.context("check out a connection")?;
    let rows = client
        .query_typed(
            "SELECT token FROM workspace_tokens
              WHERE workspace_id = $1 AND kind = $2 AND token = ANY ($3)",
            &[
                (&workspace, Type::UUID),
                (&kind.as_str(), Type::TEXT),
                (&tokens, Type::TEXT_ARRAY),
            ],
        )
        .await
        .context("look up the workspace's project tokens")?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The workspace whose secret of `kind` is `presented`: found by its keyed hash.
async fn workspace_for_secret(
    pool: &Pool,
    keys: &Keys,
    presented: &str,
    kind: TokenKind,
) -> Result<Option<Uuid>, DbError> {
    let candidates = keys.hash_candidates(presented);
    let client = pool.get().await.context("check out a connection")?;
    let row = client
        .query_typed_opt(
            "SELECT workspace_id FROM workspace_tokens WHERE token = ANY ($1) AND kind = $2",
            &[
                (&candidates, Type::TEXT_ARRAY),
                (&kind.as_str(), Type::TEXT),
            ],
        )
        .await
        .context("look up a secret")?;
    Ok(row.map(|row| row.get(0)))
}

/// The workspace whose PostHog webhook secret is `presented`. A secret still stored verbatim
/// (from before secrets were hashed) is compared in constant time with every such row, so
/// timing reveals nothing about any of them, and replaced by its hash when it matches.
pub async fn workspace_for_webhook_secret(
    pool: &Pool,
    keys: &Keys,
    presented: &str,
) -> Result<Option<Uuid>, DbError> {
    let kind = TokenKind::PosthogWebhookSecret;
    let candidates = keys.hash_candidates(presented);
    let rows = {
        let client = pool.get().await.context("check out a connection")?;
        client
            .query_typed(
                "SELECT token, workspace_id FROM workspace_tokens
                  WHERE kind = $1 AND (token = ANY ($2) OR left(token, length($3)) <> $3)",
                &[
                    (&kind.as_str(), Type::TEXT),
                    (&candidates, Type::TEXT_ARRAY),
                    (&HASH_PREFIX, Type::TEXT),
                ],
            )
            .await
            .context("look up a webhook secret")?
    };
    let mut hashed = None;
    let mut verbatim = None;
    for row in &rows {
        let token: &str = row.get(0);
        if candidates.iter().any(|candidate| candidate == token) {
            hashed = Some(row.get::<_, Uuid>(1));
        } else if shared::webhook::constant_time_eq(token.as_bytes(), presented.as_bytes()) {
            verbatim = Some((token, row.get::<_, Uuid>(1)));
        }
    }
    match (hashed, verbatim) {
        (Some(workspace), _) => Ok(Some(workspace)),
        (None, Some((token, workspace))) => {
            rehash(pool, token, &keys.hash(presented), kind).await?;
            Ok(Some(workspace))
        }
        (None, None) => Ok(None),
    }
}

/// Replaces a verbatim secret by its keyed hash, keeping the row's workspace and age.
async fn rehash(pool: &Pool, verbatim: &str, hashed: &str, kind: TokenKind) -> Result<(), DbError> {
    let mut client = pool.get().await.context("check out a connection")?;
    let transaction = begin(&mut client, Budget::REQUEST).await?;
    transaction
        .execute_typed(
            "WITH verbatim AS (
                 DELETE FROM workspace_tokens WHERE token = $1 AND kind = $3
                 RETURNING workspace_id, created_at
             )
             INSERT INTO workspace_tokens (token, workspace_id, kind, created_at)
             SELECT $2, workspace_id, $3, created_at FROM verbatim
             ON CONFLICT (token) DO NOTHING",
            &[
                (&verbatim, Type::TEXT),
                (&hashed, Type::TEXT),
                (&kind.as_str(), Type::TEXT),
            ],
        )
        .await
        .context("replace a verbatim secret by its hash")?;
    transaction
        .commit()
        .await
        .context("commit the hashed secret")
}

/// Basic credentials as Mixpanel's `/import` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportCredentials<'a> {
    /// The project's API secret as the user name, no password.
    ApiSecret(&'a str),
    /// A service account (`username:secret`) and the project it writes to.
    ServiceAccount {
        account: &'a str,
        project_id: Option<&'a str>,
    },
}

impl<'a> ImportCredentials<'a> {
    /// Reads decoded Basic credentials (`user:password`).
    pub fn parse(credentials: &'a str, project_id: Option<&'a str>) -> Option<Self> {
        let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
        if user.is_empty() {
            return None;
        }
        Some(if password.is_empty() {
            ImportCredentials::ApiSecret(user)
        } else {
            ImportCredentials::ServiceAccount {
                account: credentials,
                project_id,
            }
        })
    }
}

/// Why `/import` credentials were refused.
pub const IMPORT_REFUSED: &str = "wrong credentials: /import takes the project's API secret as the Basic user name, or a service account (username:secret) with ?project_id=; a project token alone is not accepted";

/// The workspace `credentials` may import into, or why not.
pub async fn import_workspace(
    pool: &Pool,
    keys: &Keys,
    credentials: &ImportCredentials<'_>,
) -> Result<Result<Uuid, &'static str>, DbError> {
    match credentials {
        ImportCredentials::ApiSecret(secret) => {
            Ok(
                workspace_for_secret(pool, keys, secret, TokenKind::MixpanelApiSecret)
                    .await?
                    .ok_or(IMPORT_REFUSED),
            )
        }
        ImportCredentials::ServiceAccount {
            project_id: None, ..
        } => Ok(Err(
            "a service account must name its project with ?project_id=",
        )),
        ImportCredentials::ServiceAccount {
            account,
            project_id: Some(project_id),
        } => {
            if !nameable(project_id) {
                return Ok(Err(IMPORT_REFUSED));
            }
            let candidates = keys.hash_candidates(account);
            let client = pool.get().await.context("check out a connection")?;
            let row = client
                .query_typed_opt(
                    "SELECT account.workspace_id
                       FROM workspace_tokens account
                       JOIN workspace_tokens project ON project.workspace_id = account.workspace_id
                      WHERE account.token = ANY ($1) AND account.kind = $2
                        AND project.token = $3 AND project.kind = $4",
                    &[
                        (&candidates, Type::TEXT_ARRAY),
                        (&TokenKind::MixpanelServiceAccount.as_str(), Type::TEXT),
                        (project_id, Type::TEXT),
                        (&TokenKind::MixpanelProjectId.as_str(), Type::TEXT),
                    ],
                )
                .await
                .context("look up a service account")?;
            Ok(row.map(|row| row.get(0)).ok_or(IMPORT_REFUSED))
        }
    }
}

/// Which workspace [`ensure_workspace`] makes sure of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceKind {
    /// A tenant's: its audience's events feed its metrics.
    Tenant,
    /// The product's own analytics (members' actions in the frontend, their emails'
    /// outcomes), kept out of every tenant's counts.
    Product,
}

/// Creates a workspace of `kind` with these tokens unless one of that kind exists; returns
/// its id when created. Secret kinds are stored as their keyed hash. The local stack calls it
/// so an SDK can be pointed at it at once.
pub async fn ensure_workspace(
    pool: &Pool,
    keys: &Keys,
    kind: WorkspaceKind,
    name: &str,
    tokens: &[(&str, TokenKind)],
) -> Result<Option<Uuid>, AnalyticsError> {
    let is_product = kind == WorkspaceKind::Product;
    let mut client = pool.get().await.context("check out a connection")?;
    let transaction = begin(&mut client, Budget::BACKGROUND).await?;
    transaction
        .batch_execute("SELECT pg_advisory_xact_lock(hashtext('default workspace'))")
        .await
        .context("lock default workspace")?;
    let exists = transaction
        .query_typed_opt(
            "SELECT 1 FROM workspaces WHERE is_product = $1 LIMIT 1",
            &[(&is_product, Type::BOOL)],
        )
        .await
        .context("look for workspaces")?;
    if exists.is_some() {
        return Ok(None);
    }
    let id: Uuid = transaction
        .query_typed_one(
            "INSERT INTO workspaces (name, is_product) VALUES ($1, $2) RETURNING id",
            &[(&name, Type::TEXT), (&is_product, Type::BOOL)],
        )
        .await
        .context("create default workspace")?
        .get(0);
    for (token, kind) in tokens {
        transaction
            .execute_typed(
                "INSERT INTO workspace_tokens (token, workspace_id, kind) VALUES ($1, $2, $3)",
                &[
                    (&kind.stored(keys, token), Type::TEXT),
                    (&id, Type::UUID),
                    (&kind.as_str(), Type::TEXT),
                ],
            )
            .await
            .context("create default token")?;
    }
    transaction
        .commit()
        .await
        .context("commit default workspace")?;
    Ok(Some(id))
}

/// [`ensure_workspace`] for a tenant: creates one unless a tenant workspace exists.
pub async fn ensure_default_workspace(
    pool: &Pool,
    keys: &Keys,
    name: &str,
    tokens: &[(&str, TokenKind)],
) -> Result<Option<Uuid>, AnalyticsError> {
    ensure_workspace(pool, keys, WorkspaceKind::Tenant, name, tokens).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_credentials_as_mixpanel_sends_them() {
        assert_eq!(
            ImportCredentials::parse("secret:", None),
            Some(ImportCredentials::ApiSecret("secret"))
        );
        assert_eq!(
            ImportCredentials::parse("secret", Some("1")),
            Some(ImportCredentials::ApiSecret("secret"))
        );
        assert_eq!(
            ImportCredentials::parse("sa.mp-service-account:pw:with:colons", Some("7")),
            Some(ImportCredentials::ServiceAccount {
                account: "sa.mp-service-account:pw:with:colons",
                project_id: Some("7"),
            })
        );
        assert_eq!(ImportCredentials::parse(":pw", None), None);
        assert_eq!(ImportCredentials::parse("", None), None);
    }

    #[test]
    fn only_secrets_are_hashed() {
        let keys = Keys::from_bytes(("k", [3; 32]), &[]);
        assert_eq!(TokenKind::PosthogProject.stored(&keys, "phc_x"), "phc_x");
        assert_eq!(TokenKind::MixpanelProjectId.stored(&keys, "123"), "123");
        for kind in [
            TokenKind::PosthogWebhookSecret,
            TokenKind::MixpanelApiSecret,
            TokenKind::MixpanelServiceAccount,
        ] {
            let stored = kind.stored(&keys, "s3cret");
            assert!(stored.starts_with(HASH_PREFIX) && !stored.contains("s3cret"));
        }
    }
}
