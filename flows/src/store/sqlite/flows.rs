//! The flow, draft and version queries of the SQLite store.

use serde_json::Value;
use sqlx::{Row, SqlitePool};

use super::super::*;
use super::rows::*;

/// A write transaction that takes the write lock up front, so that two
/// writers queue on the busy timeout instead of failing on a stale read.
pub(super) async fn begin_write(
    pool: &SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

pub(super) async fn list_flows(
    pool: &SqlitePool,
    tenant: &str,
    page: &PageRequest,
) -> Result<Page<FlowSummary>, StoreError> {
    let limit = page.effective_limit();
    let after = page
        .cursor
        .as_deref()
        .and_then(decode_cursor)
        .unwrap_or_default();
    let rows = sqlx::query(
        "SELECT * FROM flows WHERE tenant_id = ? AND flow_id > ? ORDER BY flow_id LIMIT ?",
    )
    .bind(tenant)
    .bind(&after)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let items = rows
        .iter()
        .map(flow_summary_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(paginate(items, limit, |f| f.flow_id.clone()))
}

/// The `flows` row of one tenant's flow: summary and draft in one.
async fn flow_row(
    pool: &SqlitePool,
    tenant: &str,
    flow_id: &str,
) -> Result<Option<sqlx::sqlite::SqliteRow>, StoreError> {
    Ok(
        sqlx::query("SELECT * FROM flows WHERE tenant_id = ? AND flow_id = ?")
            .bind(tenant)
            .bind(flow_id)
            .fetch_optional(pool)
            .await?,
    )
}

pub(super) async fn get_flow(
    pool: &SqlitePool,
    tenant: &str,
    flow_id: &str,
) -> Result<Option<FlowSummary>, StoreError> {
    let row = flow_row(pool, tenant, flow_id).await?;
    row.as_ref().map(flow_summary_row).transpose()
}

pub(super) async fn get_draft(
    pool: &SqlitePool,
    tenant: &str,
    flow_id: &str,
) -> Result<Option<Draft>, StoreError> {
    let row = flow_row(pool, tenant, flow_id).await?;
    row.as_ref().map(draft_row).transpose()
}

pub(super) async fn create_draft(
    pool: &SqlitePool,
    tenant: &str,
    flow_id: &str,
    document: &Value,
    actor: Actor<'_>,
    at: UnixMs,
) -> Result<Draft, StoreError> {
    let text = json_text(document, "draft")?;
    let etag = next_etag("", &text);
    let mut tx = begin_write(pool).await?;
    let done = sqlx::query(
        "INSERT INTO flows (tenant_id, flow_id, draft, etag, updated_by, updated_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(flow_id)
    .bind(&text)
    .bind(&etag)
    .bind(actor)
    .bind(at)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::AlreadyExists);
    }
    tx.commit().await?;
    Ok(Draft {
        tenant: tenant.into(),
        flow_id: flow_id.into(),
        document: document.clone(),
        etag,
        updated_by: actor.into(),
        updated_at: at,
    })
}

pub(super) async fn update_draft(
    pool: &SqlitePool,
    tenant: &str,
    flow_id: &str,
    document: &Value,
    if_match: &str,
    actor: Actor<'_>,
    at: UnixMs,
) -> Result<Draft, StoreError> {
    let text = json_text(document, "draft")?;
    let mut tx = begin_write(pool).await?;
    let current: Option<String> =
        sqlx::query_scalar("SELECT etag FROM flows WHERE tenant_id = ? AND flow_id = ?")
            .bind(tenant)
            .bind(flow_id)
            .fetch_optional(&mut *tx)
            .await?;
    let current = current.ok_or(StoreError::NotFound)?;
    if current != if_match && if_match != "*" {
        return Err(StoreError::EtagMismatch { current });
    }
    let etag = next_etag(&current, &text);
    sqlx::query("UPDATE flows SET draft = ?, etag = ?, updated_by = ?, updated_at = ? WHERE tenant_id = ? AND flow_id = ?")
        .bind(&text)
        .bind(&etag)
        .bind(actor)
        .bind(at)
        .bind(tenant)
        .bind(flow_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Draft {
        tenant: tenant.into(),
        flow_id: flow_id.into(),
        document: document.clone(),
        etag,
        updated_by: actor.into(),
        updated_at: at,
    })
}

pub(super) async fn delete_flow(
    pool: &SqlitePool,
    tenant: &str,
    flow_id: &str,
    if_match: Option<&str>,
    actor: Actor<'_>,
    at: UnixMs,
) -> Result<(), StoreError> {
    let mut tx = begin_write(pool).await?;
    let row =
        sqlx::query("SELECT etag, live_version FROM flows WHERE tenant_id = ? AND flow_id = ?")
            .bind(tenant)
            .bind(flow_id)
            .fetch_optional(&mut *tx)
            .await?;
    let row = row.ok_or(StoreError::NotFound)?;
    let current: String = row.try_get("etag")?;
    let live: Option<i64> = row.try_get("live_version")?;
    if let Some(expected) = if_match {
        if expected != current && expected != "*" {
            return Err(StoreError::EtagMismatch { current });
        }
    }
    let numbers: Vec<String> = sqlx::query_scalar(
        "SELECT did FROM numbers WHERE tenant_id = ? AND flow_id = ? ORDER BY did",
    )
    .bind(tenant)
    .bind(flow_id)
    .fetch_all(&mut *tx)
    .await?;
    if !numbers.is_empty() {
        return Err(StoreError::FlowInUse { numbers });
    }
    sqlx::query("DELETE FROM flows WHERE tenant_id = ? AND flow_id = ?")
        .bind(tenant)
        .bind(flow_id)
        .execute(&mut *tx)
        .await?;
    let from = serde_json::json!({"live_version": live});
    audit(
        &mut tx,
        Some(tenant),
        actor,
        "flow.delete",
        flow_id,
        Some(&from),
        None,
        at,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn publish(
    pool: &SqlitePool,
    req: &PublishRequest<'_>,
) -> Result<Version, StoreError> {
    let text = json_text(req.document, "version")?;
    let mut tx = begin_write(pool).await?;
    let row =
        sqlx::query("SELECT etag, live_version FROM flows WHERE tenant_id = ? AND flow_id = ?")
            .bind(req.tenant)
            .bind(req.flow_id)
            .fetch_optional(&mut *tx)
            .await?;
    let row = row.ok_or(StoreError::NotFound)?;
    let current: String = row.try_get("etag")?;
    let previous: Option<i64> = row.try_get("live_version")?;
    if let Some(expected) = req.if_match {
        if expected != current && expected != "*" {
            return Err(StoreError::EtagMismatch { current });
        }
    }
    let last: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(version) FROM flow_versions WHERE tenant_id = ? AND flow_id = ?",
    )
    .bind(req.tenant)
    .bind(req.flow_id)
    .fetch_one(&mut *tx)
    .await?;
    let version = last.unwrap_or(0) + 1;
    sqlx::query(
        "INSERT INTO flow_versions (tenant_id, flow_id, version, document, author, comment, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(req.tenant)
    .bind(req.flow_id)
    .bind(version)
    .bind(&text)
    .bind(req.author)
    .bind(req.comment)
    .bind(req.at)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE flows SET live_version = ?, live_by = ?, live_at = ? WHERE tenant_id = ? AND flow_id = ?")
        .bind(version)
        .bind(req.author)
        .bind(req.at)
        .bind(req.tenant)
        .bind(req.flow_id)
        .execute(&mut *tx)
        .await?;
    let from = serde_json::json!({"version": previous});
    let to = serde_json::json!({"version": version, "comment": req.comment});
    audit(
        &mut tx,
        Some(req.tenant),
        req.author,
        "flow.publish",
        req.flow_id,
        Some(&from),
        Some(&to),
        req.at,
    )
    .await?;
    tx.commit().await?;
    Ok(Version {
        tenant: req.tenant.into(),
        flow_id: req.flow_id.into(),
        version: u32::try_from(version).unwrap_or(u32::MAX),
        document: req.document.clone(),
        author: req.author.into(),
        comment: req.comment.into(),
        created_at: req.at,
    })
}

pub(super) async fn rollback(
    pool: &SqlitePool,
    tenant: &str,
    flow_id: &str,
    version: u32,
    actor: Actor<'_>,
    at: UnixMs,
) -> Result<Version, StoreError> {
    let mut tx = begin_write(pool).await?;
    let previous: Option<Option<i64>> =
        sqlx::query_scalar("SELECT live_version FROM flows WHERE tenant_id = ? AND flow_id = ?")
            .bind(tenant)
            .bind(flow_id)
            .fetch_optional(&mut *tx)
            .await?;
    let previous = previous.ok_or(StoreError::NotFound)?;
    let row = sqlx::query(
        "SELECT * FROM flow_versions WHERE tenant_id = ? AND flow_id = ? AND version = ?",
    )
    .bind(tenant)
    .bind(flow_id)
    .bind(i64::from(version))
    .fetch_optional(&mut *tx)
    .await?;
    let target = version_row(&row.ok_or(StoreError::NotFound)?)?;
    sqlx::query("UPDATE flows SET live_version = ?, live_by = ?, live_at = ? WHERE tenant_id = ? AND flow_id = ?")
        .bind(i64::from(version))
        .bind(actor)
        .bind(at)
        .bind(tenant)
        .bind(flow_id)
        .execute(&mut *tx)
        .await?;
    let from = serde_json::json!({"version": previous});
    let to = serde_json::json!({"version": version});
    audit(
        &mut tx,
        Some(tenant),
        actor,
        "flow.rollback",
        flow_id,
        Some(&from),
        Some(&to),
        at,
    )
    .await?;
    tx.commit().await?;
    Ok(target)
}

pub(super) async fn list_versions(
    pool: &SqlitePool,
    tenant: &str,
    flow_id: &str,
    page: &PageRequest,
) -> Result<Page<VersionSummary>, StoreError> {
    let limit = page.effective_limit();
    let before: i64 = page
        .cursor
        .as_deref()
        .and_then(decode_cursor)
        .and_then(|c| c.parse().ok())
        .unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT v.version, v.author, v.comment, v.created_at, (f.live_version = v.version) AS live
         FROM flow_versions v JOIN flows f ON f.tenant_id = v.tenant_id AND f.flow_id = v.flow_id
         WHERE v.tenant_id = ? AND v.flow_id = ? AND v.version < ?
         ORDER BY v.version DESC LIMIT ?",
    )
    .bind(tenant)
    .bind(flow_id)
    .bind(before)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let items = rows
        .iter()
        .map(|row| {
            Ok(VersionSummary {
                version: u32_col(row, "version")?,
                author: row.try_get("author")?,
                comment: row.try_get("comment")?,
                created_at: row.try_get("created_at")?,
                live: row.try_get::<Option<bool>, _>("live")?.unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(paginate(items, limit, |v| v.version.to_string()))
}

pub(super) async fn get_version(
    pool: &SqlitePool,
    tenant: &str,
    flow_id: &str,
    version: u32,
) -> Result<Option<Version>, StoreError> {
    let row = sqlx::query(
        "SELECT * FROM flow_versions WHERE tenant_id = ? AND flow_id = ? AND version = ?",
    )
    .bind(tenant)
    .bind(flow_id)
    .bind(i64::from(version))
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(version_row).transpose()
}
