//! `voxgate serve`: bind HTTP and SIP, run until SIGTERM/SIGINT, drain.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use voxgate_gateway::call::{CallRouter, IncomingCall, RouteDecision};
use voxgate_gateway::config::GatewayConfig;
use voxgate_gateway::http::{self, HttpServer, Readiness};
use voxgate_gateway::{clock, sip};

use crate::exit;

/// Answers 404 to every call: the router when the demo is disabled and no
/// flows are loaded.
struct NoRoutes;

impl CallRouter for NoRoutes {
    fn route(&self, _call: &IncomingCall) -> RouteDecision {
        RouteDecision::Reject {
            status: 404,
            reason: "Not Found".to_owned(),
        }
    }
}

fn router_for(cfg: &GatewayConfig) -> Arc<dyn CallRouter> {
    if cfg.demo.enabled {
        Arc::new(voxgate_gateway::demo::DemoRouter::new(
            voxgate_gateway::demo::DemoConfig::default(),
        ))
    } else {
        Arc::new(NoRoutes)
    }
}

/// Runs the gateway to the end of its drain and returns the exit code.
pub async fn run(cfg: GatewayConfig) -> i32 {
    if let Err(e) = tokio::fs::create_dir_all(&cfg.data_dir).await {
        tracing::error!("data_dir {}: cannot create: {e}", cfg.data_dir.display());
        return exit::UNAVAILABLE;
    }
    let readiness = Readiness::new();
    let http_server = match HttpServer::bind(cfg.http.listen).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return exit::UNAVAILABLE;
        }
    };
    tracing::info!("http listening on {}", http_server.local_addr());

    let sip_cfg = match cfg.sip_server_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("bad configuration: {e}");
            return exit::USAGE;
        }
    };
    let server = match sip::Server::start(sip_cfg, router_for(&cfg)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return exit::UNAVAILABLE;
        }
    };
    tracing::info!("sip listening on {} (udp, tcp)", server.local_addr());
    tracing::info!(
        "media address {} rtp ports {}",
        cfg.media_ip(),
        cfg.rtp.ports
    );
    readiness.set_sip_bound();

    let (stop_http, mut http_stopped) = watch::channel(false);
    let http_task = tokio::spawn(
        http_server.serve(http::router(readiness.clone()), async move {
            let _ = http_stopped.wait_for(|stop| *stop).await;
        }),
    );

    let first = wait_for_signal().await;
    tracing::info!(
        "{first}: draining; new calls get 503 for up to {} s",
        cfg.shutdown.drain_timeout_s
    );
    readiness.begin_drain();
    server.begin_drain();
    drain(&server, cfg.shutdown.drain_timeout()).await;

    server.shutdown().await;
    let _ = stop_http.send(true);
    match http_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("{e}"),
        Err(e) => tracing::warn!("http task: {e}"),
    }
    tracing::info!("stopped");
    exit::OK
}

/// Waits for calls to end, up to `timeout`; a second signal cuts it short.
async fn drain(server: &sip::Server, timeout: Duration) {
    let deadline = clock::now() + timeout;
    let second = wait_for_signal();
    tokio::pin!(second);
    loop {
        let active = server.active_calls();
        if active == 0 {
            tracing::info!("drained: no calls left");
            return;
        }
        let now = clock::now();
        if now >= deadline {
            tracing::warn!("drain timeout: ending {active} calls");
            return;
        }
        let tick = (deadline - now).min(Duration::from_millis(200));
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            sig = &mut second => {
                tracing::warn!("{sig} again: ending {active} calls now");
                return;
            }
        }
    }
}

/// The name of the first SIGTERM or SIGINT.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
