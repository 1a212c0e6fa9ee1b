import { useCallback, useEffect, useMemo, useRef, useState, type DragEvent } from "react";
import {
  Background,
  Controls,
  ReactFlow,
  ReactFlowProvider,
  addEdge,
  useEdgesState,
  useNodesState,
  useReactFlow,
  type Connection,
  type Edge,
} from "@xyflow/react";
import { api, ApiError, type FlowDoc, type Issue } from "./api";
import { FlowNodeView, type FlowNode } from "./FlowNode";
import { NODE_TYPES, outcomes, paramsOf, typeInfo } from "./nodeTypes";
import { PropertyPanel } from "./PropertyPanel";
import { Versions } from "./Versions";

const nodeTypes = { flow: FlowNodeView };
const DRAG_TYPE = "application/voxgate-node";
const AUTOSAVE_MS = 800;

type Status = { kind: "idle" | "saving" | "saved" | "error"; text: string };

export function Editor(props: { tenant: string; flowId: string }) {
  return (
    <ReactFlowProvider>
      <EditorInner {...props} />
    </ReactFlowProvider>
  );
}

function fromDoc(doc: FlowDoc): { nodes: FlowNode[]; edges: Edge[] } {
  const ids = Object.keys(doc.nodes ?? {});
  const nodes: FlowNode[] = ids.map((id, i) => {
    const n = doc.nodes[id];
    return {
      id,
      type: "flow",
      position: n.position ?? { x: 60 + 260 * (i % 4), y: 60 + 180 * Math.floor(i / 4) },
      data: { nodeType: n.type, params: paramsOf(n), label: n.label, entry: doc.entry === id, errors: [] },
    };
  });
  const edges: Edge[] = ids.flatMap((id) =>
    Object.entries(doc.nodes[id].edges ?? {}).map(([outcome, target]) => edgeOf(id, outcome, target)),
  );
  return { nodes, edges };
}

function edgeOf(source: string, outcome: string, target: string): Edge {
  return { id: `${source}:${outcome}`, source, sourceHandle: outcome, target, label: outcome };
}

function toDoc(flowId: string, name: string, entry: string, nodes: FlowNode[], edges: Edge[]): FlowDoc {
  const doc: FlowDoc = { id: flowId, name, entry, nodes: {} };
  for (const n of nodes) {
    const out: Record<string, string> = {};
    for (const e of edges) if (e.source === n.id && e.sourceHandle) out[e.sourceHandle] = e.target;
    doc.nodes[n.id] = {
      type: n.data.nodeType,
      ...n.data.params,
      position: { x: Math.round(n.position.x), y: Math.round(n.position.y) },
      ...(n.data.label ? { label: n.data.label } : {}),
      ...(Object.keys(out).length ? { edges: out } : {}),
    };
  }
  return doc;
}

