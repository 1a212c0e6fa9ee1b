//! The HTTP side: `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! [`router`] builds the base routes over a [`Readiness`] handle; other
//! crates add theirs with [`axum::Router::merge`] or
//! [`axum::Router::nest`] on the result (or pass them to [`HttpServer`]
//! through [`router_with`]). [`HttpServer`] binds first and serves later, so
//! the binary can log the bound address (port 0 works) before serving.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The content type Prometheus expects for the text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the process is ready for calls: SIP is bound and no drain has
/// begun. Cloning shares the same state.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

#[derive(Debug, Default)]
struct ReadinessInner {
    sip_bound: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Call once the SIP sockets are bound.
    pub fn set_sip_bound(&self) {
        self.inner.sip_bound.store(true, Ordering::SeqCst);
    }

    /// Call when a drain begins; `/readyz` answers 503 from then on.
    pub fn begin_drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    pub fn is_ready(&self) -> bool {
        self.inner.sip_bound.load(Ordering::SeqCst) && !self.is_draining()
    }
}

/// The base routes: `/healthz`, `/readyz`, `/metrics`.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

/// The base routes merged with `extra` routers (each with its own paths).
pub fn router_with(readiness: Readiness, extra: impl IntoIterator<Item = Router>) -> Router {
    extra.into_iter().fold(router(readiness), Router::merge)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    if readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if readiness.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        crate::metrics::global().encode(),
    )
}

/// Why the HTTP server could not run.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("http.listen {addr}: cannot bind: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("http server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A bound HTTP listener, not serving yet.
pub struct HttpServer {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
}

impl HttpServer {
    pub async fn bind(addr: SocketAddr) -> Result<Self, HttpError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        Ok(Self {
            listener,
            local_addr,
        })
    }

    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `router` until `shutdown` completes, then finishes in-flight
    /// requests and returns.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), HttpError> {
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(HttpError::Serve)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends one raw HTTP/1.1 request and returns (status, headers+body).
    async fn get_raw(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, out)
    }

    async fn start(
        readiness: Readiness,
        extra: Vec<Router>,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router_with(readiness, extra);
        tokio::spawn(server.serve(app, async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    #[tokio::test]
    async fn health_ready_and_drain() {
        let readiness = Readiness::new();
        let (addr, stop) = start(readiness.clone(), vec![]).await;

        let (status, body) = get_raw(addr, "/healthz").await;
        assert_eq!(status, 200, "{body}");

        let (status, body) = get_raw(addr, "/readyz").await;
        assert_eq!(status, 503, "not ready before SIP is bound: {body}");
        assert!(body.ends_with("starting\n"), "{body}");

        readiness.set_sip_bound();
        let (status, _) = get_raw(addr, "/readyz").await;
        assert_eq!(status, 200);

        readiness.begin_drain();
        let (status, body) = get_raw(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.ends_with("draining\n"), "{body}");
        let (status, _) = get_raw(addr, "/healthz").await;
        assert_eq!(status, 200, "still alive while draining");

        let (status, _) = get_raw(addr, "/nope").await;
        assert_eq!(status, 404);
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        crate::metrics::global().dtmf_digits_total.inc();
        let (addr, stop) = start(Readiness::new(), vec![]).await;
        let (status, body) = get_raw(addr, "/metrics").await;
        assert_eq!(status, 200);
        let lower = body.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: text/plain; version=0.0.4"),
            "{body}"
        );
        assert!(body.contains("voxgate_dtmf_digits_total"), "{body}");
        assert!(body.contains("# EOF"), "{body}");
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn extra_routers_are_merged() {
        let extra = Router::new().route("/flows", get(|| async { "flows\n" }));
        let nested = Router::new().nest(
            "/api",
            Router::new().route("/v1/ping", get(|| async { "pong\n" })),
        );
        let (addr, stop) = start(Readiness::new(), vec![extra, nested]).await;
        let (status, body) = get_raw(addr, "/flows").await;
        assert_eq!(status, 200);
        assert!(body.ends_with("flows\n"));
        let (status, body) = get_raw(addr, "/api/v1/ping").await;
        assert_eq!(status, 200);
        assert!(body.ends_with("pong\n"));
        let (status, _) = get_raw(addr, "/healthz").await;
        assert_eq!(status, 200);
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn bind_error_names_key() {
        let first = HttpServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let err = HttpServer::bind(first.local_addr()).await.err().unwrap();
        assert!(err.to_string().starts_with("http.listen"), "{err}");
    }
}
