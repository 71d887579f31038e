//! HTTP functions: every agent exposes its routes as an axum [`Router`], which the local
//! stack mounts on one port and Lambda serves one API Gateway event at a time. The same router
//! in both places means the paths, status codes and bodies a test sees are the ones deployed;
//! what stands in front of every router is [`crate::http`].

use axum::Router;

use super::LambdaError;

/// Serves `router` as a Lambda behind an API Gateway HTTP API.
pub async fn serve(router: Router) -> Result<(), LambdaError> {
    lambda_http::run(router).await
}
