//! `voxgate serve`: bind HTTP and SIP, run until SIGTERM/SIGINT, drain.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use voxgate_flows::app::{FlowsApp, FlowsConfig};
use voxgate_gateway::call::{CallRouter, IncomingCall, RouteDecision};
use voxgate_gateway::config::GatewayConfig;
use voxgate_gateway::http::{self, HttpServer, Readiness};
use voxgate_gateway::{clock, sip};
use voxgate_orchestrator::metrics::AiMetrics;
use voxgate_orchestrator::noc::AiRuntimeState;
use voxgate_orchestrator::runner::{build, AiNodeRunner};
use voxgate_stt_tts::tts_cache::TtsCacheConfig;

use crate::exit;

/// Answers the DTMF echo test number with the built-in demo handler, and
/// 404 to every other number no tenant owns.
struct EchoNumber {
    number: String,
    demo: voxgate_gateway::demo::DemoRouter,
}

impl CallRouter for EchoNumber {
    fn route(&self, call: &IncomingCall) -> RouteDecision {
        if call.did == self.number {
            self.demo.route(call)
        } else {
            tracing::info!(did = %call.did, "no tenant owns this number; answering 404");
            RouteDecision::Reject {
                status: 404,
                reason: "Not Found".to_owned(),
            }
        }
    }
}

/// The base URL other parts of voxgate use to reach its own HTTP server.
fn self_url(addr: std::net::SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// The AI node runner `[ai]` asks for: the orchestrator over the chosen
/// engines, or, with no STT configured, the runner that takes every AI
/// node's fallback (reason `ai_unavailable`).
fn build_ai(
    cfg: &GatewayConfig,
    runtime: &AiRuntimeState,
) -> Result<Arc<dyn voxgate_flows::driver::AiRunner>, Box<build::BuildError>> {
    let say = cfg.tts.say_config();
    let Some(engines) = build::engines(
        &cfg.ai,
        &say,
        &TtsCacheConfig::in_data_dir(&cfg.data_dir),
        &cfg.data_dir,
        |var| std::env::var(var).ok(),
    )?
    else {
        tracing::info!("ai: no STT configured; AI nodes take their fallback");
        return Ok(Arc::new(voxgate_flows::driver::UnavailableAi));
    };
    // The engines built, not the ones asked for: `lexical-fallback` shows
    // here when the embedding model is absent.
    let n = &engines.names;
    tracing::info!("ai: stt={} nlu={} tts={}", n.stt, n.nlu, n.tts);
    let metrics = Arc::new(AiMetrics::new().with_counts(runtime.counts.clone()));
    voxgate_gateway::metrics::global().register(|r| metrics.register(r));
    let runner = AiNodeRunner::new(
        engines,
        build::conversation(&cfg.ai.conversation),
        runtime.policies.clone(),
        runtime.breakers.clone(),
        runtime.admission.clone(),
        metrics,
    );
    runtime.set_configured_providers(runner.provider_names());
    Ok(Arc::new(runner))
}

async fn start_flows(
    cfg: &GatewayConfig,
    http_addr: std::net::SocketAddr,
    ai: Arc<dyn voxgate_flows::driver::AiRunner>,
    ai_runtime: &AiRuntimeState,
) -> Result<FlowsApp, voxgate_flows::app::FlowsStartError> {
    let unknown: Option<Arc<dyn CallRouter>> = cfg.demo.enabled.then(|| {
        Arc::new(EchoNumber {
            number: cfg.demo.echo_number.clone(),
            demo: voxgate_gateway::demo::DemoRouter::new(
                voxgate_gateway::demo::DemoConfig::default(),
            ),
        }) as Arc<dyn CallRouter>
    });
    FlowsApp::start(FlowsConfig {
        data_dir: cfg.data_dir.clone(),
        http_base: self_url(http_addr),
        demo: cfg.demo.enabled,
        demo_agent_uri: cfg.demo.agent_uri.clone(),
        demo_number: cfg.demo.flow_number.clone(),
        ai,
        unknown_numbers: unknown,
        noc: Some(ai_runtime.noc_hooks()),
    })
    .await
}

/// Runs the gateway to the end of its drain and returns the exit code.
pub async fn run(cfg: GatewayConfig) -> i32 {
    if let Err(e) = tokio::fs::create_dir_all(&cfg.data_dir).await {
        tracing::error!("data_dir {}: cannot create: {e}", cfg.data_dir.display());
        return exit::UNAVAILABLE;
    }
    // The per-tenant NOC policies, admission and breakers: one per
    // process, shared by the NOC API and the AI runner.
    let ai_runtime = AiRuntimeState::default();
    voxgate_gateway::metrics::global().register(|r| ai_runtime.register_metrics(r));
    let ai = match build_ai(&cfg, &ai_runtime) {
        Ok(ai) => ai,
        Err(e) => {
            tracing::error!("bad configuration: {e}");
            return exit::USAGE;
        }
    };
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
    let flows = match start_flows(&cfg, http_server.local_addr(), ai, &ai_runtime).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("{e}");
            return exit::UNAVAILABLE;
        }
    };
    if let Some(key) = &flows.first_admin_key {
        // Printed once, on the first start with an empty store.
        println!("voxgate: first start. Admin API key (shown only once): {key}");
    }
    let server = match sip::Server::start(sip_cfg, flows.router.clone()).await {
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
    let http_task = tokio::spawn(http_server.serve(
        http::router_with(
            readiness.clone(),
            [
                flows.api.clone(),
                ai_runtime.metrics_router(),
                crate::ui::router(cfg.http.ui_dir.clone()),
            ],
        ),
        async move {
            let _ = http_stopped.wait_for(|stop| *stop).await;
        },
    ));

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
