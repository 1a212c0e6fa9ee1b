// What the canvas knows about each node type of the flow model
// (flows/src/model.rs): its defaults, its outcomes and its form fields.
// The API stays the judge: every draft is validated by POST /validate.

import type { FlowNodeDoc } from "./api";

export type Params = Record<string, unknown>;

export interface Field {
  key: string;
  label: string;
  kind: "text" | "number" | "select" | "list" | "prompt" | "json";
  options?: string[];
}

export interface NodeTypeInfo {
  type: string;
  title: string;
  hint: string;
  defaults: () => Params;
  fields: Field[];
}

export const NODE_TYPES: NodeTypeInfo[] = [
  {
    type: "say",
    title: "Say",
    hint: "Speak text to the caller",
    defaults: () => ({ text: "" }),
    fields: [
      { key: "text", label: "Text", kind: "text" },
      { key: "voice", label: "Voice", kind: "text" },
      { key: "language", label: "Language", kind: "text" },
    ],
  },
  {
    type: "play",
    title: "Play",
    hint: "Play an audio file",
    defaults: () => ({ audio: "" }),
    fields: [{ key: "audio", label: "Audio file or URL", kind: "text" }],
  },
  {
    type: "menu",
    title: "Menu",
    hint: "Ask for a digit choice",
    defaults: () => ({ prompt: { say: "" }, options: [] }),
    fields: [
      { key: "prompt", label: "Prompt (spoken)", kind: "prompt" },
      { key: "options", label: "Options (digits, comma separated)", kind: "list" },
      { key: "timeout_ms", label: "Timeout (ms)", kind: "number" },
      { key: "max_retries", label: "Retries", kind: "number" },
    ],
  },
  {
    type: "gather",
    title: "Gather",
    hint: "Collect digits into a variable",
    defaults: () => ({ variable: "digits", max_digits: 4 }),
    fields: [
      { key: "prompt", label: "Prompt (spoken)", kind: "prompt" },
      { key: "variable", label: "Variable", kind: "text" },
      { key: "max_digits", label: "Max digits", kind: "number" },
      { key: "min_digits", label: "Min digits", kind: "number" },
    ],
  },
  {
    type: "http",
    title: "HTTP",
    hint: "Call a web service",
    defaults: () => ({ method: "GET", url: "" }),
    fields: [
      { key: "method", label: "Method", kind: "select", options: ["GET", "POST", "PUT", "PATCH", "DELETE"] },
      { key: "url", label: "URL", kind: "text" },
      { key: "timeout_ms", label: "Timeout (ms)", kind: "number" },
      { key: "map", label: "Map (JSON)", kind: "json" },
    ],
  },
  {
    type: "condition",
    title: "Condition",
    hint: "Branch on an expression",
    defaults: () => ({ branches: [] }),
    fields: [{ key: "branches", label: "Branches (JSON: [{outcome, when}])", kind: "json" }],
  },
  {
    type: "set",
    title: "Set",
    hint: "Set variables",
    defaults: () => ({ values: {} }),
    fields: [{ key: "values", label: "Values (JSON)", kind: "json" }],
  },
  {
    type: "ai",
    title: "AI",
    hint: "Understand the caller with the assistant",
    defaults: () => ({ intents: [] }),
    fields: [
      { key: "greeting", label: "Greeting", kind: "text" },
      { key: "intents", label: "Intents (JSON: [{name, examples}])", kind: "json" },
      { key: "confidence_threshold", label: "Confidence threshold", kind: "number" },
      { key: "escalate_intents", label: "Escalate on intents (comma separated)", kind: "list" },
    ],
  },
  {
    type: "transfer",
    title: "Transfer",
    hint: "Send the call to an agent",
    defaults: () => ({ mode: "blind", target: "" }),
    fields: [
      { key: "mode", label: "Mode", kind: "select", options: ["blind", "bridged"] },
      { key: "target", label: "Target (sip: or tel:)", kind: "text" },
      { key: "timeout_ms", label: "Timeout (ms)", kind: "number" },
    ],
  },
  {
    type: "hangup",
    title: "Hang up",
    hint: "End the call",
    defaults: () => ({}),
    fields: [{ key: "reason", label: "Reason", kind: "text" }],
  },
];

export function typeInfo(type: string): NodeTypeInfo | undefined {
  return NODE_TYPES.find((t) => t.type === type);
}

/** The outcomes a node can take, mirroring `NodeKind::outcomes`. */
export function outcomes(type: string, p: Params): string[] {
  const names = (v: unknown, key: string): string[] =>
    Array.isArray(v) ? v.map((x) => (typeof x === "string" ? x : String((x as Params)?.[key] ?? ""))) : [];
  switch (type) {
    case "play":
    case "say":
    case "set":
      return ["next"];
    case "gather":
      return ["next", "no_input"];
    case "menu":
      return [...names(p.options, ""), "no_input", "no_match"];
    case "http":
      return ["ok", "error", "timeout"];
    case "condition":
      return [...names(p.branches, "outcome"), "else"];
    case "ai":
      return [...names(p.intents, "name"), "escalate", "fallback_dtmf", "fallback_agent", "error"];
    case "transfer":
      return ["failed", "no_answer"];
    default:
      return [];
  }
}

/** Splits a stored node into its parameters and the canvas fields. */
export function paramsOf(node: FlowNodeDoc): Params {
  const { type: _t, position: _p, label: _l, edges: _e, ...params } = node;
  return params;
}
