-- voxgate-flows schema, version 1. Times are milliseconds since the Unix epoch.
-- Every table but tenants and api_keys is keyed by tenant first: every
-- query names the tenant, and the indexes serve exactly that.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    settings    TEXT NOT NULL,            -- TenantSettings as JSON
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY NOT NULL, -- public part of the token
    secret_hash BLOB NOT NULL,             -- SHA-256 of the secret part
    role        TEXT NOT NULL,
    tenant_id   TEXT REFERENCES tenants(id),
    label       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at  INTEGER
);

CREATE TABLE flows (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    flow_id      TEXT NOT NULL,
    draft        TEXT NOT NULL,            -- the draft document as JSON
    etag         TEXT NOT NULL,
    updated_by   TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    live_version INTEGER,                  -- NULL: never published
    live_by      TEXT,
    live_at      INTEGER,
    PRIMARY KEY (tenant_id, flow_id)
);

CREATE TABLE flow_versions (
    tenant_id   TEXT NOT NULL,
    flow_id     TEXT NOT NULL,
    version     INTEGER NOT NULL,
    document    TEXT NOT NULL,
    author      TEXT NOT NULL,
    comment     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, flow_id, version),
    FOREIGN KEY (tenant_id, flow_id) REFERENCES flows(tenant_id, flow_id) ON DELETE CASCADE
);

CREATE TABLE numbers (
    did         TEXT PRIMARY KEY NOT NULL, -- a DID belongs to one tenant
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    flow_id     TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, flow_id) REFERENCES flows(tenant_id, flow_id)
);
CREATE INDEX numbers_by_tenant ON numbers (tenant_id, did);

CREATE TABLE calls (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    id          TEXT NOT NULL,
    did         TEXT NOT NULL,
    caller      TEXT NOT NULL,
    flow_id     TEXT NOT NULL,
    version     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    disposition TEXT,
    timeline    TEXT NOT NULL,             -- JSON list of interpreter steps
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX calls_newest ON calls (tenant_id, started_at DESC, id DESC);
CREATE INDEX calls_by_did ON calls (tenant_id, did, started_at DESC, id DESC);

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT,                      -- NULL for operator-wide events
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object      TEXT NOT NULL,
    from_value  TEXT,                      -- JSON
    to_value    TEXT,                      -- JSON
    at          INTEGER NOT NULL
);
CREATE INDEX audit_by_tenant ON audit_log (tenant_id, seq DESC);
