import { useCallback, useEffect, useState } from "react";
import { api, when, type VersionSummary } from "./api";

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
      {items.length === 0 ? <p className="hint">Not published yet.</p> : (
        <ol className="version-list">
          {items.map((v) => (
            <li key={v.version} data-version={v.version} className={v.live ? "live" : ""}>
              <div>
                <strong>v{v.version}</strong> {v.live && <span className="badge">live</span>} {v.author}, {when(v.created_at)}
              </div>
              {v.comment && <div className="comment">{v.comment}</div>}
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
