import { Handle, Position, type Node, type NodeProps } from "@xyflow/react";
import { outcomes, typeInfo, type Params } from "./nodeTypes";

export interface NodeData extends Record<string, unknown> {
  nodeType: string;
  params: Params;
  label?: string;
  entry: boolean;
  errors: string[];
}

export type FlowNode = Node<NodeData, "flow">;

/** One flow node: its type, name, the API's errors about it, and a source
 *  handle per outcome so edges are drawn from the outcome they take. */
export function FlowNodeView({ id, data, selected }: NodeProps<FlowNode>) {
  const info = typeInfo(data.nodeType);
  const outs = outcomes(data.nodeType, data.params);
  const cls = ["flow-node", selected ? "selected" : "", data.errors.length ? "has-errors" : ""].join(" ");
  return (
    <div className={cls} data-node-id={id} aria-label={`${info?.title ?? data.nodeType} node ${data.label || id}`}>
      <Handle type="target" position={Position.Left} className="in-handle" data-handle="in" />
      <div className="node-type">
        {info?.title ?? data.nodeType}
        {data.entry && <span className="badge">start</span>}
      </div>
      <div className="node-name">{data.label || id}</div>
      {data.errors.length > 0 && (
        <ul className="node-errors" data-testid={`errors-${id}`}>
          {data.errors.map((e, i) => (
            <li key={i}>{e}</li>
          ))}
        </ul>
      )}
      {outs.length > 0 && (
        <ul className="outcomes">
          {outs.map((o) => (
            <li key={o} className="outcome">
              <span>{o}</span>
              <Handle
                type="source"
                position={Position.Right}
                id={o}
                className="out-handle"
                data-outcome={o}
                aria-label={`${o} outcome of ${id}`}
              />
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
