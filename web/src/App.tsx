import { useCallback, useEffect, useState } from "react";
import { api, ApiError, storedKey, storeKey, when, type FlowSummary, type Tenant } from "./api";
import { Editor } from "./Editor";

export function App() {
  const [signedIn, setSignedIn] = useState(storedKey() !== null);
  const [tenants, setTenants] = useState<Tenant[]>([]);
  const [tenant, setTenant] = useState<string>("");
  const [flow, setFlow] = useState<string | null>(null);
  const [error, setError] = useState<string>("");

  const loadTenants = useCallback(async () => {
    try {
      const list = await api.tenants();
      setTenants(list);
      setTenant((cur) => cur || list[0]?.id || "");
      setSignedIn(true);
      setError("");
    } catch (e) {
      storeKey(null);
      setSignedIn(false);
      setError(e instanceof ApiError && e.status === 401 ? "That API key was not accepted." : String(e));
    }
  }, []);

  useEffect(() => {
    if (signedIn) void loadTenants();
  }, [signedIn, loadTenants]);

  if (!signedIn) return <SignIn error={error} onKey={(k) => { storeKey(k); void loadTenants(); }} />;

  return (
    <div className="app">
      <header className="top">
        <h1>voxgate canvas</h1>
        <label>
          Tenant{" "}
          <select value={tenant} onChange={(e) => { setTenant(e.target.value); setFlow(null); }}>
            {tenants.map((t) => (
              <option key={t.id} value={t.id}>{t.name} ({t.id})</option>
            ))}
          </select>
        </label>
        {flow && <button onClick={() => setFlow(null)}>All flows</button>}
        <button onClick={() => { storeKey(null); setSignedIn(false); setFlow(null); }}>Sign out</button>
      </header>
      {error && <p role="alert" className="error">{error}</p>}
      {!tenant && <p className="empty">This key sees no tenant yet. An admin creates one with <code>POST /v1/tenants</code>.</p>}
      {tenant && !flow && <FlowList tenant={tenant} onOpen={setFlow} />}
      {tenant && flow && <Editor key={`${tenant}/${flow}`} tenant={tenant} flowId={flow} />}
    </div>
  );
}

function SignIn({ error, onKey }: { error: string; onKey: (key: string) => void }) {
  const [key, setKey] = useState("");
  return (
    <main className="signin">
      <h1>voxgate canvas</h1>
      <form onSubmit={(e) => { e.preventDefault(); if (key.trim()) onKey(key.trim()); }}>
        <label htmlFor="api-key">API key</label>
        <input id="api-key" type="password" autoComplete="off" value={key} onChange={(e) => setKey(e.target.value)} autoFocus />
        <button type="submit">Sign in</button>
        <p className="hint">The key is kept in this tab only (session storage).</p>
        {error && <p role="alert" className="error">{error}</p>}
      </form>
    </main>
  );
}

function FlowList({ tenant, onOpen }: { tenant: string; onOpen: (flow: string) => void }) {
  const [flows, setFlows] = useState<FlowSummary[] | null>(null);
  const [newId, setNewId] = useState("");
  const [error, setError] = useState("");

  const load = useCallback(async () => {
    try {
      setFlows((await api.flows(tenant)).items);
    } catch (e) {
      setError(String(e));
    }
  }, [tenant]);
  useEffect(() => { void load(); }, [load]);

  const create = async () => {
    const id = newId.trim();
    if (!id) return;
    try {
      await api.createFlow(tenant, { id, name: id, entry: "", nodes: {} });
      onOpen(id);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    }
  };

  return (
    <main className="flows">
      <h2>Flows of {tenant}</h2>
      <form className="row" onSubmit={(e) => { e.preventDefault(); void create(); }}>
        <label htmlFor="new-flow">New flow id</label>
        <input id="new-flow" value={newId} onChange={(e) => setNewId(e.target.value)} pattern="[A-Za-z0-9_\-]{1,64}" />
        <button type="submit">Create flow</button>
      </form>
      {error && <p role="alert" className="error">{error}</p>}
      {flows === null ? <p>Loading…</p> : flows.length === 0 ? <p className="empty">No flows yet.</p> : (
        <table>
          <thead>
            <tr><th>Flow</th><th>Name</th><th>Live version</th><th>Published by</th><th>When</th><th></th></tr>
          </thead>
          <tbody>
            {flows.map((f) => (
              <tr key={f.flow_id} data-flow={f.flow_id}>
                <td>{f.flow_id}</td>
                <td>{f.name ?? ""}</td>
                <td>{f.live ? `v${f.live.version}` : "not published"}</td>
                <td>{f.live?.by ?? ""}</td>
                <td>{f.live ? when(f.live.at) : ""}</td>
                <td><button onClick={() => onOpen(f.flow_id)} aria-label={`Open ${f.flow_id}`}>Open</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}
