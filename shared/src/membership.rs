//! Who may read a workspace through the member APIs: a signed-in member of it, or a server
//! holding the API's service token.
//!
//! [`Caller`] is the extractor every such API takes: a bearer equal to the service token
//! (compared in constant time) is [`Caller::Service`], for server-to-server use; anything
//! else must be a member's Supabase access token ([`SupabaseUser`], verified once by
//! [`crate::jwt`]). [`workspace_for`] then turns `?workspace=` into an id the caller may read:
//! a member must belong to it (`workspace_members`), or the answer is 403.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::db::DbContext;
use crate::http::{ApiError, BearerToken, SupabaseUser, VerifiesMembers};

/// What an API that also serves servers knows of its service token.
pub trait HasServiceToken {
    /// `None`: the API serves members only.
    fn service_token(&self) -> Option<&SecretString>;
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A server holding the service token: every workspace.
    Service,
    /// A signed-in member: their workspaces only.
    Member(SupabaseUser),
}

impl<D> FromRequestParts<Arc<D>> for Caller
where
    D: VerifiesMembers + HasServiceToken + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, deps: &Arc<D>) -> Result<Self, Self::Rejection> {
        let presented = BearerToken::from_headers(&parts.headers);
        if let (Some(BearerToken(token)), Some(service)) = (&presented, deps.service_token())
            && crate::webhook::constant_time_eq(
                service.expose_secret().as_bytes(),
                token.as_bytes(),
            )
        {
            return Ok(Caller::Service);
        }
        Ok(Caller::Member(
            SupabaseUser::from_request_parts(parts, deps).await?,
        ))
    }
}

/// Whether `user` belongs to `workspace`.
pub async fn is_member(
    client: &impl GenericClient,
    workspace: Uuid,
    user: Uuid,
) -> Result<bool, ApiError> {
    let row = client
        .query_typed_opt(
            "SELECT 1 FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
            &[(&workspace, Type::UUID), (&user, Type::UUID)],
        )
        .await
        .context("check membership")?;
    Ok(row.is_some())
}

/// The `?workspace=` the caller asked about, once they may read it: 400 when it is missing,
/// 403 when a member does not belong to it.
pub async fn workspace_for(
    client: &impl GenericClient,
    caller: &Caller,
    workspace: Option<Uuid>,
) -> Result<Uuid, ApiError> {
    let workspace =
        workspace.ok_or_else(|| ApiError::bad_request("workspace (uuid) is required"))?;
    match caller {
        Caller::Service => Ok(workspace),
        Caller::Member(user) if is_member(client, workspace, user.id).await? => Ok(workspace),
        Caller::Member(_) => Err(ApiError::forbidden("not a member of this workspace")),
    }
}
