//! Row mapping and small helpers shared by the SQLite store's queries.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::super::keys;
use super::super::*;

pub(super) fn corrupt(what: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |source| StoreError::Corrupt { what, source }
}

pub(super) fn json_text(
    value: &impl serde::Serialize,
    what: &'static str,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt(what))
}

pub(super) fn u32_col(row: &SqliteRow, col: &str) -> Result<u32, StoreError> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| {
        StoreError::Database(sqlx::Error::ColumnDecode {
            index: col.to_string(),
            source: format!("{v} is not a version number").into(),
        })
    })
}

/// The next ETag: a hash chained over the previous one and the document,
/// so every save changes it and equal ETags mean equal content.
pub(super) fn next_etag(previous: &str, document: &str) -> String {
    let mut h = Sha256::new();
    h.update(previous.as_bytes());
    h.update(b"\n");
    h.update(document.as_bytes());
    keys::to_hex(&h.finalize()[..8])
}

/// Cursors are opaque to clients; hex keeps them URL-safe.
pub(super) fn encode_cursor(s: &str) -> String {
    keys::to_hex(s.as_bytes())
}

pub(super) fn decode_cursor(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Splits rows fetched with `limit + 1` into a page.
pub(super) fn paginate<T>(
    mut items: Vec<T>,
    limit: u32,
    cursor_of: impl Fn(&T) -> String,
) -> Page<T> {
    let limit = limit as usize;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| encode_cursor(&cursor_of(last)))
    } else {
        None
    };
    Page { items, next }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn audit(
    conn: &mut SqliteConnection,
    tenant: Option<&str>,
    actor: &str,
    action: &str,
    object: &str,
    from: Option<&Value>,
    to: Option<&Value>,
    at: UnixMs,
) -> Result<(), StoreError> {
    let from = from.map(|v| json_text(v, "audit value")).transpose()?;
    let to = to.map(|v| json_text(v, "audit value")).transpose()?;
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor, action, object, from_value, to_value, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant)
    .bind(actor)
    .bind(action)
    .bind(object)
    .bind(from)
    .bind(to)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) fn tenant_row(row: &SqliteRow) -> Result<Tenant, StoreError> {
    let settings: String = row.try_get("settings")?;
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        settings: serde_json::from_str(&settings).map_err(corrupt("tenant settings"))?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn key_row(row: &SqliteRow) -> Result<ApiKey, StoreError> {
    let role: String = row.try_get("role")?;
    let role = Role::parse(&role).ok_or_else(|| {
        StoreError::Database(sqlx::Error::ColumnDecode {
            index: "role".into(),
            source: format!("unknown role {role}").into(),
        })
    })?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        role,
        tenant: row.try_get("tenant_id")?,
        label: row.try_get("label")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

pub(super) fn draft_row(row: &SqliteRow) -> Result<Draft, StoreError> {
    let doc: String = row.try_get("draft")?;
    Ok(Draft {
        tenant: row.try_get("tenant_id")?,
        flow_id: row.try_get("flow_id")?,
        document: serde_json::from_str(&doc).map_err(corrupt("draft"))?,
        etag: row.try_get("etag")?,
        updated_by: row.try_get("updated_by")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) fn flow_summary_row(row: &SqliteRow) -> Result<FlowSummary, StoreError> {
    let doc: String = row.try_get("draft")?;
    let name = serde_json::from_str::<Value>(&doc)
        .ok()
        .and_then(|v| v.get("name").and_then(Value::as_str).map(String::from));
    let live_version: Option<i64> = row.try_get("live_version")?;
    let live = match live_version {
        Some(_) => Some(LivePointer {
            version: u32_col(row, "live_version")?,
            by: row
                .try_get::<Option<String>, _>("live_by")?
                .unwrap_or_default(),
            at: row
                .try_get::<Option<i64>, _>("live_at")?
                .unwrap_or_default(),
        }),
        None => None,
    };
    Ok(FlowSummary {
        flow_id: row.try_get("flow_id")?,
        name,
        etag: row.try_get("etag")?,
        updated_by: row.try_get("updated_by")?,
        updated_at: row.try_get("updated_at")?,
        live,
    })
}

pub(super) fn version_row(row: &SqliteRow) -> Result<Version, StoreError> {
    let doc: String = row.try_get("document")?;
    Ok(Version {
        tenant: row.try_get("tenant_id")?,
        flow_id: row.try_get("flow_id")?,
        version: u32_col(row, "version")?,
        document: serde_json::from_str(&doc).map_err(corrupt("version"))?,
        author: row.try_get("author")?,
        comment: row.try_get("comment")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn number_row(row: &SqliteRow) -> Result<Number, StoreError> {
    Ok(Number {
        did: row.try_get("did")?,
        tenant: row.try_get("tenant_id")?,
        flow_id: row.try_get("flow_id")?,
        updated_by: row.try_get("updated_by")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) fn call_summary_row(row: &SqliteRow) -> Result<CallSummary, StoreError> {
    Ok(CallSummary {
        id: row.try_get("id")?,
        did: row.try_get("did")?,
        caller: row.try_get("caller")?,
        flow_id: row.try_get("flow_id")?,
        version: u32_col(row, "version")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        disposition: row.try_get("disposition")?,
    })
}

pub(super) fn audit_row(row: &SqliteRow) -> Result<AuditEntry, StoreError> {
    let parse = |col: &str| -> Result<Option<Value>, StoreError> {
        let text: Option<String> = row.try_get(col)?;
        text.map(|t| serde_json::from_str(&t).map_err(corrupt("audit value")))
            .transpose()
    };
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        tenant: row.try_get("tenant_id")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        object: row.try_get("object")?,
        from: parse("from_value")?,
        to: parse("to_value")?,
        at: row.try_get("at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for s in ["", "support", "1700000000000.call@host;x=1"] {
            assert_eq!(decode_cursor(&encode_cursor(s)).as_deref(), Some(s));
        }
        assert_eq!(decode_cursor("zz"), None);
        assert_eq!(decode_cursor("abc"), None);
    }

    #[test]
    fn etags_change_with_history_and_content() {
        let a = next_etag("", "{}");
        assert_ne!(a, next_etag(&a, "{}"));
        assert_ne!(a, next_etag("", "{\"a\":1}"));
        assert_eq!(a, next_etag("", "{}"));
    }
}
