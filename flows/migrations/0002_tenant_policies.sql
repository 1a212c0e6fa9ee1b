-- voxgate-flows schema, version 2: per-tenant NOC policies.
-- One row per tenant that has a policy of its own; a tenant without one
-- runs with the orchestrator's defaults. The document is stored as the
-- orchestrator normalized it (every field present), so what runs is what
-- is stored. Every change is also in audit_log (action `policy.put`) with
-- the whole document before and after.

CREATE TABLE tenant_policies (
    tenant_id   TEXT PRIMARY KEY NOT NULL REFERENCES tenants(id),
    document    TEXT NOT NULL,            -- the policy as JSON
    version     INTEGER NOT NULL,         -- 1 for the first stored policy
    etag        TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- The policy audit trail is one tenant's entries of one action.
CREATE INDEX audit_by_tenant_action ON audit_log (tenant_id, action, seq DESC);
