import { useState } from "react";
import type { Edge } from "@xyflow/react";
import type { FlowNode, NodeData } from "./FlowNode";
import { typeInfo, type Field, type Params } from "./nodeTypes";

interface Props {
  node: FlowNode;
  isEntry: boolean;
  nodeIds: string[];
  outcomes: string[];
  edges: Edge[];
  onChange: (data: Partial<NodeData>) => void;
  onEntry: () => void;
  onEdge: (outcome: string, target: string) => void;
  onDelete: () => void;
}

/** The form of one node: its parameters, and its outcomes as selects, so
 *  a flow can be wired without a mouse too. */
export function PropertyPanel({ node, isEntry, nodeIds, outcomes, edges, onChange, onEntry, onEdge, onDelete }: Props) {
  const info = typeInfo(node.data.nodeType);
  const p = node.data.params;
  const setParam = (key: string, value: unknown) => {
    const next: Params = { ...p };
    if (value === undefined) delete next[key];
    else next[key] = value;
    onChange({ params: next });
  };
  const fid = (key: string) => `prop-${node.id}-${key}`;
  return (
    <section className="props" aria-label={`Properties of ${node.id}`}>
      <h2>
        {info?.title ?? node.data.nodeType} <code>{node.id}</code>
      </h2>
      <div className="field">
        <label htmlFor={fid("label")}>Label</label>
        <input id={fid("label")} value={node.data.label ?? ""} onChange={(e) => onChange({ label: e.target.value || undefined })} />
      </div>
      {info?.fields.map((f) => (
        <FieldInput key={f.key} id={fid(f.key)} field={f} value={p[f.key]} onChange={(v) => setParam(f.key, v)} />
      ))}
      {node.data.errors.length > 0 && (
        <ul className="node-errors" aria-label="Errors on this node">
          {node.data.errors.map((e, i) => (
            <li key={i}>{e}</li>
          ))}
        </ul>
      )}
      {outcomes.length > 0 && (
        <fieldset>
          <legend>Outcomes</legend>
          {outcomes.map((o) => (
            <div className="field" key={o}>
              <label htmlFor={fid(`edge-${o}`)}>{o} →</label>
              <select id={fid(`edge-${o}`)} value={edges.find((e) => e.sourceHandle === o)?.target ?? ""} onChange={(e) => onEdge(o, e.target.value)}>
                <option value="">(not connected)</option>
                {nodeIds.filter((id) => id !== node.id).map((id) => (
                  <option key={id} value={id}>{id}</option>
                ))}
              </select>
            </div>
          ))}
        </fieldset>
      )}
      <div className="row">
        <button onClick={onEntry} disabled={isEntry}>{isEntry ? "This is the start node" : "Start calls here"}</button>
        <button onClick={onDelete} className="danger">Delete node</button>
      </div>
    </section>
  );
}

function FieldInput({ id, field, value, onChange }: { id: string; field: Field; value: unknown; onChange: (v: unknown) => void }) {
  switch (field.kind) {
    case "number":
      return (
        <div className="field">
          <label htmlFor={id}>{field.label}</label>
          <input id={id} type="number" value={typeof value === "number" ? value : ""} onChange={(e) => onChange(e.target.value === "" ? undefined : Number(e.target.value))} />
        </div>
      );
    case "select":
      return (
        <div className="field">
          <label htmlFor={id}>{field.label}</label>
          <select id={id} value={String(value ?? field.options?.[0] ?? "")} onChange={(e) => onChange(e.target.value)}>
            {field.options?.map((o) => <option key={o} value={o}>{o}</option>)}
          </select>
        </div>
      );
    case "prompt": {
      const say = value && typeof value === "object" && "say" in value ? String((value as { say: unknown }).say) : "";
      return (
        <div className="field">
          <label htmlFor={id}>{field.label}</label>
          <input id={id} value={say} onChange={(e) => onChange({ say: e.target.value })} />
        </div>
      );
    }
    case "list":
      return <ListInput id={id} label={field.label} value={value} onChange={onChange} />;
    case "json":
      return <JsonInput id={id} label={field.label} value={value} onChange={onChange} />;
    default:
      return (
        <div className="field">
          <label htmlFor={id}>{field.label}</label>
          <input id={id} value={typeof value === "string" ? value : ""} onChange={(e) => onChange(e.target.value === "" && field.key !== "text" && field.key !== "target" ? undefined : e.target.value)} />
        </div>
      );
  }
}

/** A comma-separated list, kept as typed while the user types. */
function ListInput({ id, label, value, onChange }: { id: string; label: string; value: unknown; onChange: (v: unknown) => void }) {
  const [text, setText] = useState(Array.isArray(value) ? value.join(", ") : "");
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        value={text}
        onChange={(e) => {
          setText(e.target.value);
          onChange(e.target.value.split(",").map((s) => s.trim()).filter(Boolean));
        }}
      />
    </div>
  );
}

/** Raw JSON for the parameters that have no form yet. */
function JsonInput({ id, label, value, onChange }: { id: string; label: string; value: unknown; onChange: (v: unknown) => void }) {
  const [text, setText] = useState(value === undefined ? "" : JSON.stringify(value, null, 2));
  const [bad, setBad] = useState(false);
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <textarea
        id={id}
        rows={4}
        value={text}
        aria-invalid={bad}
        onChange={(e) => {
          setText(e.target.value);
          try {
            onChange(e.target.value.trim() === "" ? undefined : JSON.parse(e.target.value));
            setBad(false);
          } catch {
            setBad(true);
          }
        }}
      />
      {bad && <p className="error">Not valid JSON yet; the last valid value is kept.</p>}
    </div>
  );
}
