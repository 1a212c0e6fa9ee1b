//! The demo tenant that `make run` answers with: number `100`, a menu
//! with the AI assistant (1), an agent transfer (2) and an account balance
//! read through an `http` node from voxgate's own `/demo/balance` (3).
//!
//! Seeding is idempotent: on every start the demo flow is rebuilt for the
//! HTTP address actually bound, and published again only if it changed.

use axum::extract::Query;
use axum::routing::get;
use serde_json::{json, Value};

use crate::interpreter::{FallbackAction, FallbackPolicy};
use crate::model::Flow;
use crate::store::{PublishRequest, Store, StoreError, Tenant, TenantSettings, UnixMs};
use crate::validate::{validate, HttpAllowList};

pub const DEMO_TENANT: &str = "demo";
pub const DEMO_FLOW: &str = "demo";
/// The demo number unless configured otherwise.
pub const DEMO_NUMBER: &str = "100";
const ACTOR: &str = "voxgate-demo-seed";

/// The demo flow document for an HTTP server at `http_base`
/// (`http://127.0.0.1:8080`) and an agent at `agent_uri`.
pub fn demo_flow(http_base: &str, agent_uri: &str) -> Value {
    json!({
        "id": DEMO_FLOW,
        "name": "voxgate demo",
        "entry": "welcome",
        "nodes": {
            "welcome": {"type": "say", "text": "Welcome to the voxgate demo.", "position": {"x": 0, "y": 0},
                        "edges": {"next": "menu"}},
            "menu": {"type": "menu", "position": {"x": 0, "y": 120},
                     "prompt": {"say": "Press 1 for the assistant, 2 for an agent, or 3 for your balance."},
                     "options": ["1", "2", "3"], "timeout_ms": 6000, "max_retries": 2,
                     "no_input_prompt": {"say": "Sorry, I did not hear a key."},
                     "no_match_prompt": {"say": "Sorry, that is not one of the choices."},
                     "edges": {"1": "assistant", "2": "agent", "3": "balance", "no_input": "goodbye", "no_match": "goodbye"}},
            "assistant": {"type": "ai", "label": "AI assistant (falls back to the menu while no AI engine is configured)",
                          "position": {"x": -300, "y": 260},
                          "greeting": "Hello, how can I help you?",
                          "intents": [
                              {"name": "balance", "examples": ["what is my balance", "how much money do I have"]},
                              {"name": "agent", "examples": ["I want to talk to a person", "agent please"]}
                          ],
                          "escalate_intents": ["agent"],
                          "edges": {"balance": "balance", "escalate": "agent", "fallback_dtmf": "ai_unavailable",
                                    "fallback_agent": "agent", "error": "ai_unavailable"}},
            "ai_unavailable": {"type": "say", "position": {"x": -300, "y": 400},
                               "text": "The assistant is not available right now.", "edges": {"next": "menu"}},
            "agent": {"type": "transfer", "mode": "bridged", "target": agent_uri, "timeout_ms": 20000,
                      "headers": {"X-Voxgate-Reason": "demo-menu"}, "position": {"x": 0, "y": 260},
                      "edges": {"failed": "no_agent", "no_answer": "no_agent"}},
            "no_agent": {"type": "say", "text": "No agent is available right now.", "position": {"x": 0, "y": 400},
                         "edges": {"next": "menu"}},
            "balance": {"type": "http", "method": "GET", "position": {"x": 300, "y": 260},
                        "url": format!("{http_base}/demo/balance?caller=${{caller_id}}"), "timeout_ms": 2000,
                        "map": {"balance": "/balance"}, "edges": {"ok": "say_balance", "error": "no_balance", "timeout": "no_balance"}},
            "say_balance": {"type": "say", "text": "Your balance is ${balance} dollars.", "position": {"x": 300, "y": 400},
                            "edges": {"next": "goodbye"}},
            "no_balance": {"type": "say", "text": "Your balance cannot be read right now.", "position": {"x": 500, "y": 400},
                           "edges": {"next": "goodbye"}},
            "goodbye": {"type": "say", "text": "Thank you for calling. Goodbye.", "position": {"x": 0, "y": 540},
                        "edges": {"next": "end"}},
            "end": {"type": "hangup", "position": {"x": 0, "y": 660}}
        }
    })
}

/// The demo tenant's settings: it may call voxgate itself on loopback.
pub fn demo_settings(http_host: &str) -> TenantSettings {
    TenantSettings {
        fallback: FallbackPolicy {
            apology: "Sorry, something went wrong. Goodbye.".into(),
            action: FallbackAction::Hangup,
        },
        http: HttpAllowList {
            hosts: vec![http_host.to_string()],
            allow_private: true,
        },
    }
}

/// What seeding did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeded {
    Created,
    Republished,
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the demo flow does not validate: {0}")]
    Invalid(String),
}

