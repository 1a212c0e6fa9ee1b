//! A tenant's NOC policy end to end against the real `voxgate serve`: a NOC
//! key reads the defaults, sets a policy with `voxgate policy set`, reads
//! it back with its audit entry, sees it in force in the health snapshot,
//! and is refused a stale or invalid change.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use voxgate_tests::{Gateway, TempDir};

fn admin_key(gw: &Gateway) -> String {
    voxgate_tests::ai::admin_key(gw).expect("the first start prints an admin key")
}

fn voxgate(gw: &Gateway, key: &str, args: &[&str]) -> Output {
    voxgate_tests::ai::voxgate(gw, key, args).expect("voxgate runs")
}

fn ok_json(out: Output) -> Value {
    voxgate_tests::ai::ok_json(out).expect("the command succeeds")
}

fn write_json(dir: &Path, name: &str, v: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(v).expect("json")).expect("write");
    path.display().to_string()
}

#[test]
fn a_policy_set_through_the_cli_is_stored_audited_and_in_force() {
    let gw = Gateway::start().expect("gateway starts");
    let admin = admin_key(&gw);
    let dir = TempDir::new("noc-e2e").expect("temp dir");
    ok_json(voxgate(
        &gw,
        &admin,
        &["tenants", "create", "acme", "--name", "Acme"],
    ));
    let created = ok_json(voxgate(
        &gw,
        &admin,
        &["keys", "create", "--role", "noc", "--label", "night-shift"],
    ));
    let noc = created["token"].as_str().expect("token").to_string();

    // No policy of its own yet: the defaults.
    let mut view = ok_json(voxgate(&gw, &noc, &["policy", "get", "acme"]));
    assert_eq!(view["source"], "default", "{view}");
    assert_eq!(view["etag"], "default");
    assert_eq!(view["policy"]["limits"]["max_concurrent"], 1000);

    // Edit what `get` printed and set it: its ETag goes along.
    view["policy"]["limits"]["max_concurrent"] = 4.into();
    view["policy"]["budgets"]["fallback"] = "agent".into();
    let edited = write_json(dir.path(), "edited.json", &view);
    let set = ok_json(voxgate(&gw, &noc, &["policy", "set", "acme", &edited]));
    assert_eq!(set["version"], 1, "{set}");
    assert_eq!(set["source"], "stored");

    // Read back.
    let got = ok_json(voxgate(&gw, &noc, &["policy", "get", "acme"]));
    assert_eq!(got["version"], 1);
    assert_eq!(got["etag"], set["etag"]);
    assert_eq!(got["policy"]["limits"]["max_concurrent"], 4);
    assert_eq!(got["policy"]["budgets"]["fallback"], "agent");
    let who = got["updated_by"].as_str().expect("updated_by");
    assert!(who.starts_with("night-shift ["), "{who}");

    // Its audit entry: who, when, from → to.
    let audit = ok_json(voxgate(&gw, &noc, &["policy", "audit", "acme"]));
    let items = audit["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{audit}");
    let entry = &items[0];
    assert_eq!(entry["actor"], who);
    assert_eq!(entry["object"], "policy v1");
    assert!(entry["at"].as_i64().expect("at") > 1_600_000_000_000);
    let changes = entry["changes"].as_array().expect("changes");
    let change = |path: &str| {
        changes
            .iter()
            .find(|c| c["path"] == path)
            .unwrap_or_else(|| panic!("{path} not in {changes:?}"))
            .clone()
    };
    let c = change("/limits/max_concurrent");
    assert_eq!(
        (c["from"].clone(), c["to"].clone()),
        (1000.into(), 4.into())
    );
    let c = change("/budgets/fallback");
    assert_eq!(
        (c["from"].clone(), c["to"].clone()),
        ("dtmf".into(), "agent".into())
    );
    assert_eq!(changes.len(), 2, "{changes:?}");

    // In force in the running process: the health snapshot reads the book.
    let health = ok_json(voxgate(&gw, &noc, &["policy", "health", "acme"]));
    assert_eq!(health["max_concurrent"], 4, "{health}");
    assert_eq!(health["active_sessions"], 0);
    let states: Vec<&str> = health["breakers"]
        .as_array()
        .expect("breakers")
        .iter()
        .filter_map(|b| b["state"].as_str())
        .collect();
    assert_eq!(states, ["closed", "closed", "closed"]);

    // The same file again carries the old ETag ("default"): refused.
    let stale = voxgate(&gw, &noc, &["policy", "set", "acme", &edited]);
    assert_eq!(stale.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("412"),
        "{}",
        String::from_utf8_lossy(&stale.stderr)
    );

    // An invalid document is refused with its paths.
    let bad = write_json(
        dir.path(),
        "bad.json",
        &serde_json::json!({"limits": {"max_concurent": 3}, "budgets": {"stall_ms": 1}}),
    );
    let refused = voxgate(&gw, &noc, &["policy", "set", "acme", &bad]);
    assert_eq!(refused.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("422"), "{stderr}");
    assert!(stderr.contains("/limits/max_concurent"), "{stderr}");
    // Nothing changed.
    let after = ok_json(voxgate(&gw, &noc, &["policy", "get", "acme"]));
    assert_eq!(after["version"], 1);

    // The breaker gauge is served for Prometheus.
    let (status, text) = gw.get("/metrics/ai").expect("metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE voxgate_ai_breaker_state gauge"),
        "{text}"
    );
}
