//! The SQLite store on its own: transactions, tenant scoping, durability.

use std::path::PathBuf;

use serde_json::json;
use voxgate_flows::store::{
    PageRequest, PublishRequest, SqliteStore, Store, StoreError, Tenant, TenantSettings,
};

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("voxgate-flows-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

async fn with_flow(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open_in_dir(dir).await.expect("open");
    for t in ["acme", "globex"] {
        let tenant = Tenant {
            id: t.into(),
            name: t.into(),
            settings: TenantSettings::default(),
            created_at: 0,
        };
        store.create_tenant(&tenant, "test").await.expect("tenant");
        store
            .create_draft(t, "support", &json!({"id": "support"}), "test", 0)
            .await
            .expect("draft");
    }
    store
}

fn publish_req<'a>(
    tenant: &'a str,
    doc: &'a serde_json::Value,
    comment: &'a str,
) -> PublishRequest<'a> {
    PublishRequest {
        tenant,
        flow_id: "support",
        document: doc,
        if_match: None,
        author: "test",
        comment,
        at: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_get_distinct_versions() {
    let dir = temp_dir("concurrent");
    let store = std::sync::Arc::new(with_flow(&dir).await);
    let doc = json!({"id": "support"});
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, doc) = (store.clone(), doc.clone());
        tasks.push(tokio::spawn(async move {
            let comment = format!("#{i}");
            store
                .publish(&publish_req("acme", &doc, &comment))
                .await
                .map(|v| v.version)
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.expect("join").expect("publish"));
    }
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
    let page = store
        .list_versions(
            "acme",
            "support",
            &PageRequest {
                limit: 3,
                cursor: None,
            },
        )
        .await
        .expect("list");
    assert_eq!(
        page.items.iter().map(|v| v.version).collect::<Vec<_>>(),
        [8, 7, 6]
    );
    assert!(page.items[0].live);
    let page2 = store
        .list_versions(
            "acme",
            "support",
            &PageRequest {
                limit: 3,
                cursor: page.next,
            },
        )
        .await
        .expect("list");
    assert_eq!(page2.items[0].version, 5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn objects_are_scoped_by_tenant() {
    let dir = temp_dir("scoped");
    let store = with_flow(&dir).await;
    let doc = json!({"id": "support", "v": "acme"});
    store
        .publish(&publish_req("acme", &doc, ""))
        .await
        .expect("publish");
    assert!(store
        .get_version("globex", "support", 1)
        .await
        .expect("get")
        .is_none());
    assert!(matches!(
        store.rollback("globex", "support", 1, "t", 2).await,
        Err(StoreError::NotFound)
    ));
    store
        .put_number("acme", "+3311", "support", "t", 3)
        .await
        .expect("number");
    assert!(matches!(
        store.put_number("globex", "+3311", "support", "t", 3).await,
        Err(StoreError::NumberTaken)
    ));
    assert!(matches!(
        store.put_number("acme", "+3322", "nope", "t", 3).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_number("globex", "+3311", "t", 3).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.list_numbers("globex").await.expect("list").is_empty());
    assert!(matches!(
        store.delete_flow("acme", "support", None, "t", 4).await,
        Err(StoreError::FlowInUse { numbers }) if numbers == ["+3311"]
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_etag_guards_the_publish_transaction() {
    let dir = temp_dir("etag");
    let store = with_flow(&dir).await;
    let draft = store
        .get_draft("acme", "support")
        .await
        .expect("get")
        .expect("draft");
    let doc = json!({"id": "support", "v": 2});
    let updated = store
        .update_draft("acme", "support", &doc, &draft.etag, "t", 1)
        .await
        .expect("update");
    let mut req = publish_req("acme", &doc, "");
    req.if_match = Some(&draft.etag);
    assert!(
        matches!(store.publish(&req).await, Err(StoreError::EtagMismatch { current }) if current == updated.etag)
    );
    assert!(
        store
            .get_flow("acme", "support")
            .await
            .expect("get")
            .expect("flow")
            .live
            .is_none(),
        "nothing published"
    );
    req.if_match = Some(&updated.etag);
    assert_eq!(store.publish(&req).await.expect("publish").version, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn everything_reads_back_after_close_and_reopen() {
    let dir = temp_dir("reopen");
    let store = with_flow(&dir).await;
    let doc = json!({"id": "support", "v": 1});
    store
        .publish(&publish_req("acme", &doc, "one"))
        .await
        .expect("publish");
    store
        .publish(&publish_req("acme", &doc, "two"))
        .await
        .expect("publish");
    store
        .rollback("acme", "support", 1, "t", 5)
        .await
        .expect("rollback");
    store
        .put_number("acme", "+3311", "support", "t", 6)
        .await
        .expect("number");
    store.close().await;

    let store = SqliteStore::open_in_dir(&dir).await.expect("reopen");
    let live = store.load_live().await.expect("load");
    let acme = live
        .flows
        .iter()
        .find(|f| f.tenant == "acme")
        .expect("acme flow live");
    assert_eq!(acme.version, 1);
    assert_eq!(live.numbers.len(), 1);
    assert_eq!(live.tenants.len(), 2);
    assert!(
        live.flows.iter().all(|f| f.tenant != "globex"),
        "globex never published"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
