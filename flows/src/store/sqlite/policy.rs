//! The NOC policy queries of the SQLite store.

use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::super::*;
use super::flows::begin_write;
use super::rows::*;

fn policy_row(row: &SqliteRow) -> Result<StoredPolicy, StoreError> {
    let doc: String = row.try_get("document")?;
    Ok(StoredPolicy {
        tenant: row.try_get("tenant_id")?,
        document: serde_json::from_str(&doc).map_err(corrupt("tenant policy"))?,
        version: u32_col(row, "version")?,
        etag: row.try_get("etag")?,
        updated_by: row.try_get("updated_by")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) async fn get_policy(
    pool: &SqlitePool,
    tenant: &str,
) -> Result<Option<StoredPolicy>, StoreError> {
    let row = sqlx::query("SELECT * FROM tenant_policies WHERE tenant_id = ?")
        .bind(tenant)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(policy_row).transpose()
}

pub(super) async fn list_policies(pool: &SqlitePool) -> Result<Vec<StoredPolicy>, StoreError> {
    sqlx::query("SELECT * FROM tenant_policies ORDER BY tenant_id")
        .fetch_all(pool)
        .await?
        .iter()
        .map(policy_row)
        .collect()
}

pub(super) async fn put_policy(
    pool: &SqlitePool,
    w: &PolicyWrite<'_>,
) -> Result<StoredPolicy, StoreError> {
    let text = json_text(w.document, "tenant policy")?;
    let mut tx = begin_write(pool).await?;
    let tenant = sqlx::query("SELECT 1 FROM tenants WHERE id = ?")
        .bind(w.tenant)
        .fetch_optional(&mut *tx)
        .await?;
    if tenant.is_none() {
        return Err(StoreError::NotFound);
    }
    let current = sqlx::query("SELECT * FROM tenant_policies WHERE tenant_id = ?")
        .bind(w.tenant)
        .fetch_optional(&mut *tx)
        .await?;
    let current = current.as_ref().map(policy_row).transpose()?;
    let current_etag = current
        .as_ref()
        .map_or(DEFAULT_POLICY_ETAG, |p| p.etag.as_str());
    if let Some(expected) = w.if_match {
        if expected != current_etag && expected != "*" {
            return Err(StoreError::EtagMismatch {
                current: current_etag.to_string(),
            });
        }
    }
    if let Some(current) = current.as_ref().filter(|p| p.document == *w.document) {
        // Nothing changes, so there is nothing to audit.
        return Ok(current.clone());
    }
    // The chain starts from "" rather than "default", so a first policy's
    // ETag never equals the defaults' one.
    let previous = current.as_ref().map_or("", |p| p.etag.as_str());
    let etag = next_etag(previous, &text);
    let version = current.as_ref().map_or(1, |p| p.version.saturating_add(1));
    sqlx::query(
        "INSERT INTO tenant_policies (tenant_id, document, version, etag, updated_by, updated_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (tenant_id) DO UPDATE SET document = excluded.document, version = excluded.version,
         etag = excluded.etag, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(w.tenant)
    .bind(&text)
    .bind(i64::from(version))
    .bind(&etag)
    .bind(w.actor)
    .bind(w.at)
    .execute(&mut *tx)
    .await?;
    let from: &Value = current.as_ref().map_or(w.default_document, |p| &p.document);
    audit(
        &mut tx,
        Some(w.tenant),
        w.actor,
        POLICY_AUDIT_ACTION,
        &format!("policy v{version}"),
        Some(from),
        Some(w.document),
        w.at,
    )
    .await?;
    tx.commit().await?;
    Ok(StoredPolicy {
        tenant: w.tenant.into(),
        document: w.document.clone(),
        version,
        etag,
        updated_by: w.actor.into(),
        updated_at: w.at,
    })
}

pub(super) async fn list_audit_action(
    pool: &SqlitePool,
    tenant: &str,
    action: &str,
    page: &PageRequest,
) -> Result<Page<AuditEntry>, StoreError> {
    let limit = page.effective_limit();
    let before: i64 = page
        .cursor
        .as_deref()
        .and_then(decode_cursor)
        .and_then(|c| c.parse().ok())
        .unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT * FROM audit_log WHERE tenant_id = ? AND action = ? AND seq < ?
         ORDER BY seq DESC LIMIT ?",
    )
    .bind(tenant)
    .bind(action)
    .bind(before)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let items = rows.iter().map(audit_row).collect::<Result<Vec<_>, _>>()?;
    Ok(paginate(items, limit, |a| a.seq.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::SqliteStore;
    use super::*;

    async fn store_with_tenant() -> SqliteStore {
        let store = SqliteStore::open_in_memory().await.expect("store");
        let tenant = Tenant {
            id: "acme".into(),
            name: "Acme".into(),
            settings: TenantSettings::default(),
            created_at: 1,
        };
        store.create_tenant(&tenant, "admin").await.expect("tenant");
        store
    }

    fn write<'a>(
        document: &'a Value,
        defaults: &'a Value,
        if_match: Option<&'a str>,
        at: UnixMs,
    ) -> PolicyWrite<'a> {
        PolicyWrite {
            tenant: "acme",
            document,
            if_match,
            default_document: defaults,
            actor: "noc-1",
            at,
        }
    }

    #[tokio::test]
    async fn versions_etags_and_audit_follow_each_change() {
        let store = store_with_tenant().await;
        let defaults = json!({"limits": {"max_concurrent": 1000}});
        let a = json!({"limits": {"max_concurrent": 10}});
        let b = json!({"limits": {"max_concurrent": 20}});
        assert_eq!(store.get_policy("acme").await.expect("get"), None);

        // A first policy may be required to be the first.
        let first = store
            .put_policy(&write(&a, &defaults, Some(DEFAULT_POLICY_ETAG), 10))
            .await
            .expect("first");
        assert_eq!((first.version, first.updated_at), (1, 10));
        assert_ne!(first.etag, DEFAULT_POLICY_ETAG);
        let stale = store
            .put_policy(&write(&b, &defaults, Some(DEFAULT_POLICY_ETAG), 11))
            .await;
        assert!(
            matches!(&stale, Err(StoreError::EtagMismatch { current }) if *current == first.etag),
            "{stale:?}"
        );

        let second = store
            .put_policy(&write(&b, &defaults, Some(&first.etag), 12))
            .await
            .expect("second");
        assert_eq!(second.version, 2);
        assert_ne!(second.etag, first.etag);
        // The same document again changes nothing.
        let same = store
            .put_policy(&write(&b, &defaults, None, 13))
            .await
            .expect("same");
        assert_eq!(same, second);
        assert_eq!(
            store.get_policy("acme").await.expect("get"),
            Some(second.clone())
        );
        assert_eq!(
            store.list_policies().await.expect("list"),
            vec![second.clone()]
        );

        let page = PageRequest::default();
        let trail = store
            .list_audit_action("acme", POLICY_AUDIT_ACTION, &page)
            .await
            .expect("audit");
        let summary: Vec<_> = trail
            .items
            .iter()
            .map(|e| {
                (
                    e.actor.as_str(),
                    e.object.as_str(),
                    e.from.clone(),
                    e.to.clone(),
                    e.at,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("noc-1", "policy v2", Some(a.clone()), Some(b.clone()), 12),
                ("noc-1", "policy v1", Some(defaults.clone()), Some(a), 10),
            ]
        );
        // The tenant's creation is in its audit log but not in this trail.
        let all = store.list_audit(Some("acme"), &page).await.expect("all");
        assert_eq!(all.items.len(), 3);
    }

    #[tokio::test]
    async fn a_policy_needs_its_tenant() {
        let store = store_with_tenant().await;
        let doc = json!({});
        let w = PolicyWrite {
            tenant: "ghost",
            ..write(&doc, &doc, None, 1)
        };
        assert!(matches!(
            store.put_policy(&w).await,
            Err(StoreError::NotFound)
        ));
    }

    #[tokio::test]
    async fn the_audit_trail_pages() {
        let store = store_with_tenant().await;
        let defaults = json!({"n": 0});
        for n in 1..=5 {
            let doc = json!({ "n": n });
            store
                .put_policy(&write(&doc, &defaults, None, n))
                .await
                .expect("put");
        }
        let mut seen = Vec::new();
        let mut page = PageRequest {
            limit: 2,
            cursor: None,
        };
        loop {
            let p = store
                .list_audit_action("acme", POLICY_AUDIT_ACTION, &page)
                .await
                .expect("page");
            seen.extend(p.items.iter().map(|e| e.at));
            match p.next {
                Some(next) => page.cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, [5, 4, 3, 2, 1]);
    }
}
