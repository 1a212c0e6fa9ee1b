//! Publish → visible latency: how long from a CX editor's publish request
//! until the SIP router's next lookup of the DID sees the new version.
//!
//! It publishes the same flow N times (default 1000) through the real API
//! router over a real SQLite file (WAL, synchronous=FULL) while a reader
//! thread spins on `LiveTable::lookup`, as the router does on INVITEs, and
//! records when it first sees each version. It prints one JSON object:
//! p50/p99/max of request → seen by the reader, of the store commit alone,
//! of the live-table swap alone, and of a bare write+fsync in the same
//! directory, so one can tell how much of the total is the disk.
//!
//! `cargo run -p voxgate-flows --example publish_bench [-- N [DIR]]`

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use voxgate_flows::api::{self, ApiState};
use voxgate_flows::live::{LiveTable, Route};
use voxgate_flows::store::{self, SqliteStore, Store};
use voxgate_gateway::clock::{self, Instant};

fn stats(mut samples: Vec<Duration>) -> Value {
    samples.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    json!({"n": samples.len(), "p50_ms": ms(at(0.5)), "p99_ms": ms(at(0.99)), "max_ms": ms(at(1.0))})
}

fn flow(text: &str) -> Value {
    json!({"id": "support", "name": "Support", "entry": "hello", "nodes": {
        "hello": {"type": "say", "text": text, "edges": {"next": "bye"}},
        "bye": {"type": "hangup"}}})
}

async fn send(
    app: &axum::Router,
    method: Method,
    uri: &str,
    key: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))?;
    let resp = app.clone().oneshot(req).await?;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await?;
    anyhow::ensure!(
        status.is_success() || status == StatusCode::CONFLICT,
        "{uri}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("voxgate-publish-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;

    let store = Arc::new(SqliteStore::open_in_dir(&dir).await?);
    let admin = store::bootstrap(store.as_ref(), 0)
        .await?
        .ok_or_else(|| anyhow::anyhow!("bench dir must be empty"))?;
    let live = Arc::new(LiveTable::load(store.as_ref()).await?);
    let app = api::router(ApiState::new(store.clone(), live.clone()));
    send(
        &app,
        Method::POST,
        "/v1/tenants",
        &admin,
        json!({"id": "acme", "name": "Acme"}),
    )
    .await?;
    send(
        &app,
        Method::POST,
        "/v1/tenants/acme/flows",
        &admin,
        flow("hello"),
    )
    .await?;
    send(
        &app,
        Method::PUT,
        "/v1/tenants/acme/numbers/+3311",
        &admin,
        json!({"flow_id": "support"}),
    )
    .await?;

    // The router's side: spin on lookups, note when each version appears.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n as usize + 2]));
    let last_seen = Arc::new(AtomicU32::new(0));
    let reader = {
        let (live, stop, seen, last_seen) =
            (live.clone(), stop.clone(), seen.clone(), last_seen.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(Route::Live(r)) = live.lookup("+3311") {
                    if r.version > last_seen.load(Ordering::Relaxed) {
                        let now = clock::now();
                        last_seen.store(r.version, Ordering::Relaxed);
                        if let Ok(mut s) = seen.lock() {
                            if let Some(slot) = s.get_mut(r.version as usize) {
                                *slot = Some(now);
                            }
                        }
                    }
                }
                std::hint::spin_loop();
            }
        })
    };

    let mut started = Vec::with_capacity(n as usize);
    let mut answered = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let t0 = clock::now();
        let r = send(
            &app,
            Method::POST,
            "/v1/tenants/acme/flows/support/publish",
            &admin,
            json!({"comment": format!("#{i}")}),
        )
        .await?;
        answered.push(clock::now() - t0);
        started.push(t0);
        anyhow::ensure!(r["version"] == i, "unexpected version {r}");
        // The API answers only after the swap: the very next lookup sees it.
        match live.lookup("+3311") {
            Some(Route::Live(route)) if route.version == i => {}
            other => anyhow::bail!("version {i} not visible after the answer: {other:?}"),
        }
    }
    // Let the reader catch the last version.
    let deadline = clock::now() + Duration::from_secs(1);
    while last_seen.load(Ordering::Relaxed) < n && clock::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    // A version the reader thread missed (it was descheduled while the
    // next publish landed) is left out of this statistic; `n` says how
    // many were caught. The check above already proved every version was
    // visible to the lookup right after its answer.
    let visible: Vec<Duration> = (1..=n)
        .filter_map(|i| {
            seen[i as usize].map(|s| s.saturating_duration_since(started[i as usize - 1]))
        })
        .collect();

    // The parts: the store transaction alone, and the swap alone.
    let doc = serde_json::to_value(serde_json::from_value::<voxgate_flows::Flow>(flow("x"))?)?;
    let mut commit = Vec::new();
    for _ in 0..100 {
        let req = store::PublishRequest {
            tenant: "acme",
            flow_id: "support",
            document: &doc,
            if_match: None,
            author: "bench",
            comment: "",
            at: 0,
        };
        let t0 = clock::now();
        store.publish(&req).await?;
        commit.push(clock::now() - t0);
    }
    let parsed = Arc::new(serde_json::from_value::<voxgate_flows::Flow>(flow("x"))?);
    let mut swap = Vec::new();
    for v in 0..1000 {
        let t0 = clock::now();
        live.set_live("acme", "support", 10_000 + v, parsed.clone());
        let _ = live.lookup("+3311");
        swap.push(clock::now() - t0);
    }
    let mut fsync = Vec::new();
    let probe = dir.join("fsync-probe");
    for i in 0..100u32 {
        let t0 = clock::now();
        std::fs::write(&probe, i.to_le_bytes())?;
        std::fs::File::open(&probe)?.sync_all()?;
        fsync.push(clock::now() - t0);
    }
    let _ = std::fs::remove_dir_all(&dir);

    let out = json!({
        "publishes": n,
        "profile": if cfg!(debug_assertions) { "dev" } else { "release" },
        "journal_mode": "WAL",
        "synchronous": "FULL",
        "request_to_answer": stats(answered),
        "request_to_visible_in_lookup": stats(visible),
        "store_publish_commit": stats(commit),
        "live_swap_plus_lookup": stats(swap),
        "bare_write_fsync": stats(fsync),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
