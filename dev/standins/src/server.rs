//! Serving the three stand-ins: [`router`] builds their routes (to mount on another
//! server, or to call with `tower::ServiceExt::oneshot`), [`start`] binds them to one
//! local port, and [`Standins`] is that running server: its base URLs, its fault
//! [`Handles`], and a stop on drop.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::StandinConfig;
use crate::reply::json_response;
use crate::{MetaFaults, ShopifyFaults, TikTokFaults, meta, shopify, tiktok};

/// The run-time handles of one set of stand-ins.
#[derive(Clone)]
pub struct Handles {
    pub meta: MetaFaults,
    pub tiktok: TikTokFaults,
    pub shopify: ShopifyFaults,
}

/// The three APIs' routes, without a listener and without a fallback, so they can be merged
/// into another router (paths start `/meta/`, `/tiktok/`, `/shopify/`). `origin` (e.g.
/// `http://127.0.0.1:8080`) is what absolute URLs in responses (Meta's `paging.next`,
/// Shopify's `Link`) start with.
pub fn router(config: &StandinConfig, origin: &str) -> (Router, Handles) {
    let origin = origin.trim_end_matches('/');
    let meta = meta::MetaFaults::new(config, &format!("{origin}/meta"));
    let tiktok = tiktok::TikTokFaults::new(config);
    let shopify = shopify::ShopifyFaults::new(config, &format!("{origin}/shopify"));
    let router = Router::new()
        .merge(meta::routes(&meta))
        .merge(tiktok::routes(&tiktok))
        .merge(shopify::routes(&shopify));
    (
        router,
        Handles {
            meta,
            tiktok,
            shopify,
        },
    )
}

/// Running stand-ins on one local port. Dropping this stops the server (without waiting);
/// [`Standins::stop`] stops it and waits.
pub struct Standins {
    addr: SocketAddr,
    config: StandinConfig,
    handles: Handles,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Standins {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stands for `https://graph.facebook.com`: append `/v27.0/act_{id}/insights`.
    pub fn meta_base_url(&self) -> String {
        format!("{}/meta", self.url())
    }

    /// Stands for `https://business-api.tiktok.com`: append
    /// `/open_api/v1.3/report/integrated/get/`.
    pub fn tiktok_base_url(&self) -> String {
        format!("{}/tiktok", self.url())
    }

    /// Stands for `https://{shop}.myshopify.com`: append `/admin/api/2024-10/orders.json`.
    pub fn shopify_base_url(&self, shop: &str) -> String {
        format!("{}/shopify/{shop}", self.url())
    }

    pub fn meta_faults(&self) -> MetaFaults {
        self.handles.meta.clone()
    }

    pub fn tiktok_faults(&self) -> TikTokFaults {
        self.handles.tiktok.clone()
    }

    pub fn shopify_faults(&self) -> ShopifyFaults {
        self.handles.shopify.clone()
    }

    pub fn handles(&self) -> &Handles {
        &self.handles
    }

    /// The configuration they were started with (tokens, account ids, shops).
    pub fn config(&self) -> &StandinConfig {
        &self.config
    }

    /// Stops accepting, lets requests in flight finish (at most 5 s), and returns.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Standins {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `127.0.0.1:0` and serves the three stand-ins until stopped or dropped.
pub async fn start(config: StandinConfig) -> anyhow::Result<Standins> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("bind the API stand-ins to 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (router, handles) = router(&config, &format!("http://{addr}"));
    let router = router.fallback(|| async {
        json_response(
            StatusCode::NOT_FOUND,
            br#"{"error":"no stand-in serves this path"}"#.to_vec(),
        )
    });
    let (shutdown, task) = serve(listener, router, "the API stand-ins");
    Ok(Standins {
        addr,
        config,
        handles,
        shutdown,
        task: Some(task),
    })
}

/// Serves `router` on `listener` until the returned token is cancelled; `what` names the
/// server in the log if it fails.
pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    what: &'static str,
) -> (CancellationToken, JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, what, "a stand-in server failed");
        }
    });
    (shutdown, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_listener_serves_all_three_and_stops() {
        let standins = start(StandinConfig::default()).await.unwrap();
        assert!(standins.meta_base_url().starts_with("http://127.0.0.1:"));
        assert!(standins.tiktok_base_url().ends_with("/tiktok"));
        assert!(
            standins
                .shopify_base_url("demo-store")
                .ends_with("/shopify/demo-store")
        );
        let addr = standins.addr();
        // A raw HTTP/1.1 request over the bound port, to prove it is really listening.
        let reply = raw_get(
            addr,
            "/shopify/demo-store/admin/api/2024-10/orders.json?limit=1",
        )
        .await
        .unwrap();
        assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
        standins.stop().await;
        assert!(raw_get(addr, "/").await.is_err());
    }

    async fn raw_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
        raw_request(addr, path, &[]).await
    }

    /// One HTTP/1.1 GET on a fresh connection, the whole reply as text.
    async fn raw_request(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        Ok(reply)
    }
}
