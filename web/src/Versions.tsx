import { useCallback, useEffect, useState } from "react";
import { api, when, type FlowDiff, type VersionSummary } from "./api";

interface Props {
  tenant: string;
  flowId: string;
  tick: number;
  issues: number;
  onPublish: (comment: string) => Promise<void>;
}

/** Publish with a comment; the versions, newest first, each one a click
 *  away from being live again. */
export function Versions({ tenant, flowId, tick, issues, onPublish }: Props) {
  const [items, setItems] = useState<VersionSummary[]>([]);
  const [comment, setComment] = useState("");
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState("");
  const [diff, setDiff] = useState<{ title: string; diff: FlowDiff } | null>(null);

  const showDiff = async (from: string, to: string, title: string) => {
    try {
      setDiff({ title, diff: await api.diff(tenant, flowId, from, to) });
    } catch (e) {
      setMessage(`No diff: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  const load = useCallback(async () => {
    try {
      setItems((await api.versions(tenant, flowId)).items);
    } catch (e) {
      setMessage(String(e));
    }
  }, [tenant, flowId]);
  useEffect(() => { void load(); }, [load, tick]);

  const rollback = async (v: number) => {
    setBusy(true);
    try {
      const r = await api.rollback(tenant, flowId, v);
      setMessage(`Version ${r.live_version} is live again.`);
      await load();
    } catch (e) {
      setMessage(`Roll back failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="versions" aria-label="Publish and versions">
      <h2>Publish</h2>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          await onPublish(comment);
          setComment("");
          setBusy(false);
        }}
      >
        <label htmlFor="publish-comment">What changed</label>
        <input id="publish-comment" value={comment} onChange={(e) => setComment(e.target.value)} />
        <button type="submit" disabled={busy}>Publish</button>
        {issues > 0 && <p className="hint">{issues} error(s) to fix before this can go live.</p>}
      </form>
      <h2>Versions</h2>
      {message && <p role="status">{message}</p>}
      {items.some((v) => v.live) && (
        <button onClick={() => void showDiff("live", "draft", "Draft compared with the live version")}>Compare draft with live</button>
      )}
      {diff && <DiffView title={diff.title} diff={diff.diff} onClose={() => setDiff(null)} />}
      {items.length === 0 ? <p className="hint">Not published yet.</p> : (
        <ol className="version-list">
          {items.map((v) => (
            <li key={v.version} data-version={v.version} className={v.live ? "live" : ""}>
              <div>
                <strong>v{v.version}</strong> {v.live && <span className="badge">live</span>} {v.author}, {when(v.created_at)}
              </div>
              {v.comment && <div className="comment">{v.comment}</div>}
              {v.version > 1 && (
                <button onClick={() => void showDiff(String(v.version - 1), String(v.version), `Changes in v${v.version}`)} aria-label={`Show changes in version ${v.version}`}>
                  Changes
                </button>
              )}{" "}
              {!v.live && (
                <button disabled={busy} onClick={() => void rollback(v.version)} aria-label={`Roll back to version ${v.version}`}>
                  Roll back to v{v.version}
                </button>
              )}
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

function DiffView({ title, diff, onClose }: { title: string; diff: FlowDiff; onClose: () => void }) {
  const lines: string[] = [];
  if (diff.name) lines.push(`name: ${JSON.stringify(diff.name.from)} → ${JSON.stringify(diff.name.to)}`);
  if (diff.entry) lines.push(`start node: ${JSON.stringify(diff.entry.from)} → ${JSON.stringify(diff.entry.to)}`);
  for (const id of diff.nodes_added) lines.push(`added ${id}`);
  for (const id of diff.nodes_removed) lines.push(`removed ${id}`);
  for (const c of diff.nodes_changed) {
    const what = [...c.fields.filter((f) => f !== "edges"), ...(c.edges ?? []).map((e) => `edge ${e}`)];
    lines.push(`${c.id}: ${what.join(", ")}${c.layout_only ? " (layout only)" : ""}`);
  }
  return (
    <div className="diff" role="region" aria-label={title}>
      <h3>{title}</h3>
      {lines.length === 0 ? <p className="hint">No differences.</p> : <ul>{lines.map((l, i) => <li key={i}>{l}</li>)}</ul>}
      <button onClick={onClose}>Close</button>
    </div>
  );
}
