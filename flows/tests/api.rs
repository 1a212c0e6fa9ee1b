//! The flows API through the real router over a real SQLite file.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;
use voxgate_flows::api::{self, ApiState};
use voxgate_flows::live::{LiveTable, Route};
use voxgate_flows::store::{self, CallRecord, SqliteStore, Store};

mod common;
use common::TempDir;

struct Harness {
    app: Router,
    state: ApiState,
    store: Arc<SqliteStore>,
    admin: String,
    dir: TempDir,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Harness {
    async fn new() -> Self {
        let dir = TempDir::new("voxgate-flows-api");
        let store = Arc::new(SqliteStore::open_in_dir(&dir.0).await.expect("open store"));
        let admin = store::bootstrap(store.as_ref(), 1)
            .await
            .expect("bootstrap")
            .expect("first key");
        assert_eq!(
            store::bootstrap(store.as_ref(), 2)
                .await
                .expect("bootstrap"),
            None,
            "only once"
        );
        let live = Arc::new(LiveTable::load(store.as_ref()).await.expect("load live"));
        let state = ApiState::new(store.clone(), live);
        Self {
            app: api::router(state.clone()),
            state,
            store,
            admin,
            dir,
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
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
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str, key: &str) -> Reply {
        self.send(Method::GET, uri, Some(key), None, &[]).await
    }

    async fn post(&self, uri: &str, key: &str, body: Value) -> Reply {
        self.send(Method::POST, uri, Some(key), Some(body), &[])
            .await
    }

    async fn tenant(&self, id: &str) {
        let r = self
            .post(
                "/v1/tenants",
                &self.admin,
                json!({"id": id, "name": id.to_uppercase()}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }

    async fn key(&self, role: &str, tenant: Option<&str>) -> String {
        let r = self
            .post(
                "/v1/keys",
                &self.admin,
                json!({"role": role, "tenant": tenant, "label": role}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["token"].as_str().expect("token").to_string()
    }
}

fn etag(r: &Reply) -> String {
    r.headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .expect("etag header")
        .to_string()
}

fn support_flow(text: &str) -> Value {
    json!({"id": "support", "name": "Support", "entry": "hello", "nodes": {
        "hello": {"type": "say", "text": text, "edges": {"next": "bye"}},
        "bye": {"type": "hangup"}}})
}

fn live_version(h: &Harness, did: &str) -> Option<u32> {
    match h.state.live().lookup(did) {
        Some(Route::Live(r)) => Some(r.version),
        _ => None,
    }
}

#[tokio::test]
async fn missing_or_wrong_keys_are_401() {
    let h = Harness::new().await;
    let bad_secret = format!("{}{}", &h.admin[..h.admin.len() - 4], "0000");
    for key in [
        None,
        Some("nonsense"),
        Some("vgk_000000000000_0000000000000000000000000000000000000000000000000000000000000000"),
        Some(bad_secret.as_str()),
    ] {
        let r = h.send(Method::GET, "/v1/tenants", key, None, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(r.body["status"], 401);
        assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    }
    // Basic is not Bearer.
    let r = h
        .send(
            Method::GET,
            "/v1/tenants",
            None,
            None,
            &[("authorization", &format!("Basic {}", h.admin))],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A revoked key stops working at once.
    h.tenant("acme").await;
    let viewer = h.key("viewer", Some("acme")).await;
    assert_eq!(
        h.get("/v1/tenants/acme/flows", &viewer).await.status,
        StatusCode::OK
    );
    let id = viewer.split('_').nth(1).expect("id");
    let r = h
        .send(
            Method::DELETE,
            &format!("/v1/keys/{id}"),
            Some(&h.admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        h.get("/v1/tenants/acme/flows", &viewer).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Listing keys shows no secret.
    let r = h.get("/v1/keys", &h.admin).await;
    assert!(
        !r.body.to_string().contains(&h.admin[20..]),
        "secret leaked"
    );
    assert!(r
        .body
        .as_array()
        .expect("keys")
        .iter()
        .any(|k| k["id"] == id && !k["revoked_at"].is_null()));
}

#[tokio::test]
async fn each_role_may_do_its_own_operations_only() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let editor = h.key("editor", Some("acme")).await;
    let viewer = h.key("viewer", Some("acme")).await;
    let qa = h.key("qa", Some("acme")).await;
    let noc = h.key("noc", None).await;

    // Editor: flows, publish and numbers; not settings, tenants or keys.
    assert_eq!(
        h.post("/v1/tenants/acme/flows", &editor, support_flow("Hi"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        h.post(
            "/v1/tenants/acme/flows/support/publish",
            &editor,
            json!({"comment": "first"})
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let put_number = |key: String| {
        let h = &h;
        async move {
            h.send(
                Method::PUT,
                "/v1/tenants/acme/numbers/+3311",
                Some(&key),
                Some(json!({"flow_id": "support"})),
                &[],
            )
            .await
            .status
        }
    };
    assert_eq!(put_number(editor.clone()).await, StatusCode::OK);
    let settings = json!({"http": {"hosts": ["api.acme.test"]}});
    let put_settings = |key: String, body: Value| {
        let h = &h;
        async move {
            h.send(
                Method::PUT,
                "/v1/tenants/acme/settings",
                Some(&key),
                Some(body),
                &[],
            )
            .await
            .status
        }
    };
    assert_eq!(
        put_settings(editor.clone(), settings.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.post("/v1/tenants", &editor, json!({"id": "x", "name": "x"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.post(
            "/v1/keys",
            &editor,
            json!({"role": "viewer", "tenant": "acme"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.get("/v1/keys", &editor).await.status,
        StatusCode::FORBIDDEN
    );

    // Viewer and QA: read everything of the tenant, change nothing.
    for key in [&viewer, &qa] {
        for uri in [
            "/v1/tenants/acme",
            "/v1/tenants/acme/flows",
            "/v1/tenants/acme/flows/support",
            "/v1/tenants/acme/flows/support/versions",
            "/v1/tenants/acme/flows/support/versions/1",
            "/v1/tenants/acme/numbers",
            "/v1/tenants/acme/calls",
            "/v1/tenants/acme/settings",
            "/v1/schema/flow.json",
        ] {
            assert_eq!(h.get(uri, key).await.status, StatusCode::OK, "{uri}");
        }
        assert_eq!(
            h.post(
                "/v1/tenants/acme/flows/support/validate",
                key,
                support_flow("x")
            )
            .await
            .status,
            StatusCode::OK
        );
        assert_eq!(
            h.post("/v1/tenants/acme/flows", key, json!({"id": "other"}))
                .await
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            h.post("/v1/tenants/acme/flows/support/publish", key, json!({}))
                .await
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            h.post(
                "/v1/tenants/acme/flows/support/rollback",
                key,
                json!({"version": 1})
            )
            .await
            .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(put_number(key.clone()).await, StatusCode::FORBIDDEN);
        assert_eq!(
            put_settings(key.clone(), settings.clone()).await,
            StatusCode::FORBIDDEN
        );
        let r = h
            .send(
                Method::DELETE,
                "/v1/tenants/acme/flows/support",
                Some(key),
                None,
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }

    // NOC: every tenant's policies and health, no flow edits, no keys.
    assert_eq!(h.get("/v1/tenants", &noc).await.status, StatusCode::OK);
    assert_eq!(
        put_settings(noc.clone(), settings.clone()).await,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/v1/tenants/acme/calls", &noc).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.post("/v1/tenants/acme/flows", &noc, json!({"id": "other"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(put_number(noc.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(
        h.post("/v1/keys", &noc, json!({"role": "admin"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.get("/v1/tenants/nobody/settings", &noc).await.status,
        StatusCode::NOT_FOUND
    );

    // Admin: everything.
    assert_eq!(
        put_settings(h.admin.clone(), settings).await,
        StatusCode::OK
    );
    assert_eq!(put_number(h.admin.clone()).await, StatusCode::OK);

    // The settings change and the publish are in the audit log.
    let audit = h.get("/v1/tenants/acme/audit", &viewer).await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "tenant.settings",
        "flow.publish",
        "number.put",
        "tenant.create",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
}

#[tokio::test]
async fn another_tenants_objects_are_404_whatever_the_id() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    h.tenant("globex").await;
    let acme_editor = h.key("editor", Some("acme")).await;
    assert_eq!(
        h.post("/v1/tenants/acme/flows", &acme_editor, support_flow("Hi"))
            .await
            .status,
        StatusCode::CREATED
    );
    let put = h
        .send(
            Method::PUT,
            "/v1/tenants/acme/numbers/+3311",
            Some(&acme_editor),
            Some(json!({"flow_id": "support"})),
            &[],
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let call = CallRecord {
        tenant: "acme".into(),
        id: "call-1".into(),
        did: "+3311".into(),
        caller: "+4477".into(),
        flow_id: "support".into(),
        version: 1,
        started_at: 10,
        ended_at: Some(20),
        disposition: Some("completed".into()),
        timeline: json!([]),
    };
    h.store.save_call(&call).await.expect("save call");

    let globex_editor = h.key("editor", Some("globex")).await;
    let globex_viewer = h.key("viewer", Some("globex")).await;
    for key in [&globex_editor, &globex_viewer] {
        for uri in [
            "/v1/tenants/acme",
            "/v1/tenants/acme/settings",
            "/v1/tenants/acme/flows",
            "/v1/tenants/acme/flows/support",
            "/v1/tenants/acme/flows/does-not-exist",
            "/v1/tenants/acme/flows/support/versions",
            "/v1/tenants/acme/numbers",
            "/v1/tenants/acme/calls",
            "/v1/tenants/acme/calls/call-1",
            "/v1/tenants/acme/audit",
            "/v1/tenants/nonexistent/flows",
        ] {
            let r = h.get(uri, key).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(r.body["type"], "urn:voxgate:problem:not-found");
        }
        // Writes too: 404, not 403, so a viewer cannot tell the tenant exists.
        assert_eq!(
            h.post("/v1/tenants/acme/flows", key, support_flow("x"))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            h.post("/v1/tenants/acme/flows/support/publish", key, json!({}))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        let r = h
            .send(
                Method::DELETE,
                "/v1/tenants/acme/numbers/+3311",
                Some(key),
                None,
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    // Globex cannot take acme's number either.
    assert_eq!(
        h.post(
            "/v1/tenants/globex/flows",
            &globex_editor,
            support_flow("G")
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let r = h
        .send(
            Method::PUT,
            "/v1/tenants/globex/numbers/+3311",
            Some(&globex_editor),
            Some(json!({"flow_id": "support"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Same flow id in two tenants: two flows.
    let r = h
        .get("/v1/tenants/globex/flows/support", &globex_viewer)
        .await;
    assert_eq!(r.body["document"]["nodes"]["hello"]["text"], "G");
    // A tenant key lists only its own tenant.
    let r = h.get("/v1/tenants", &globex_viewer).await;
    assert_eq!(r.body.as_array().map(|a| a.len()), Some(1));
    assert_eq!(r.body[0]["id"], "globex");
    // The call is acme's only.
    assert_eq!(
        h.get("/v1/tenants/globex/calls/call-1", &globex_viewer)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get("/v1/tenants/acme/calls/call-1", &acme_editor)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn drafts_need_the_etag_they_were_read_with() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let editor = h.key("editor", Some("acme")).await;
    let created = h
        .post("/v1/tenants/acme/flows", &editor, support_flow("v1"))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(
        h.post("/v1/tenants/acme/flows", &editor, support_flow("again"))
            .await
            .status,
        StatusCode::CONFLICT
    );
    let read = h.get("/v1/tenants/acme/flows/support", &editor).await;
    let first = etag(&read);
    assert_eq!(first, etag(&created));
    assert_eq!(read.body["document"]["nodes"]["hello"]["text"], "v1");

    let uri = "/v1/tenants/acme/flows/support";
    let r = h
        .send(
            Method::PUT,
            uri,
            Some(&editor),
            Some(support_flow("v2")),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED);
    let r = h
        .send(
            Method::PUT,
            uri,
            Some(&editor),
            Some(support_flow("v2")),
            &[("if-match", &first)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let second = etag(&r);
    assert_ne!(first, second);
    // A second editor still holding the first ETag is refused.
    let r = h
        .send(
            Method::PUT,
            uri,
            Some(&editor),
            Some(support_flow("v3")),
            &[("if-match", &first)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(r.body["title"], "Someone else changed this flow");
    assert_eq!(etag(&r), second, "the 412 tells the current ETag");
    assert_eq!(
        h.get(uri, &editor).await.body["document"]["nodes"]["hello"]["text"],
        "v2"
    );
    // Publishing with a stale ETag is refused too.
    let r = h
        .send(
            Method::POST,
            &format!("{uri}/publish"),
            Some(&editor),
            Some(json!({})),
            &[("if-match", &first)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    // The id in the document must be the flow's.
    let mut other = support_flow("x");
    other["id"] = json!("other");
    let r = h
        .send(
            Method::PUT,
            uri,
            Some(&editor),
            Some(other),
            &[("if-match", &second)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Bad JSON is a 400 problem.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/tenants/acme/flows")
        .header(header::AUTHORIZATION, format!("Bearer {editor}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .expect("request");
    let resp = h.app.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
}

#[tokio::test]
async fn an_invalid_flow_is_refused_with_its_node_errors() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let editor = h.key("editor", Some("acme")).await;
    let broken = json!({"id": "support", "name": "Support", "entry": "hello", "nodes": {
        "hello": {"type": "say", "text": "Hi", "edges": {"next": "nowhere"}}}});
    assert_eq!(
        h.post("/v1/tenants/acme/flows", &editor, broken)
            .await
            .status,
        StatusCode::CREATED
    );
    let r = h
        .post(
            "/v1/tenants/acme/flows/support/publish",
            &editor,
            json!({"comment": "oops"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
    let errors = r.body["errors"].as_array().expect("errors");
    assert!(!errors.is_empty());
    assert!(
        errors.iter().any(|e| e["node"] == "hello"
            && e["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/nodes/hello"))),
        "{errors:?}"
    );
    // Validate shows the same without publishing.
    let v = h
        .post(
            "/v1/tenants/acme/flows/support/validate",
            &editor,
            Value::Null,
        )
        .await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.body["valid"], false);
    assert_eq!(
        h.get("/v1/tenants/acme/flows/support/versions", &editor)
            .await
            .body["items"],
        json!([])
    );

    // An http node must call a host on the tenant's allow-list.
    let http_flow = json!({"id": "lookup", "name": "Lookup", "entry": "ask", "nodes": {
        "ask": {"type": "http", "method": "GET", "url": "https://api.acme.test/balance",
                "edges": {"ok": "bye", "error": "bye"}},
        "bye": {"type": "hangup"}}});
    assert_eq!(
        h.post("/v1/tenants/acme/flows", &editor, http_flow)
            .await
            .status,
        StatusCode::CREATED
    );
    let r = h
        .post("/v1/tenants/acme/flows/lookup/publish", &editor, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert!(r.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .any(|e| e["node"] == "ask"));
    let settings = json!({"http": {"hosts": ["api.acme.test"]}});
    let r = h
        .send(
            Method::PUT,
            "/v1/tenants/acme/settings",
            Some(&h.admin),
            Some(settings),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .post("/v1/tenants/acme/flows/lookup/publish", &editor, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn publish_and_rollback_move_the_live_table_at_once() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let editor = h.key("editor", Some("acme")).await;
    let created = h
        .post("/v1/tenants/acme/flows", &editor, support_flow("one"))
        .await;
    let r = h
        .send(
            Method::PUT,
            "/v1/tenants/acme/numbers/+33%201%2011",
            Some(&editor),
            Some(json!({"flow_id": "support"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["did"], "+33111");
    assert_eq!(
        h.state.live().lookup("+33111"),
        Some(Route::Unpublished {
            tenant: "acme".into(),
            flow_id: "support".into()
        })
    );

    let r = h
        .post(
            "/v1/tenants/acme/flows/support/publish",
            &editor,
            json!({"comment": "first"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["version"], 1);
    assert_eq!(live_version(&h, "+33111"), Some(1));

    let uri = "/v1/tenants/acme/flows/support";
    let r = h
        .send(
            Method::PUT,
            uri,
            Some(&editor),
            Some(support_flow("two")),
            &[("if-match", &etag(&created))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        live_version(&h, "+33111"),
        Some(1),
        "saving a draft changes nothing live"
    );
    let r = h
        .post(
            &format!("{uri}/publish"),
            &editor,
            json!({"comment": "second"}),
        )
        .await;
    assert_eq!(r.body["version"], 2);
    let Some(Route::Live(route)) = h.state.live().lookup("+33111") else {
        panic!("not live")
    };
    assert_eq!(route.version, 2);
    assert!(
        matches!(&route.flow.nodes["hello"].kind, voxgate_flows::NodeKind::Say(s) if s.text == "two")
    );

    // The list shows who published what.
    let list = h.get("/v1/tenants/acme/flows", &editor).await;
    assert_eq!(list.body["items"][0]["live"]["version"], 2);
    assert_eq!(
        list.body["items"][0]["live"]["by"],
        "editor [".to_string() + editor.split('_').nth(1).expect("id") + "]"
    );
    let versions = h.get(&format!("{uri}/versions"), &editor).await;
    assert_eq!(versions.body["items"][0]["version"], 2);
    assert_eq!(versions.body["items"][0]["live"], true);
    assert_eq!(versions.body["items"][1]["comment"], "first");
    let d = h.get(&format!("{uri}/diff?from=1&to=2"), &editor).await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.body["nodes_changed"][0]["id"], "hello");
    assert_eq!(d.body["nodes_changed"][0]["fields"], json!(["text"]));
    let d = h
        .get(&format!("{uri}/diff?from=live&to=draft"), &editor)
        .await;
    assert_eq!(d.body["nodes_changed"], json!([]));
    assert_eq!(
        h.get(&format!("{uri}/diff?from=1&to=9"), &editor)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let r = h
        .post(&format!("{uri}/rollback"), &editor, json!({"version": 1}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"live_version": 1, "previous_version": 2}));
    assert_eq!(live_version(&h, "+33111"), Some(1));
    assert_eq!(
        h.post(&format!("{uri}/rollback"), &editor, json!({"version": 7}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let v1 = h.get(&format!("{uri}/versions/1"), &editor).await;
    assert_eq!(v1.body["live"], true);
    assert_eq!(v1.body["document"]["nodes"]["hello"]["text"], "one");

    // The number can move, and a flow in use cannot be deleted.
    let r = h.send(Method::DELETE, uri, Some(&editor), None, &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = h
        .send(
            Method::DELETE,
            "/v1/tenants/acme/numbers/+33111",
            Some(&editor),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.state.live().lookup("+33111"), None);
    let r = h.send(Method::DELETE, uri, Some(&editor), None, &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.state.live().live_version("acme", "support"), None);
    let audit = h.get("/v1/tenants/acme/audit?limit=2", &editor).await;
    assert_eq!(audit.body["items"][0]["action"], "flow.delete");
    assert_eq!(audit.body["items"][1]["action"], "number.delete");
    let next = audit.body["next"].as_str().expect("next cursor");
    let page2 = h
        .get(
            &format!("/v1/tenants/acme/audit?limit=2&cursor={next}"),
            &editor,
        )
        .await;
    assert_eq!(page2.body["items"][0]["action"], "flow.rollback");
    assert_eq!(page2.body["items"][0]["from"], json!({"version": 2}));
    assert_eq!(page2.body["items"][0]["to"], json!({"version": 1}));
}

#[tokio::test]
async fn a_publish_survives_reopening_the_store() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let editor = h.key("editor", Some("acme")).await;
    h.post("/v1/tenants/acme/flows", &editor, support_flow("durable"))
        .await;
    h.send(
        Method::PUT,
        "/v1/tenants/acme/numbers/+3311",
        Some(&editor),
        Some(json!({"flow_id": "support"})),
        &[],
    )
    .await;
    assert_eq!(
        h.post("/v1/tenants/acme/flows/support/publish", &editor, json!({}))
            .await
            .status,
        StatusCode::CREATED
    );

    // A second store on the same file, while the first is still open (as
    // after a crash: nothing was closed or checkpointed), sees it all.
    let again = SqliteStore::open_in_dir(&h.dir.0).await.expect("reopen");
    let live = LiveTable::load(&again).await.expect("load");
    let Some(Route::Live(route)) = live.lookup("+3311") else {
        panic!("not live after reopen")
    };
    assert_eq!((route.tenant.as_str(), route.version), ("acme", 1));
    assert!(
        matches!(&route.flow.nodes["hello"].kind, voxgate_flows::NodeKind::Say(s) if s.text == "durable")
    );
    // The keys work against the reopened store too.
    let app = api::router(ApiState::new(Arc::new(again), Arc::new(live)));
    let req = Request::builder()
        .uri("/v1/tenants/acme/flows")
        .header(header::AUTHORIZATION, format!("Bearer {editor}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        app.oneshot(req).await.expect("response").status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn calls_list_newest_first_in_pages_with_their_timeline() {
    let h = Harness::new().await;
    h.tenant("acme").await;
    let viewer = h.key("viewer", Some("acme")).await;
    for i in 0..5 {
        let call = CallRecord {
            tenant: "acme".into(),
            id: format!("c{i}"),
            did: if i % 2 == 0 {
                "+3311".into()
            } else {
                "+3322".into()
            },
            caller: "+4477".into(),
            flow_id: "support".into(),
            version: 1,
            started_at: 1000 + i64::from(i),
            ended_at: None,
            disposition: None,
            timeline: json!([]),
        };
        h.store.save_call(&call).await.expect("save");
    }
    // The driver saves the call again when it ends.
    let ended = CallRecord {
        tenant: "acme".into(),
        id: "c4".into(),
        did: "+3311".into(),
        caller: "+4477".into(),
        flow_id: "support".into(),
        version: 1,
        started_at: 1004,
        ended_at: Some(2000),
        disposition: Some("completed".into()),
        timeline: json!([{"node": "hello", "type": "say", "entered_ms": 0, "exited_ms": 900, "outcome": "next"}]),
    };
    h.store.save_call(&ended).await.expect("save");

    let p1 = h.get("/v1/tenants/acme/calls?limit=2", &viewer).await;
    let ids = |r: &Reply| {
        r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|c| c["id"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&p1), ["c4", "c3"]);
    let next = p1.body["next"].as_str().expect("next");
    let p2 = h
        .get(
            &format!("/v1/tenants/acme/calls?limit=2&cursor={next}"),
            &viewer,
        )
        .await;
    assert_eq!(ids(&p2), ["c2", "c1"]);
    let next = p2.body["next"].as_str().expect("next");
    let p3 = h
        .get(
            &format!("/v1/tenants/acme/calls?limit=2&cursor={next}"),
            &viewer,
        )
        .await;
    assert_eq!(ids(&p3), ["c0"]);
    assert!(p3.body["next"].is_null());

    let by_did = h.get("/v1/tenants/acme/calls?did=%2B3311", &viewer).await;
    assert_eq!(ids(&by_did), ["c4", "c2", "c0"]);
    let one = h.get("/v1/tenants/acme/calls/c4", &viewer).await;
    assert_eq!(one.body["disposition"], "completed");
    assert_eq!(one.body["version"], 1);
    assert_eq!(one.body["timeline"][0]["node"], "hello");
}

#[tokio::test]
async fn the_schema_and_openapi_documents_are_served() {
    let h = Harness::new().await;
    let schema = h.get("/v1/schema/flow.json", &h.admin).await;
    assert_eq!(schema.status, StatusCode::OK);
    assert!(schema.body.to_string().contains("\"hangup\""));
    let doc = h.get("/v1/openapi.json", &h.admin).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.body["paths"].as_object().expect("paths");
    for p in [
        "/v1/tenants/{tenant}/flows/{flow}/publish",
        "/v1/tenants/{tenant}/numbers/{did}",
        "/v1/keys",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());
    assert_eq!(
        h.send(Method::GET, "/v1/openapi.json", None, None, &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}
