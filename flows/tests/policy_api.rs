//! The NOC policy and health endpoints through the real router, over a
//! real SQLite file, with the orchestrator's real hook (policy book,
//! breakers, admission) behind them.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;
use voxgate_flows::api::{self, ApiState};
use voxgate_flows::live::LiveTable;
use voxgate_flows::store::{self, SqliteStore, Store};
use voxgate_orchestrator::budget::Provider;
use voxgate_orchestrator::noc::AiRuntimeState;

mod common;
use common::TempDir;

struct Harness {
    app: Router,
    runtime: AiRuntimeState,
    store: Arc<SqliteStore>,
    admin: String,
    dir: TempDir,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn etag(&self) -> String {
        self.headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .expect("etag header")
            .to_string()
    }
}

impl Harness {
    async fn new() -> Self {
        let dir = TempDir::new("voxgate-policy-api");
        let store = Arc::new(SqliteStore::open_in_dir(&dir.0).await.expect("open store"));
        let admin = store::bootstrap(store.as_ref(), 1)
            .await
            .expect("bootstrap")
            .expect("first key");
        Self::over(dir, store, admin).await
    }

    /// The API as `voxgate serve` assembles it after a (re)start: stored
    /// policies are put in force before it serves.
    async fn over(dir: TempDir, store: Arc<SqliteStore>, admin: String) -> Self {
        let runtime = AiRuntimeState::default();
        let hooks = runtime.noc_hooks();
        api::load_policies(store.as_ref(), hooks.policy.as_ref())
            .await
            .expect("load policies");
        let live = Arc::new(LiveTable::load(store.as_ref()).await.expect("load live"));
        let state = ApiState::new(store.clone(), live).with_noc(hooks);
        Self {
            app: api::router(state),
            runtime,
            store,
            admin,
            dir,
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        key: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {key}"));
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str, key: &str) -> Reply {
        self.send(Method::GET, uri, key, None, &[]).await
    }

    async fn put_policy(
        &self,
        tenant: &str,
        key: &str,
        doc: Value,
        if_match: Option<&str>,
    ) -> Reply {
        let extra: Vec<(&str, &str)> = if_match.map(|e| ("if-match", e)).into_iter().collect();
        self.send(
            Method::PUT,
            &format!("/v1/tenants/{tenant}/policy"),
            key,
            Some(doc),
            &extra,
        )
        .await
    }

    async fn tenant(&self, id: &str) {
        let r = self
            .send(
                Method::POST,
                "/v1/tenants",
                &self.admin,
                Some(json!({"id": id, "name": id.to_uppercase()})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }

    async fn key(&self, role: &str, tenant: Option<&str>) -> String {
        let r = self
            .send(
                Method::POST,
                "/v1/keys",
                &self.admin,
                Some(json!({"role": role, "tenant": tenant, "label": format!("{role}-key")})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["token"].as_str().expect("token").to_string()
    }
}

fn tight_limits() -> Value {
    json!({"limits": {"sessions_per_second": 5, "burst": 5, "max_concurrent": 3}})
}

#[tokio::test]
async fn a_tenant_without_a_policy_reads_the_defaults() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let viewer = h.key("viewer", Some("acme")).await;
    let r = h.get("/v1/tenants/acme/policy", &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.etag(), "\"default\"");
    assert_eq!(r.body["source"], "default");
    assert_eq!(r.body["version"], 0);
    assert_eq!(
        r.body["policy"],
        serde_json::to_value(h.runtime.default_policy()).expect("json")
    );
    assert_eq!(r.body["policy"]["limits"]["max_concurrent"], 1000);
    assert_eq!(r.body["policy"]["budgets"]["fallback"], "dtmf");
    // A tenant that does not exist is 404 for operators too.
    let r = h.get("/v1/tenants/ghost/policy", &h.admin).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_valid_put_is_stored_audited_and_in_force_at_once() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let noc = h.key("noc", None).await;
    let r = h.put_policy("acme", &noc, tight_limits(), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["source"], "stored");
    assert_eq!(r.body["version"], 1);
    let actor = r.body["updated_by"]
        .as_str()
        .expect("updated_by")
        .to_string();
    assert!(actor.starts_with("noc-key ["), "{actor}");
    // Stored normalized: absent fields have their defaults.
    assert_eq!(r.body["policy"]["limits"]["max_concurrent"], 3);
    assert_eq!(r.body["policy"]["budgets"]["turn"]["hard_ms"], 5000);
    let etag = r.etag();
    assert_eq!(
        etag,
        format!("\"{}\"", r.body["etag"].as_str().expect("etag"))
    );

    // The next turn reads it: the live book has it, no restart.
    assert_eq!(h.runtime.policies.get("acme").limits.max_concurrent, 3);
    assert_eq!(h.runtime.policies.get("other").limits.max_concurrent, 1000);

    // GET returns it with the same ETag.
    let got = h.get("/v1/tenants/acme/policy", &noc).await;
    assert_eq!(got.etag(), etag);
    assert_eq!(got.body["policy"], r.body["policy"]);

    // A second change; the audit trail has both, newest first.
    let second = json!({"limits": {"sessions_per_second": 5, "burst": 5, "max_concurrent": 4},
        "providers": {"nlu": ["openai", "local"]}});
    let r2 = h.put_policy("acme", &noc, second, Some(&etag)).await;
    assert_eq!(r2.status, StatusCode::OK, "{:?}", r2.body);
    assert_eq!(r2.body["version"], 2);

    let audit = h.get("/v1/tenants/acme/policy/audit", &noc).await;
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    let items = audit.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{items:?}");
    let newest = &items[0];
    assert_eq!(newest["actor"], actor.as_str());
    assert_eq!(newest["object"], "policy v2");
    assert!(newest["at"].as_i64().expect("at") > 0);
    assert_eq!(
        newest["changes"],
        json!([
            {"path": "/limits/max_concurrent", "from": 3, "to": 4},
            {"path": "/providers/nlu", "from": [], "to": ["openai", "local"]},
        ])
    );
    assert_eq!(newest["from"]["limits"]["max_concurrent"], 3);
    assert_eq!(newest["to"]["limits"]["max_concurrent"], 4);
    // The first change is from the defaults.
    let first = &items[1];
    assert_eq!(first["object"], "policy v1");
    assert_eq!(first["from"]["limits"]["max_concurrent"], 1000);
    let paths: Vec<&str> = first["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "/limits/burst",
            "/limits/max_concurrent",
            "/limits/sessions_per_second"
        ]
    );
    // The general audit log has the entries too.
    let all = h.get("/v1/tenants/acme/audit", &h.admin).await;
    let actions: Vec<&str> = all.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["policy.put", "policy.put", "tenant.create"]);
}

#[tokio::test]
async fn an_invalid_policy_is_422_with_every_problem_and_its_path() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let bad = json!({
        "escalation": {"confidence_threshold": 2.0, "max_turns": 0},
        "budgets": {"tts_first_byte": {"soft_ms": 3000, "hard_ms": 2500}},
        "limits": {"max_concurrent": 0}
    });
    let r = h.put_policy("acme", &h.admin, bad, None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(r.body["type"], "urn:voxgate:problem:invalid-policy");
    let errors: Vec<(&str, &str)> = r.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap_or(""),
                e["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("/escalation/confidence_threshold", "out_of_range"),
            ("/escalation/max_turns", "out_of_range"),
            ("/budgets/tts_first_byte/soft_ms", "out_of_range"),
            ("/limits", "out_of_range"),
        ]
    );
    // A wrong type names its path.
    let r = h
        .put_policy("acme", &h.admin, json!({"limits": {"burst": "lots"}}), None)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["path"], "/limits/burst");
    // Not JSON at all is a bad request.
    let req = Request::builder()
        .method(Method::PUT)
        .uri("/v1/tenants/acme/policy")
        .header(header::AUTHORIZATION, format!("Bearer {}", h.admin))
        .body(Body::from("{nope"))
        .expect("request");
    let resp = h.app.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Nothing was stored or applied, and nothing audited.
    assert_eq!(h.store.get_policy("acme").await.expect("get"), None);
    assert_eq!(h.runtime.policies.get("acme").limits.max_concurrent, 1000);
    let audit = h.get("/v1/tenants/acme/policy/audit", &h.admin).await;
    assert_eq!(audit.body["items"], json!([]));
}

