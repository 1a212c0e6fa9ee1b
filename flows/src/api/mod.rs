//! The REST API under `/v1`: tenants, keys, flows (drafts, validation,
//! publish, versions, diff, rollback), numbers, calls, NOC policies and AI
//! health, the flow schema and the OpenAPI document.
//!
//! Every request carries `Authorization: Bearer <key>`. Checks run in a
//! fixed order: a missing or bad key is 401; a tenant key naming another
//! tenant is 404, whatever the id, so tenants cannot probe each other; a
//! role that may not do the operation is 403. Errors are RFC 7807
//! problem documents.
//!
//! Writes that change routing (publish, rollback, numbers, settings,
//! deletes) commit to the store and then update the [`LiveTable`] under
//! one lock, so the table always ends in the order the store committed,
//! and the API answers only once the change is both durable and live.

mod auth;
mod calls;
pub mod diff;
mod extract;
mod flows;
mod openapi;
mod policy;
mod problem;
mod tenants;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::{get, post, put};
use axum::Router;

pub use auth::Principal;
pub use policy::{
    json_changes, load_policies, AiHealth, BreakerHealth, BreakerState, HealthSource, NocHooks,
    PathChange, PolicyChange, PolicyHook, PolicySource, PolicyView,
};
pub use problem::{ApiError, Problem};

use crate::live::LiveTable;
use crate::store::{Store, UnixMs};

/// Milliseconds since the Unix epoch of a wall-clock time.
pub fn unix_ms(t: SystemTime) -> UnixMs {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn system_clock() -> UnixMs {
    unix_ms(voxgate_gateway::clock::wall_now())
}

struct Inner {
    store: Arc<dyn Store>,
    live: Arc<LiveTable>,
    clock: fn() -> UnixMs,
    /// Orders store commits and live-table updates of routing changes.
    routing: tokio::sync::Mutex<()>,
    /// The orchestrator's policy and health hooks; `None`: 503.
    noc: Option<NocHooks>,
    /// Orders policy commits and their application to the live book.
    policy_writes: tokio::sync::Mutex<()>,
}

/// What the API handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

impl ApiState {
    /// The API over a store and the live table the router reads (loaded
    /// from the same store), with the system wall clock.
    pub fn new(store: Arc<dyn Store>, live: Arc<LiveTable>) -> Self {
        Self::with_clock(store, live, system_clock)
    }

    /// As [`ApiState::new`] with another clock, for tests.
    pub fn with_clock(store: Arc<dyn Store>, live: Arc<LiveTable>, clock: fn() -> UnixMs) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                live,
                clock,
                routing: tokio::sync::Mutex::new(()),
                noc: None,
                policy_writes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The same API with the orchestrator's NOC hooks, which the policy and
    /// health endpoints need. Call it before the state is cloned: clones
    /// made earlier keep no hooks.
    pub fn with_noc(self, noc: NocHooks) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                store: inner.store.clone(),
                live: inner.live.clone(),
                clock: inner.clock,
                routing: tokio::sync::Mutex::new(()),
                noc: Some(noc),
                policy_writes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub fn live(&self) -> &LiveTable {
        &self.inner.live
    }

    fn now(&self) -> UnixMs {
        (self.inner.clock)()
    }
}

/// The `/v1` routes, with their state. Paths are absolute (`/v1/...`):
/// `merge` this into the HTTP server's router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/schema/flow.json", get(flows::schema))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route("/v1/tenants/{tenant}", get(tenants::get_one))
        .route(
            "/v1/tenants/{tenant}/settings",
            get(tenants::get_settings).put(tenants::put_settings),
        )
        .route("/v1/tenants/{tenant}/audit", get(tenants::audit))
        .route(
            "/v1/tenants/{tenant}/policy",
            get(policy::get_policy).put(policy::put_policy),
        )
        .route(
            "/v1/tenants/{tenant}/policy/audit",
            get(policy::policy_audit),
        )
        .route("/v1/tenants/{tenant}/health", get(policy::health))
        .route(
            "/v1/keys",
            post(tenants::create_key).get(tenants::list_keys),
        )
        .route("/v1/keys/{key}", axum::routing::delete(tenants::revoke_key))
        .route(
            "/v1/tenants/{tenant}/flows",
            get(flows::list).post(flows::create),
        )
        .route(
            "/v1/tenants/{tenant}/flows/{flow}",
            get(flows::get_draft)
                .put(flows::update_draft)
                .delete(flows::delete),
        )
        .route(
            "/v1/tenants/{tenant}/flows/{flow}/validate",
            post(flows::validate),
        )
        .route(
            "/v1/tenants/{tenant}/flows/{flow}/publish",
            post(flows::publish),
        )
        .route(
            "/v1/tenants/{tenant}/flows/{flow}/rollback",
            post(flows::rollback),
        )
        .route(
            "/v1/tenants/{tenant}/flows/{flow}/versions",
            get(flows::versions),
        )
        .route(
            "/v1/tenants/{tenant}/flows/{flow}/versions/{version}",
            get(flows::version),
        )
        .route("/v1/tenants/{tenant}/flows/{flow}/diff", get(flows::diff))
        .route("/v1/tenants/{tenant}/numbers", get(calls::list_numbers))
        .route(
            "/v1/tenants/{tenant}/numbers/{did}",
            put(calls::put_number).delete(calls::delete_number),
        )
        .route("/v1/tenants/{tenant}/calls", get(calls::list_calls))
        .route("/v1/tenants/{tenant}/calls/{call}", get(calls::get_call))
        .with_state(state)
}
