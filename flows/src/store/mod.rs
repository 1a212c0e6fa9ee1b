//! Where tenants, keys, flows, versions, numbers, calls, NOC policies and
//! the audit log are kept.
//!
//! [`Store`] is the small async interface the API and the live table use;
//! [`SqliteStore`] is its embedded implementation (one file in the data
//! dir, WAL, `synchronous=FULL`, so an answered publish survives kill -9).
//! A PostgreSQL store would be a second implementation of the same trait.
//!
//! Every query that touches a tenant's objects names the tenant: there is
//! no method that reads a flow, a number or a call by id alone.
//!
//! Times are [`UnixMs`] passed in by the caller: the store never reads
//! the clock.

pub mod keys;
mod sqlite;
mod types;

use std::future::Future;
use std::pin::Pin;

pub use sqlite::SqliteStore;
pub use types::*;

/// Milliseconds since the Unix epoch.
pub type UnixMs = i64;

/// A boxed future, so that `Store` can be used as `dyn Store`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such object")]
    NotFound,
    #[error("an object with this id already exists")]
    AlreadyExists,
    /// The draft changed since the caller read it.
    #[error("the draft changed since it was read (now {current})")]
    EtagMismatch { current: String },
    /// The DID is routed by another tenant.
    #[error("this number belongs to another tenant")]
    NumberTaken,
    /// The flow cannot be deleted while numbers route to it.
    #[error("numbers still route to this flow: {numbers:?}")]
    FlowInUse { numbers: Vec<String> },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored JSON column does not read back.
    #[error("stored {what} does not read back: {source}")]
    Corrupt {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// Who did something, for the audit log and `updated_by` columns.
pub type Actor<'a> = &'a str;

/// The storage interface. Implementations must make each write durable
/// before its future resolves.
pub trait Store: Send + Sync {
    // Tenants.
    fn create_tenant<'a>(&'a self, tenant: &'a Tenant, actor: Actor<'a>) -> StoreFuture<'a, ()>;
    fn list_tenants(&self) -> StoreFuture<'_, Vec<Tenant>>;
    fn get_tenant<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Tenant>>;
    /// Replaces the tenant's settings and records the change.
    fn update_tenant_settings<'a>(
        &'a self,
        id: &'a str,
        settings: &'a TenantSettings,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, Tenant>;

    // API keys.
    fn count_keys(&self) -> StoreFuture<'_, u64>;
    fn insert_key<'a>(
        &'a self,
        key: &'a ApiKey,
        secret_hash: &'a keys::SecretHash,
        actor: Actor<'a>,
    ) -> StoreFuture<'a, ()>;
    /// The key and its secret hash, revoked or not.
    fn get_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(ApiKey, keys::SecretHash)>>;
    /// All keys, or those of one tenant.
    fn list_keys<'a>(&'a self, tenant: Option<&'a str>) -> StoreFuture<'a, Vec<ApiKey>>;
    fn revoke_key<'a>(
        &'a self,
        id: &'a str,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, ApiKey>;
    fn touch_key<'a>(&'a self, id: &'a str, at: UnixMs) -> StoreFuture<'a, ()>;

    // Flows and drafts.
    fn list_flows<'a>(
        &'a self,
        tenant: &'a str,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<FlowSummary>>;
    fn get_flow<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
    ) -> StoreFuture<'a, Option<FlowSummary>>;
    fn get_draft<'a>(&'a self, tenant: &'a str, flow_id: &'a str)
        -> StoreFuture<'a, Option<Draft>>;
    /// A new flow with its first draft; `AlreadyExists` if the id is taken.
    fn create_draft<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        document: &'a serde_json::Value,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, Draft>;
    /// Replaces the draft if its ETag is still `if_match`.
    fn update_draft<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        document: &'a serde_json::Value,
        if_match: &'a str,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, Draft>;
    /// Deletes the flow with its versions; refused while numbers route to it.
    fn delete_flow<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        if_match: Option<&'a str>,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, ()>;
    /// In one transaction: checks the draft's ETag (when given), inserts
    /// the next version with `document`, moves the live pointer to it and
    /// records the event.
    fn publish<'a>(&'a self, req: &'a PublishRequest<'a>) -> StoreFuture<'a, Version>;
    /// Moves the live pointer to an existing version and records the event.
    fn rollback<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        version: u32,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, Version>;
    fn list_versions<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<VersionSummary>>;
    fn get_version<'a>(
        &'a self,
        tenant: &'a str,
        flow_id: &'a str,
        version: u32,
    ) -> StoreFuture<'a, Option<Version>>;

    // Numbers.
    fn list_numbers<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<Number>>;
    /// Routes `did` to a flow of the tenant; `NumberTaken` if another
    /// tenant has it, `NotFound` if the flow does not exist.
    fn put_number<'a>(
        &'a self,
        tenant: &'a str,
        did: &'a str,
        flow_id: &'a str,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, Number>;
    fn delete_number<'a>(
        &'a self,
        tenant: &'a str,
        did: &'a str,
        actor: Actor<'a>,
        at: UnixMs,
    ) -> StoreFuture<'a, ()>;

    // Calls.
    /// Inserts or replaces a call record (the driver saves it when the
    /// call starts and again when it ends).
    fn save_call<'a>(&'a self, call: &'a CallRecord) -> StoreFuture<'a, ()>;
    /// Newest first, optionally for one DID.
    fn list_calls<'a>(
        &'a self,
        tenant: &'a str,
        did: Option<&'a str>,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<CallSummary>>;
    fn get_call<'a>(&'a self, tenant: &'a str, id: &'a str) -> StoreFuture<'a, Option<CallRecord>>;

    // NOC policies.
    /// The tenant's own policy; `None` while it runs with the defaults.
    fn get_policy<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Option<StoredPolicy>>;
    /// Every stored policy, to put them in force at startup.
    fn list_policies(&self) -> StoreFuture<'_, Vec<StoredPolicy>>;
    /// In one transaction: checks the ETag (when given), stores the policy
    /// as the next version and appends a `policy.put` audit entry with the
    /// whole document before and after. Storing the document already
    /// stored changes nothing and is not audited. `NotFound` when the
    /// tenant does not exist.
    fn put_policy<'a>(&'a self, write: &'a PolicyWrite<'a>) -> StoreFuture<'a, StoredPolicy>;

    // Audit.
    /// Newest first; `None` lists operator-wide events.
    fn list_audit<'a>(
        &'a self,
        tenant: Option<&'a str>,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<AuditEntry>>;

    /// Newest first: one tenant's entries of one `action`.
    fn list_audit_action<'a>(
        &'a self,
        tenant: &'a str,
        action: &'a str,
        page: &'a PageRequest,
    ) -> StoreFuture<'a, Page<AuditEntry>>;

    /// Everything the live table needs: every tenant's settings, every
    /// number and every flow's live version.
    fn load_live(&self) -> StoreFuture<'_, LiveState>;
}

/// Creates an admin key when the store has no key at all, and returns the
/// token (to be printed once). `None` when keys exist.
pub async fn bootstrap(store: &dyn Store, at: UnixMs) -> Result<Option<String>, StoreError> {
    if store.count_keys().await? > 0 {
        return Ok(None);
    }
    let token = keys::generate();
    let key = ApiKey {
        id: token.id.clone(),
        role: Role::Admin,
        tenant: None,
        label: "bootstrap admin".into(),
        created_at: at,
        last_used_at: None,
        revoked_at: None,
    };
    store
        .insert_key(&key, &token.secret_hash, "bootstrap")
        .await?;
    Ok(Some(token.token))
}