#[tokio::test]
async fn unknown_fields_are_errors_wherever_they_are() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let doc = json!({"limits": {"max_concurent": 3}, "breaker": {"cooldown": 1}, "mode": "x"});
    let r = h.put_policy("acme", &h.admin, doc, None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let errors: Vec<(&str, &str)> = r.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap_or(""),
                e["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("/mode", "unknown_field"),
            ("/breaker/cooldown", "unknown_field"),
            ("/limits/max_concurent", "unknown_field"),
        ]
    );
    assert!(r.body["errors"][2]["message"]
        .as_str()
        .expect("message")
        .contains("max_concurrent"));
}

#[tokio::test]
async fn noc_and_admin_write_tenant_roles_only_read_their_own() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    h.tenant("globex").await;
    let editor = h.key("editor", Some("acme")).await;
    let qa = h.key("qa", Some("acme")).await;
    let viewer = h.key("viewer", Some("acme")).await;
    let globex_editor = h.key("editor", Some("globex")).await;
    let noc = h.key("noc", None).await;

    for key in [&editor, &qa, &viewer] {
        let r = h.put_policy("acme", key, tight_limits(), None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        for path in ["policy", "policy/audit", "health"] {
            let r = h.get(&format!("/v1/tenants/acme/{path}"), key).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
        }
    }
    assert_eq!(h.runtime.policies.get("acme").limits.max_concurrent, 1000);
    assert_eq!(
        h.put_policy("acme", &noc, tight_limits(), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        h.put_policy("globex", &h.admin, tight_limits(), None)
            .await
            .status,
        StatusCode::OK
    );
    // Another tenant's key: 404 whatever it asks, before any role check.
    for path in ["policy", "policy/audit", "health"] {
        let r = h
            .get(&format!("/v1/tenants/acme/{path}"), &globex_editor)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = h
        .put_policy("acme", &globex_editor, tight_limits(), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // An operator key naming a tenant that does not exist: 404 too.
    assert_eq!(
        h.put_policy("ghost", &noc, tight_limits(), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_stale_etag_is_412_and_changes_nothing() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let noc = h.key("noc", None).await;
    // "default" means "only if nobody set a policy yet".
    let first = h
        .put_policy("acme", &noc, tight_limits(), Some("\"default\""))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let again = h
        .put_policy("acme", &noc, json!({}), Some("\"default\""))
        .await;
    assert_eq!(
        again.status,
        StatusCode::PRECONDITION_FAILED,
        "{:?}",
        again.body
    );
    assert_eq!(again.body["type"], "urn:voxgate:problem:etag-mismatch");
    assert_eq!(again.body["title"], "Someone else changed this policy");
    // The 412 carries the current ETag.
    assert_eq!(again.etag(), first.etag());
    // An ETag read before someone else's change is stale too.
    let stale = first.etag();
    let second = h
        .put_policy(
            "acme",
            &noc,
            json!({"limits": {"max_concurrent": 9}}),
            Some(&stale),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK);
    let late = h.put_policy("acme", &noc, json!({}), Some(&stale)).await;
    assert_eq!(late.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(late.etag(), second.etag());
    assert_eq!(h.runtime.policies.get("acme").limits.max_concurrent, 9);
    let audit = h.get("/v1/tenants/acme/policy/audit", &noc).await;
    assert_eq!(audit.body["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn stored_policies_are_in_force_after_a_restart() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let r = h.put_policy("acme", &h.admin, tight_limits(), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let Harness {
        store, admin, dir, ..
    } = h;
    store.close().await;
    drop(store);
    let store = Arc::new(SqliteStore::open_in_dir(&dir.0).await.expect("reopen"));
    let h = Harness::over(dir, store, admin).await;
    assert_eq!(h.runtime.policies.get("acme").limits.max_concurrent, 3);
    let got = h.get("/v1/tenants/acme/policy", &h.admin).await;
    assert_eq!(got.body["version"], 1);
}

#[tokio::test]
async fn health_shows_an_open_breaker_after_failures() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let noc = h.key("noc", None).await;
    let viewer = h.key("viewer", Some("acme")).await;
    let policy = json!({
        "breaker": {"failures": 3, "window_ms": 60000, "cooldown_ms": 120000, "probes": 1},
        "limits": {"max_concurrent": 8}
    });
    assert_eq!(
        h.put_policy("acme", &noc, policy, None).await.status,
        StatusCode::OK
    );
    let before = h.get("/v1/tenants/acme/health", &viewer).await;
    assert_eq!(before.status, StatusCode::OK, "{:?}", before.body);
    assert!(before.body["breakers"]
        .as_array()
        .expect("breakers")
        .iter()
        .all(|b| b["state"] == "closed"));

    // What the runner does on three NLU stalls, and on one admitted call.
    let now = voxgate_gateway::clock::now();
    for _ in 0..3 {
        h.runtime
            .breakers
            .handle_failure(now, "acme", Provider::Nlu, "nlu");
        h.runtime.record_fallback("acme", "nlu_stall");
    }
    let limits = h.runtime.policies.get("acme").limits.clone();
    let _session = h
        .runtime
        .admission
        .try_admit("acme", &limits)
        .expect("admit");

    let r = h.get("/v1/tenants/acme/health", &viewer).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["tenant"], "acme");
    assert_eq!(r.body["active_sessions"], 1);
    assert_eq!(r.body["max_concurrent"], 8);
    assert_eq!(r.body["fallbacks"], json!({"nlu_stall": 3}));
    let breakers = r.body["breakers"].as_array().expect("breakers");
    let nlu = breakers
        .iter()
        .find(|b| b["provider"] == "nlu")
        .expect("nlu breaker");
    assert_eq!(nlu["state"], "open", "{nlu}");
    let retry = nlu["retry_in_ms"].as_u64().expect("retry_in_ms");
    // The tenant's own cool-down (120 s), not the default (30 s).
    assert!(retry > 60_000 && retry <= 120_000, "{retry}");
    let stt = breakers
        .iter()
        .find(|b| b["provider"] == "stt")
        .expect("stt breaker");
    assert_eq!(stt["state"], "closed");
    assert_eq!(stt["failures"], 0);
}

#[tokio::test]
async fn without_the_ai_runtime_the_endpoints_answer_503() {
    let dir = TempDir::new("voxgate-policy-api");
    let store = Arc::new(SqliteStore::open_in_dir(&dir.0).await.expect("open store"));
    let admin = store::bootstrap(store.as_ref(), 1)
        .await
        .expect("bootstrap")
        .expect("key");
    let live = Arc::new(LiveTable::load(store.as_ref()).await.expect("live"));
    let h = Harness {
        app: api::router(ApiState::new(store.clone(), live)),
        runtime: AiRuntimeState::default(),
        store,
        admin,
        dir,
    };
    h.tenant("acme").await;
    let r = h.get("/v1/tenants/acme/policy", &h.admin).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["type"], "urn:voxgate:problem:ai-runtime-unavailable");
    assert_eq!(
        h.get("/v1/tenants/acme/health", &h.admin).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn the_openapi_document_has_the_noc_endpoints() {
    let h = Harness::new().await;
    let doc = h.get("/v1/openapi.json", &h.admin).await;
    let paths = doc.body["paths"].as_object().expect("paths");
    for p in [
        "/v1/tenants/{tenant}/policy",
        "/v1/tenants/{tenant}/policy/audit",
        "/v1/tenants/{tenant}/health",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(paths["/v1/tenants/{tenant}/policy"]["put"].is_object());
    let schemas = doc.body["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for s in ["PolicyView", "AiHealth", "BreakerHealth", "PolicyChange"] {
        assert!(schemas.contains_key(s), "{s} missing");
    }
}
