// The /v1 API of the same voxgate that serves this page.

export interface Issue {
  node?: string;
  path: string;
  code: string;
  message: string;
}

export interface LivePointer {
  version: number;
  by: string;
  at: number;
}

export interface FlowSummary {
  flow_id: string;
  name: string | null;
  etag: string;
  updated_by: string;
  updated_at: number;
  live: LivePointer | null;
}

export interface Tenant {
  id: string;
  name: string;
}

export interface VersionSummary {
  version: number;
  author: string;
  comment: string;
  created_at: number;
  live: boolean;
}

export interface FlowDiff {
  entry?: { from: unknown; to: unknown };
  name?: { from: unknown; to: unknown };
  nodes_added: string[];
  nodes_removed: string[];
  nodes_changed: { id: string; fields: string[]; edges?: string[]; layout_only: boolean }[];
}

export interface FlowNodeDoc {
  type: string;
  position?: { x: number; y: number };
  label?: string;
  edges?: Record<string, string>;
  [param: string]: unknown;
}

export interface FlowDoc {
  id: string;
  name: string;
  entry: string;
  nodes: Record<string, FlowNodeDoc>;
}

export interface Draft {
  flow_id: string;
  etag: string;
  updated_by: string;
  updated_at: number;
  live: LivePointer | null;
  document: FlowDoc;
}

/** An answer other than 2xx, with the RFC 7807 problem when there is one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string | undefined,
    readonly errors: Issue[],
  ) {
    super(detail ?? title);
  }
}

const KEY = "voxgate.apiKey";

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function storeKey(key: string | null): void {
  if (key === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, key);
}

async function call<T>(method: string, path: string, body?: unknown, ifMatch?: string): Promise<T> {
  const headers: Record<string, string> = { Authorization: `Bearer ${storedKey() ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (ifMatch !== undefined) headers["If-Match"] = `"${ifMatch}"`;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : undefined;
  if (!res.ok) {
    throw new ApiError(res.status, json?.title ?? res.statusText, json?.detail, json?.errors ?? []);
  }
  return json as T;
}

const t = (tenant: string) => `/v1/tenants/${encodeURIComponent(tenant)}`;
const f = (tenant: string, flow: string) => `${t(tenant)}/flows/${encodeURIComponent(flow)}`;

export const api = {
  tenants: () => call<Tenant[]>("GET", "/v1/tenants"),
  flows: (tenant: string) => call<{ items: FlowSummary[] }>("GET", `${t(tenant)}/flows?limit=200`),
  createFlow: (tenant: string, doc: FlowDoc) => call<Draft>("POST", `${t(tenant)}/flows`, doc),
  draft: (tenant: string, flow: string) => call<Draft>("GET", f(tenant, flow)),
  saveDraft: (tenant: string, flow: string, doc: FlowDoc, etag: string) =>
    call<Draft>("PUT", f(tenant, flow), doc, etag),
  validate: (tenant: string, flow: string, doc: FlowDoc) =>
    call<{ valid: boolean; errors: Issue[]; warnings: Issue[] }>("POST", `${f(tenant, flow)}/validate`, doc),
  publish: (tenant: string, flow: string, comment: string, etag: string) =>
    call<{ version: number; warnings: Issue[] }>("POST", `${f(tenant, flow)}/publish`, { comment }, etag),
  versions: (tenant: string, flow: string) =>
    call<{ items: VersionSummary[] }>("GET", `${f(tenant, flow)}/versions?limit=200`),
  diff: (tenant: string, flow: string, from: string, to: string) =>
    call<FlowDiff>("GET", `${f(tenant, flow)}/diff?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`),
  rollback: (tenant: string, flow: string, version: number) =>
    call<{ live_version: number }>("POST", `${f(tenant, flow)}/rollback`, { version }),
};

export function when(ms: number): string {
  return new Date(ms).toLocaleString();
}