/// Creates or refreshes the demo tenant, its flow and its number.
pub async fn seed(
    store: &dyn Store,
    http_base: &str,
    agent_uri: &str,
    number: &str,
    at: UnixMs,
) -> Result<Seeded, DemoError> {
    let host = url::Url::parse(http_base)
        .ok()
        .and_then(|u| u.host_str().map(String::from))
        .unwrap_or_else(|| "127.0.0.1".into());
    let document = demo_flow(http_base, agent_uri);
    let settings = demo_settings(&host);
    let flow: Flow =
        serde_json::from_value(document.clone()).map_err(|e| DemoError::Invalid(e.to_string()))?;
    let report = validate(&flow, &settings.validation_context());
    if !report.is_valid() {
        return Err(DemoError::Invalid(format!("{:?}", report.errors)));
    }
    let created = match store.get_tenant(DEMO_TENANT).await? {
        None => {
            let tenant = Tenant {
                id: DEMO_TENANT.into(),
                name: "Demo".into(),
                settings: settings.clone(),
                created_at: at,
            };
            store.create_tenant(&tenant, ACTOR).await?;
            true
        }
        Some(t) => {
            if t.settings.http != settings.http {
                let mut updated = t.settings.clone();
                updated.http = settings.http.clone();
                store
                    .update_tenant_settings(DEMO_TENANT, &updated, ACTOR, at)
                    .await?;
            }
            false
        }
    };
    let etag = match store.get_draft(DEMO_TENANT, DEMO_FLOW).await? {
        None => {
            store
                .create_draft(DEMO_TENANT, DEMO_FLOW, &document, ACTOR, at)
                .await?
                .etag
        }
        Some(d) if d.document == document => d.etag,
        Some(d) => {
            store
                .update_draft(DEMO_TENANT, DEMO_FLOW, &document, &d.etag, ACTOR, at)
                .await?
                .etag
        }
    };
    let live = store
        .get_flow(DEMO_TENANT, DEMO_FLOW)
        .await?
        .and_then(|f| f.live);
    let live_doc = match &live {
        Some(p) => store
            .get_version(DEMO_TENANT, DEMO_FLOW, p.version)
            .await?
            .map(|v| v.document),
        None => None,
    };
    let outcome = if live_doc.as_ref() == Some(&document) {
        Seeded::Unchanged
    } else {
        let comment = if created {
            "demo flow"
        } else {
            "demo flow for the current HTTP address"
        };
        store
            .publish(&PublishRequest {
                tenant: DEMO_TENANT,
                flow_id: DEMO_FLOW,
                document: &document,
                if_match: Some(&etag),
                author: ACTOR,
                comment,
                at,
            })
            .await?;
        if created {
            Seeded::Created
        } else {
            Seeded::Republished
        }
    };
    let routed = store
        .list_numbers(DEMO_TENANT)
        .await?
        .iter()
        .any(|n| n.did == number);
    if !routed {
        store
            .put_number(DEMO_TENANT, number, DEMO_FLOW, ACTOR, at)
            .await?;
    }
    Ok(outcome)
}

#[derive(serde::Deserialize)]
struct BalanceQuery {
    #[serde(default)]
    caller: String,
}

/// `GET /demo/balance?caller=N`: a stand-in for a billing API, so the
/// demo's `http` node has something real to call. The balance is derived
/// from the caller id, so each caller hears the same figure every time.
pub fn balance_router() -> axum::Router {
    axum::Router::new().route(
        "/demo/balance",
        get(|Query(q): Query<BalanceQuery>| async move {
            let cents = q
                .caller
                .bytes()
                .fold(4_217u64, |acc, b| (acc * 31 + u64::from(b)) % 100_000);
            axum::Json(
                json!({"caller": q.caller, "balance": cents as f64 / 100.0, "currency": "USD"}),
            )
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[tokio::test]
    async fn seeding_is_idempotent_and_follows_the_http_address() {
        let store = SqliteStore::open_in_memory().await.expect("store");
        assert_eq!(
            seed(
                &store,
                "http://127.0.0.1:8080",
                "sip:agent@127.0.0.1:5070",
                DEMO_NUMBER,
                1
            )
            .await
            .expect("seed"),
            Seeded::Created
        );
        assert_eq!(
            seed(
                &store,
                "http://127.0.0.1:8080",
                "sip:agent@127.0.0.1:5070",
                DEMO_NUMBER,
                2
            )
            .await
            .expect("seed"),
            Seeded::Unchanged
        );
        assert_eq!(
            seed(
                &store,
                "http://127.0.0.1:9090",
                "sip:agent@127.0.0.1:5070",
                DEMO_NUMBER,
                3
            )
            .await
            .expect("seed"),
            Seeded::Republished
        );
        let live = store
            .get_flow(DEMO_TENANT, DEMO_FLOW)
            .await
            .expect("get")
            .and_then(|f| f.live)
            .expect("live");
        assert_eq!(live.version, 2);
        let numbers = store.list_numbers(DEMO_TENANT).await.expect("numbers");
        assert_eq!(numbers.len(), 1);
    }
}
