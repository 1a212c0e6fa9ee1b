//! The embedded store: one SQLite file, WAL, `synchronous=FULL`.
//!
//! With WAL and FULL every commit is fsynced before it returns, so once
//! a write's future resolves (and so once the API answers) it survives a
//! kill -9 or a power cut. Write transactions start with `BEGIN
//! IMMEDIATE` so that two writers queue on the busy timeout instead of
//! failing on a stale read snapshot.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlSafeStr, SqlitePool};

use super::keys::SecretHash;
use super::*;

mod flows;
mod policy;
mod rows;

use rows::*;

/// The file name inside the data dir.
pub const FILE_NAME: &str = "voxgate-flows.sqlite3";

/// The migrations, embedded in the binary. New ones are appended here and
/// as files in `flows/migrations`; applied ones are never edited.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../../migrations/0001_initial.sql"),
    ),
    (
        2,
        "tenant policies",
        include_str!("../../../migrations/0002_tenant_policies.sql"),
    ),
];

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path` and brings its
    /// schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations).run(&pool).await?;
        Ok(Self { pool })
    }

    /// Opens `voxgate-flows.sqlite3` in the data dir.
    pub async fn open_in_dir(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open(&data_dir.join(FILE_NAME)).await
    }

    /// An in-memory store, for tests of code that needs a store but not
    /// durability.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        // One connection: each in-memory connection is its own database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations).run(&pool).await?;
        Ok(Self { pool })
    }

    /// Waits for open connections to finish and closes them.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Store for SqliteStore {
    fn create_tenant<'a>(&'a self, tenant: &'a Tenant, actor: Actor<'a>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let settings = json_text(&tenant.settings, "tenant settings")?;
            let mut tx = flows::begin_write(&self.pool).await?;
            let done = sqlx::query("INSERT INTO tenants (id, name, settings, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(&tenant.id)
                .bind(&tenant.name)
                .bind(&settings)
                .bind(tenant.created_at)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists);
            }
            let to = serde_json::json!({"name": tenant.name, "settings": tenant.settings});
            audit(
                &mut tx,
                Some(&tenant.id),
                actor,
                "tenant.create",
                &tenant.id,
                None,
                Some(&to),
                tenant.created_at,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn list_tenants(&self) -> StoreFuture<'_, Vec<Tenant>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT * FROM tenants ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(tenant_row).collect()
        })
    }

    fn get_tenant<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Tenant>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT * FROM tenants WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(tenant_row).transpose()
        })
    }

    fn update_tenant_settings<'a>(
        &'a self,
        id: &'a str,
        settings: &'a TenantSettings,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, Tenant> {
        Box::pin(async move {
            let text = json_text(settings, "tenant settings")?;
            let mut tx = flows::begin_write(&self.pool).await?;
            let row = sqlx::query("SELECT * FROM tenants WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let mut tenant = tenant_row(&row.ok_or(StoreError::NotFound)?)?;
            sqlx::query("UPDATE tenants SET settings = ? WHERE id = ?")
                .bind(&text)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let from =
                serde_json::to_value(&tenant.settings).map_err(corrupt("tenant settings"))?;
            let to = serde_json::to_value(settings).map_err(corrupt("tenant settings"))?;
            audit(
                &mut tx,
                Some(id),
                actor,
                "tenant.settings",
                id,
                Some(&from),
                Some(&to),
                at,
            )
            .await?;
            tx.commit().await?;
            tenant.settings = settings.clone();
            Ok(tenant)
        })
    }

    fn count_keys(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
                .fetch_one(&self.pool)
                .await?;
            Ok(n.max(0) as u64)
        })
    }

    fn insert_key<'a>(
        &'a self,
        key: &'a ApiKey,
        secret_hash: &'a SecretHash,
        actor: Actor<'a>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = flows::begin_write(&self.pool).await?;
            if let Some(t) = &key.tenant {
                let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = ?")
                    .bind(t)
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    return Err(StoreError::NotFound);
                }
            }
            sqlx::query(
                "INSERT INTO api_keys (id, secret_hash, role, tenant_id, label, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&key.id)
            .bind(&secret_hash[..])
            .bind(key.role.as_str())
            .bind(&key.tenant)
            .bind(&key.label)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
            let to =
                serde_json::json!({"role": key.role, "tenant": key.tenant, "label": key.label});
            audit(
                &mut tx,
                key.tenant.as_deref(),
                actor,
                "key.create",
                &key.id,
                None,
                Some(&to),
                key.created_at,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn get_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(ApiKey, SecretHash)>> {
        Box::pin(async move {
            let Some(row) = sqlx::query("SELECT * FROM api_keys WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
            else {
                return Ok(None);
            };
            let hash: Vec<u8> = row.try_get("secret_hash")?;
            let hash: SecretHash = hash.try_into().map_err(|_| {
                StoreError::Database(sqlx::Error::ColumnDecode {
                    index: "secret_hash".into(),
                    source: "not 32 bytes".into(),
                })
            })?;
            Ok(Some((key_row(&row)?, hash)))
        })
    }

    fn list_keys<'a>(&'a self, tenant: Option<&'a str>) -> StoreFuture<'a, Vec<ApiKey>> {
        Box::pin(async move {
            let rows = match tenant {
                Some(t) => {
                    sqlx::query(
                        "SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id",
                    )
                    .bind(t)
                    .fetch_all(&self.pool)
                    .await?
                }
                None => {
                    sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")
                        .fetch_all(&self.pool)
                        .await?
                }
            };
            rows.iter().map(key_row).collect()
        })
    }

    fn revoke_key<'a>(
        &'a self,
        id: &'a str,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, ApiKey> {
        Box::pin(async move {
            let mut tx = flows::begin_write(&self.pool).await?;
            let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let mut key = key_row(&row.ok_or(StoreError::NotFound)?)?;
            if key.revoked_at.is_none() {
                sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ?")
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                audit(
                    &mut tx,
                    key.tenant.as_deref(),
                    actor,
                    "key.revoke",
                    id,
                    None,
                    None,
                    at,
                )
                .await?;
                key.revoked_at = Some(at);
            }
            tx.commit().await?;
            Ok(key)
        })
    }

    fn touch_key<'a>(&'a self, id: &'a str, at: UnixMs) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                .bind(at)
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn list_flows<'a>(
        &'a self,
        tenant: &'a str,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<FlowSummary>> {
        Box::pin(flows::list_flows(&self.pool, tenant, page))
    }

    fn get_flow<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
    ) -> StoreFuture<'a, Option<FlowSummary>> {
        Box::pin(flows::get_flow(&self.pool, tenant, flow_id))
    }

    fn get_draft<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
    ) -> StoreFuture<'a, Option<Draft>> {
        Box::pin(flows::get_draft(&self.pool, tenant, flow_id))
    }

    fn create_draft<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        document: &'a Value,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, Draft> {
        Box::pin(flows::create_draft(
            &self.pool, tenant, flow_id, document, actor, at,
        ))
    }

    fn update_draft<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        document: &'a Value,
        if_match: &'a str,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, Draft> {
        Box::pin(flows::update_draft(
            &self.pool, tenant, flow_id, document, if_match, actor, at,
        ))
    }

    fn delete_flow<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        if_match: Option<&'a str>,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, ()> {
        Box::pin(flows::delete_flow(
            &self.pool, tenant, flow_id, if_match, actor, at,
        ))
    }

    fn publish<'a>(&'a self, req: &'a PublishRequest<'a>) -> StoreFuture<'a, Version> {
        Box::pin(flows::publish(&self.pool, req))
    }

    fn rollback<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        version: u32,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, Version> {
        Box::pin(flows::rollback(
            &self.pool, tenant, flow_id, version, actor, at,
        ))
    }

    fn list_versions<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<VersionSummary>> {
        Box::pin(flows::list_versions(&self.pool, tenant, flow_id, page))
    }

    fn get_version<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        version: u32,
    ) -> StoreFuture<'a, Option<Version>> {
        Box::pin(flows::get_version(&self.pool, tenant, flow_id, version))
    }

    fn list_numbers<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<Number>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT * FROM numbers WHERE tenant_id = ? ORDER BY did")
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(number_row).collect()
        })
    }

    fn put_number<'a>(
        &'a self,
        tenant: &'a str,
        did: &'a str,
        flow_id: &'a str,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, Number> {
        Box::pin(async move {
            let mut tx = flows::begin_write(&self.pool).await?;
            let existing = sqlx::query("SELECT * FROM numbers WHERE did = ?")
                .bind(did)
                .fetch_optional(&mut *tx)
                .await?;
            let existing = existing.as_ref().map(number_row).transpose()?;
            if existing.as_ref().is_some_and(|n| n.tenant != tenant) {
                return Err(StoreError::NumberTaken);
            }
            let flow = sqlx::query("SELECT 1 FROM flows WHERE tenant_id = ? AND flow_id = ?")
                .bind(tenant)
                .bind(flow_id)
                .fetch_optional(&mut *tx)
                .await?;
            if flow.is_none() {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
                "INSERT INTO numbers (did, tenant_id, flow_id, updated_by, updated_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (did) DO UPDATE SET flow_id = excluded.flow_id, updated_by = excluded.updated_by,
                 updated_at = excluded.updated_at",
            )
            .bind(did)
            .bind(tenant)
            .bind(flow_id)
            .bind(actor)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            let from = existing
                .as_ref()
                .map(|n| serde_json::json!({"flow_id": n.flow_id}));
            let to = serde_json::json!({"flow_id": flow_id});
            audit(
                &mut tx,
                Some(tenant),
                actor,
                "number.put",
                did,
                from.as_ref(),
                Some(&to),
                at,
            )
            .await?;
            tx.commit().await?;
            Ok(Number {
                did: did.into(),
                tenant: tenant.into(),
                flow_id: flow_id.into(),
                updated_by: actor.into(),
                updated_at: at,
            })
        })
    }

    fn delete_number<'a>(
        &'a self,
        tenant: &'a str,
        did: &'a str,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = flows::begin_write(&self.pool).await?;
            let flow: Option<String> =
                sqlx::query_scalar("SELECT flow_id FROM numbers WHERE tenant_id = ? AND did = ?")
                    .bind(tenant)
                    .bind(did)
                    .fetch_optional(&mut *tx)
                    .await?;
            let flow = flow.ok_or(StoreError::NotFound)?;
            sqlx::query("DELETE FROM numbers WHERE tenant_id = ? AND did = ?")
                .bind(tenant)
                .bind(did)
                .execute(&mut *tx)
                .await?;
            let from = serde_json::json!({"flow_id": flow});
            audit(
                &mut tx,
                Some(tenant),
                actor,
                "number.delete",
                did,
                Some(&from),
                None,
                at,
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn save_call<'a>(&'a self, call: &'a CallRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let timeline = json_text(&call.timeline, "call timeline")?;
            sqlx::query(
                "INSERT INTO calls (tenant_id, id, did, caller, flow_id, version, started_at, ended_at, disposition, timeline)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (tenant_id, id) DO UPDATE SET ended_at = excluded.ended_at,
                 disposition = excluded.disposition, timeline = excluded.timeline",
            )
            .bind(&call.tenant)
            .bind(&call.id)
            .bind(&call.did)
            .bind(&call.caller)
            .bind(&call.flow_id)
            .bind(i64::from(call.version))
            .bind(call.started_at)
            .bind(call.ended_at)
            .bind(&call.disposition)
            .bind(&timeline)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn list_calls<'a>(
        &'a self,
        tenant: &'a str,
        did: Option<&'a str>,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallSummary>> {
        Box::pin(async move {
            let limit = page.effective_limit();
            // The cursor is the (started_at, id) of the last call shown.
            let (before_at, before_id) = page
                .cursor
                .as_deref()
                .and_then(decode_cursor)
                .and_then(|c| {
                    let (at, id) = c.split_once('.')?;
                    Some((at.parse::<i64>().ok()?, id.to_string()))
                })
                .unwrap_or((i64::MAX, String::new()));
            let first_page = page.cursor.is_none();
            let rows = match did {
                Some(did) => {
                    sqlx::query(
                        "SELECT * FROM calls WHERE tenant_id = ? AND did = ?
                         AND (? OR started_at < ? OR (started_at = ? AND id < ?))
                         ORDER BY started_at DESC, id DESC LIMIT ?",
                    )
                    .bind(tenant)
                    .bind(did)
                    .bind(first_page)
                    .bind(before_at)
                    .bind(before_at)
                    .bind(&before_id)
                    .bind(i64::from(limit) + 1)
                    .fetch_all(&self.pool)
                    .await?
                }
                None => {
                    sqlx::query(
                        "SELECT * FROM calls WHERE tenant_id = ?
                         AND (? OR started_at < ? OR (started_at = ? AND id < ?))
                         ORDER BY started_at DESC, id DESC LIMIT ?",
                    )
                    .bind(tenant)
                    .bind(first_page)
                    .bind(before_at)
                    .bind(before_at)
                    .bind(&before_id)
                    .bind(i64::from(limit) + 1)
                    .fetch_all(&self.pool)
                    .await?
                }
            };
            let items = rows
                .iter()
                .map(call_summary_row)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(paginate(items, limit, |c| {
                format!("{}.{}", c.started_at, c.id)
            }))
        })
    }

    fn get_call<'a>(&'a self, tenant: &'a str, id: &'a str) -> StoreFuture<'a, Option<CallRecord>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT * FROM calls WHERE tenant_id = ? AND id = ?")
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            let Some(row) = row else { return Ok(None) };
            let s = call_summary_row(&row)?;
            let timeline: String = row.try_get("timeline")?;
            Ok(Some(CallRecord {
                tenant: row.try_get("tenant_id")?,
                id: s.id,
                did: s.did,
                caller: s.caller,
                flow_id: s.flow_id,
                version: s.version,
                started_at: s.started_at,
                ended_at: s.ended_at,
                disposition: s.disposition,
                timeline: serde_json::from_str(&timeline).map_err(corrupt("call timeline"))?,
            }))
        })
    }

    fn list_audit<'a>(
        &'a self,
        tenant: Option<&'a str>,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<AuditEntry>> {
        Box::pin(async move {
            let limit = page.effective_limit();
            let before: i64 = page
                .cursor
                .as_deref()
                .and_then(decode_cursor)
                .and_then(|c| c.parse().ok())
                .unwrap_or(i64::MAX);
            let rows = sqlx::query(
                "SELECT * FROM audit_log WHERE tenant_id IS ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            )
            .bind(tenant)
            .bind(before)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
            let items = rows.iter().map(audit_row).collect::<Result<Vec<_>, _>>()?;
            Ok(paginate(items, limit, |a| a.seq.to_string()))
        })
    }

    fn get_policy<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Option<StoredPolicy>> {
        Box::pin(policy::get_policy(&self.pool, tenant))
    }

    fn list_policies(&self) -> StoreFuture<'_, Vec<StoredPolicy>> {
        Box::pin(policy::list_policies(&self.pool))
    }

    fn put_policy<'a>(&'a self, write: &'a PolicyWrite<'a>) -> StoreFuture<'a, StoredPolicy> {
        Box::pin(policy::put_policy(&self.pool, write))
    }

    fn list_audit_action<'a>(
        &'a self,
        tenant: &'a str,
        action: &'a str,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<AuditEntry>> {
        Box::pin(policy::list_audit_action(&self.pool, tenant, action, page))
    }

    fn load_live(&self) -> StoreFuture<'_, LiveState> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            // One read transaction, so the three lists agree.
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let tenants = sqlx::query("SELECT * FROM tenants ORDER BY id")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| tenant_row(r).map(|t| (t.id, t.settings)))
                .collect::<Result<Vec<_>, _>>()?;
            let numbers = sqlx::query("SELECT * FROM numbers ORDER BY did")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(number_row)
                .collect::<Result<Vec<_>, _>>()?;
            let flows = sqlx::query(
                "SELECT v.* FROM flows f JOIN flow_versions v
                 ON v.tenant_id = f.tenant_id AND v.flow_id = f.flow_id AND v.version = f.live_version",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                version_row(r).map(|v| LiveFlowRecord {
                    tenant: v.tenant,
                    flow_id: v.flow_id,
                    version: v.version,
                    document: v.document,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
            tx.commit().await?;
            Ok(LiveState {
                tenants,
                numbers,
                flows,
            })
        })
    }
}