function EditorInner({ tenant, flowId }: { tenant: string; flowId: string }) {
  const [nodes, setNodes, onNodesChange] = useNodesState<FlowNode>([]);
  const [edges, setEdges, onEdgesChange] = useEdgesState<Edge>([]);
  const [name, setName] = useState(flowId);
  const [entry, setEntry] = useState("");
  const [loaded, setLoaded] = useState(false);
  const [fitOnLoad, setFitOnLoad] = useState(false);
  const [status, setStatus] = useState<Status>({ kind: "idle", text: "" });
  const [conflict, setConflict] = useState(false);
  const [issues, setIssues] = useState<Issue[]>([]);
  const [versionsTick, setVersionsTick] = useState(0);
  const etag = useRef("");
  const lastSaved = useRef("");
  const saving = useRef<Promise<void>>(Promise.resolve());
  const conflictRef = useRef(false);
  conflictRef.current = conflict;
  const { screenToFlowPosition } = useReactFlow();

  const doc = useMemo(() => toDoc(flowId, name, entry, nodes, edges), [flowId, name, entry, nodes, edges]);
  const docJson = useMemo(() => JSON.stringify(doc), [doc]);
  const docRef = useRef(doc);
  docRef.current = doc;

  const showIssues = useCallback(
    (list: Issue[]) => {
      setIssues(list);
      setNodes((ns) =>
        ns.map((n) => {
          const errors = list.filter((i) => i.node === n.id).map((i) => i.message);
          return errors.join("\n") === n.data.errors.join("\n") ? n : { ...n, data: { ...n.data, errors } };
        }),
      );
    },
    [setNodes],
  );

  const load = useCallback(async () => {
    const d = await api.draft(tenant, flowId);
    const { nodes, edges } = fromDoc(d.document);
    etag.current = d.etag;
    setNodes(nodes);
    setEdges(edges);
    setName(d.document.name ?? flowId);
    setEntry(d.document.entry ?? "");
    lastSaved.current = JSON.stringify(toDoc(flowId, d.document.name ?? flowId, d.document.entry ?? "", nodes, edges));
    setConflict(false);
    setFitOnLoad(nodes.length > 0);
    setLoaded(true);
    setStatus({ kind: "idle", text: "" });
    if (nodes.length > 0) showIssues((await api.validate(tenant, flowId, d.document)).errors);
  }, [tenant, flowId, setNodes, setEdges, showIssues]);

  useEffect(() => {
    load().catch((e) => setStatus({ kind: "error", text: String(e) }));
  }, [load]);

  /** Saves the draft when it changed, then asks the API what is wrong with it. */
  const save = useCallback((): Promise<void> => {
    saving.current = saving.current.then(async () => {
      const current = docRef.current;
      const json = JSON.stringify(current);
      if (json === lastSaved.current || conflictRef.current) return;
      setStatus({ kind: "saving", text: "Saving…" });
      try {
        const d = await api.saveDraft(tenant, flowId, current, etag.current);
        etag.current = d.etag;
        lastSaved.current = json;
        const report = await api.validate(tenant, flowId, current);
        showIssues(report.errors);
        setStatus({ kind: "saved", text: "Draft saved" });
      } catch (e) {
        if (e instanceof ApiError && e.status === 412) {
          conflictRef.current = true;
          setConflict(true);
          setStatus({ kind: "error", text: "Not saved" });
        } else {
          setStatus({ kind: "error", text: `Not saved: ${e instanceof Error ? e.message : String(e)}` });
        }
      }
    });
    return saving.current;
  }, [tenant, flowId, showIssues]);
  // Autosave: a pause in editing saves the draft.
  useEffect(() => {
    if (!loaded || docJson === lastSaved.current) return;
    const t = setTimeout(() => void save(), AUTOSAVE_MS);
    return () => clearTimeout(t);
  }, [docJson, loaded, save]);

  const addNode = useCallback(
    (type: string, position: { x: number; y: number }) => {
      const info = typeInfo(type);
      if (!info) return;
      const taken = new Set(nodes.map((x) => x.id));
      let n = 1;
      while (taken.has(`${type}_${n}`)) n++;
      const id = `${type}_${n}`;
      // The first node a flow gets is where its calls start.
      if (!entry) setEntry(id);
      const node: FlowNode = {
        id,
        type: "flow",
        position,
        selected: true,
        data: { nodeType: type, params: info.defaults(), entry: false, errors: [] },
      };
      setNodes((ns) => [...ns.map((x) => (x.selected ? { ...x, selected: false } : x)), node]);
    },
    [nodes, entry, setNodes],
  );

  const onDrop = useCallback(
    (e: DragEvent) => {
      e.preventDefault();
      const type = e.dataTransfer.getData(DRAG_TYPE);
      if (type) addNode(type, screenToFlowPosition({ x: e.clientX, y: e.clientY }));
    },
    [addNode, screenToFlowPosition],
  );

  const onConnect = useCallback(
    (c: Connection) => {
      if (!c.sourceHandle || !c.target) return;
      // One edge per outcome: a new one replaces the old.
      setEdges((es) => addEdge(edgeOf(c.source, c.sourceHandle!, c.target), es.filter((e) => e.id !== `${c.source}:${c.sourceHandle}`)));
    },
    [setEdges],
  );

  const shown = useMemo(
    () => nodes.map((n) => (n.data.entry === (n.id === entry) ? n : { ...n, data: { ...n.data, entry: n.id === entry } })),
    [nodes, entry],
  );
  // "Draft saved" only while what is on screen is what was saved.
  const dirty = loaded && docJson !== lastSaved.current && status.kind !== "saving" && status.kind !== "error";
  const shownStatus: Status = dirty ? { kind: "idle", text: "Unsaved changes" } : status;
  const selected = nodes.filter((n) => n.selected);
  const general = issues.filter((i) => !i.node);

  const setEdgeTarget = (source: string, outcome: string, target: string) =>
    setEdges((es) => {
      const rest = es.filter((e) => e.id !== `${source}:${outcome}`);
      return target ? [...rest, edgeOf(source, outcome, target)] : rest;
    });

  const publish = async (comment: string) => {
    await save();
    if (conflictRef.current) return;
    try {
      const p = await api.publish(tenant, flowId, comment, etag.current);
      setStatus({ kind: "saved", text: `Published version ${p.version}` });
      showIssues([]);
      setVersionsTick((t) => t + 1);
    } catch (e) {
      if (e instanceof ApiError && e.errors.length) showIssues(e.errors);
      if (e instanceof ApiError && e.status === 412) setConflict(true);
      setStatus({ kind: "error", text: `Not published: ${e instanceof Error ? e.message : String(e)}` });
    }
  };

  return (
    <div className="editor">
      <aside className="palette" aria-label="Node palette">
        <h2>Nodes</h2>
        <p className="hint">Drag onto the canvas, or press Enter to add.</p>
        {NODE_TYPES.map((t) => (
          <button
            key={t.type}
            className="palette-item"
            draggable
            data-node-type={t.type}
            title={t.hint}
            onDragStart={(e) => {
              e.dataTransfer.setData(DRAG_TYPE, t.type);
              e.dataTransfer.effectAllowed = "move";
            }}
            onClick={() => addNode(t.type, { x: 80 + 30 * nodes.length, y: 80 + 30 * nodes.length })}
          >
            {t.title}
          </button>
        ))}
      </aside>
      <section className="canvas" aria-label="Flow canvas" onDragOver={(e) => { e.preventDefault(); e.dataTransfer.dropEffect = "move"; }} onDrop={onDrop}>
        <div className="canvas-bar">
          <label>
            Name <input value={name} onChange={(e) => setName(e.target.value)} />
          </label>
          <button onClick={() => void save()}>Save draft</button>
          <span className={`status ${shownStatus.kind}`} role="status" data-testid="status">{shownStatus.text}</span>
        </div>
        {conflict && (
          <div className="conflict" role="alert">
            Someone else changed this flow. Your last change is not saved.{" "}
            <button onClick={() => void load()}>Reload the flow</button>
          </div>
        )}
        <div className="flow-wrap">
          {loaded && <ReactFlow
            nodes={shown}
            edges={edges}
            nodeTypes={nodeTypes}
            onNodesChange={onNodesChange}
            onEdgesChange={onEdgesChange}
            onConnect={onConnect}
            fitView={fitOnLoad}
            fitViewOptions={{ maxZoom: 1 }}
            minZoom={0.1}
            proOptions={{ hideAttribution: true }}
          >
            <Background />
            <Controls />
          </ReactFlow>}
          {loaded && nodes.length === 0 && <p className="canvas-empty">Drag a node here from the palette.</p>}
        </div>
        {general.length > 0 && (
          <ul className="general-errors" role="alert">
            {general.map((i, k) => (
              <li key={k}>{i.message}</li>
            ))}
          </ul>
        )}
      </section>
      <aside className="side" aria-label="Properties and versions">
        {selected.length === 1 ? (
          <PropertyPanel
            key={selected[0].id}
            node={selected[0]}
            isEntry={selected[0].id === entry}
            nodeIds={nodes.map((n) => n.id)}
            outcomes={outcomes(selected[0].data.nodeType, selected[0].data.params)}
            edges={edges.filter((e) => e.source === selected[0].id)}
            onChange={(data) => setNodes((ns) => ns.map((n) => (n.id === selected[0].id ? { ...n, data: { ...n.data, ...data } } : n)))}
            onEntry={() => setEntry(selected[0].id)}
            onEdge={(outcome, target) => setEdgeTarget(selected[0].id, outcome, target)}
            onDelete={() => {
              const id = selected[0].id;
              setNodes((ns) => ns.filter((n) => n.id !== id));
              setEdges((es) => es.filter((e) => e.source !== id && e.target !== id));
            }}
          />
        ) : (
          <p className="hint">Select a node to edit its properties.</p>
        )}
        <Versions tenant={tenant} flowId={flowId} tick={versionsTick} onPublish={publish} issues={issues.length} />
      </aside>
    </div>
  );
}
