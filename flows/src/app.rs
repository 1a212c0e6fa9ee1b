//! Assembles the flow engine for `voxgate serve`: the store in the data
//! dir, the first admin key, the demo tenant, the live table, the SIP
//! router and the `/v1` API, with the stored NOC policies put in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use voxgate_gateway::call::CallRouter;

use crate::api::{self, ApiState, NocHooks};
use crate::driver::{AiRunner, FlowEnv};
use crate::http_client::{FlowHttpClient, HttpClientError};
use crate::live::LiveTable;
use crate::router::FlowRouter;
use crate::store::{SqliteStore, Store, StoreError};

/// What the binary needs to start the flow engine.
pub struct FlowsConfig {
    pub data_dir: PathBuf,
    /// The base URL of voxgate's own HTTP server, for the demo flow.
    pub http_base: String,
    /// Seed the demo tenant and number `100`.
    pub demo: bool,
    /// The agent the demo flow transfers to.
    pub demo_agent_uri: String,
    /// The demo flow's DID.
    pub demo_number: String,
    pub ai: Arc<dyn AiRunner>,
    /// Answers numbers no tenant owns; `None` answers them 404.
    pub unknown_numbers: Option<Arc<dyn CallRouter>>,
    /// The orchestrator's NOC policy and health hooks; every stored policy
    /// is applied through them before the API serves. `None`: the policy
    /// and health endpoints answer 503.
    pub noc: Option<NocHooks>,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowsStartError {
    #[error("flow store: {0}")]
    Store(#[from] StoreError),
    #[error("demo seed: {0}")]
    Demo(#[from] crate::demo::DemoError),
    #[error(transparent)]
    Http(#[from] HttpClientError),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}

/// The running flow engine.
pub struct FlowsApp {
    pub store: Arc<dyn Store>,
    pub live: Arc<LiveTable>,
    pub router: Arc<dyn CallRouter>,
    /// The `/v1` API and the demo endpoint, to nest into the HTTP server.
    pub api: axum::Router,
    /// The admin key created on first start, to print once.
    pub first_admin_key: Option<String>,
}

fn now_ms() -> i64 {
    let since = voxgate_gateway::clock::wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn ensure_dir(path: &Path) -> Result<(), FlowsStartError> {
    std::fs::create_dir_all(path).map_err(|source| FlowsStartError::Dir {
        path: path.display().to_string(),
        source,
    })
}

impl FlowsApp {
    pub async fn start(config: FlowsConfig) -> Result<Self, FlowsStartError> {
        ensure_dir(&config.data_dir)?;
        let prompts_dir = config.data_dir.join("prompts");
        let cache_dir = config.data_dir.join("cache").join("audio");
        ensure_dir(&prompts_dir)?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_dir(&config.data_dir).await?);
        let first_admin_key = crate::store::bootstrap(store.as_ref(), now_ms()).await?;
        if config.demo {
            let seeded = crate::demo::seed(
                store.as_ref(),
                &config.http_base,
                &config.demo_agent_uri,
                &config.demo_number,
                now_ms(),
            )
            .await?;
            tracing::info!(?seeded, number = %config.demo_number, "demo tenant ready");
        }
        if let Some(noc) = &config.noc {
            let applied = api::load_policies(store.as_ref(), noc.policy.as_ref()).await?;
            tracing::info!(tenants = applied, "stored NOC policies in force");
        }
        let live = Arc::new(LiveTable::load(store.as_ref()).await?);
        let env = FlowEnv {
            http: FlowHttpClient::new()?,
            prompts_dir,
            cache_dir,
            ai: config.ai,
        };
        let router: Arc<dyn CallRouter> = Arc::new(FlowRouter::new(
            live.clone(),
            store.clone(),
            env,
            config.unknown_numbers,
        ));
        let mut state = ApiState::new(store.clone(), live.clone());
        if let Some(noc) = config.noc {
            state = state.with_noc(noc);
        }
        let mut api = api::router(state);
        if config.demo {
            api = api.merge(crate::demo::balance_router());
        }
        Ok(Self {
            store,
            live,
            router,
            api,
            first_admin_key,
        })
    }
}
