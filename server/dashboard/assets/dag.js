// Draws a DAG as SVG: nodes in layers by their longest path from a root (left to right), in
// each layer ordered by the mean position of their parents so that edges cross little. Small
// workflows (tens of steps, a few hundred with batches) need nothing cleverer.

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 168;
const NODE_H = 46;
const GAP_X = 56;
const GAP_Y = 18;
const PAD = 12;

/**
 * @param {{id: string, label: string, sublabel?: string, state?: string, kind?: string}[]} nodes
 * @param {{from: string, to: string}[]} edges
 * @returns {Map<string, {x: number, y: number, layer: number}>}
 */
export function layout(nodes, edges) {
  const parents = new Map(nodes.map((n) => [n.id, []]));
  for (const e of edges) if (parents.has(e.to) && parents.has(e.from)) parents.get(e.to).push(e.from);
  const layer = new Map();
  const visiting = new Set();
  const depth = (id) => {
    if (layer.has(id)) return layer.get(id);
    if (visiting.has(id)) return 0; // a cycle cannot come from the engine; draw it anyway
    visiting.add(id);
    const d = parents.get(id).reduce((m, p) => Math.max(m, depth(p) + 1), 0);
    visiting.delete(id);
    layer.set(id, d);
    return d;
  };
  for (const n of nodes) depth(n.id);
  const layers = [];
  for (const n of nodes) (layers[layer.get(n.id)] ??= []).push(n.id);
  const row = new Map();
  const positions = new Map();
  layers.forEach((ids, l) => {
    const keyed = ids.map((id, i) => {
      const ps = parents.get(id).filter((p) => row.has(p));
      const key = ps.length ? ps.reduce((s, p) => s + row.get(p), 0) / ps.length : i;
      return { id, key, i };
    });
    keyed.sort((a, b) => a.key - b.key || a.i - b.i);
    keyed.forEach(({ id }, r) => {
      row.set(id, r);
      positions.set(id, { x: PAD + l * (NODE_W + GAP_X), y: PAD + r * (NODE_H + GAP_Y), layer: l });
    });
  });
  return positions;
}

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * Renders the graph into an <svg> whose nodes are focusable buttons: `onSelect(id)` on click,
 * Enter or Space. Each node carries data-step and data-state so tests and styles can find it.
 */
export function renderDag(nodes, edges, { onSelect, label = "Workflow graph", selected } = {}) {
  const positions = layout(nodes, edges);
  let width = 0;
  let height = 0;
  for (const p of positions.values()) {
    width = Math.max(width, p.x + NODE_W + PAD);
    height = Math.max(height, p.y + NODE_H + PAD);
  }
  const svg = el("svg", {
    class: "dag",
    viewBox: `0 0 ${Math.max(width, 200)} ${Math.max(height, 60)}`,
    width: Math.max(width, 200),
    height: Math.max(height, 60),
    role: "group",
    "aria-label": label,
  });
  const defs = el("defs");
  const marker = el("marker", {
    id: "arrow",
    viewBox: "0 0 10 10",
    refX: 10,
    refY: 5,
    markerWidth: 7,
    markerHeight: 7,
    orient: "auto-start-reverse",
  });
  marker.append(el("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }));
  defs.append(marker);
  svg.append(defs);
  const edgeGroup = el("g", { class: "edges", "aria-hidden": "true" });
  for (const e of edges) {
    const a = positions.get(e.from);
    const b = positions.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2;
    const x2 = b.x;
    const y2 = b.y + NODE_H / 2;
    const mid = (x1 + x2) / 2;
    edgeGroup.append(
      el("path", { d: `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`, "marker-end": "url(#arrow)" }),
    );
  }
  svg.append(edgeGroup);
  for (const n of nodes) {
    const p = positions.get(n.id);
    const g = el("g", {
      class: `node state-${n.state ?? "none"}${n.kind ? ` kind-${n.kind}` : ""}${selected === n.id ? " selected" : ""}`,
      transform: `translate(${p.x} ${p.y})`,
      "data-step": n.id,
      "data-state": n.state ?? "",
    });
    if (onSelect) {
      g.setAttribute("tabindex", "0");
      g.setAttribute("role", "button");
      // Its accessible name is its visible text (name, state, type), nothing else.
      g.addEventListener("click", () => onSelect(n.id));
      g.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          onSelect(n.id);
        }
      });
    }
    g.append(el("rect", { width: NODE_W, height: NODE_H, rx: 6 }));
    g.append(el("text", { x: 10, y: 19, class: "label" }, clip(n.label, 22)));
    if (n.sublabel) g.append(el("text", { x: 10, y: 36, class: "sublabel" }, clip(n.sublabel, n.kind ? 12 : 26)));
    if (n.kind) g.append(el("text", { x: NODE_W - 8, y: 36, class: "kind", "text-anchor": "end" }, kindMark(n.kind)));
    const title = el("title", {}, `${n.label}${n.state ? ` — ${n.state}` : ""}${n.kind ? ` (${n.kind})` : ""}`);
    g.append(title);
    svg.append(g);
  }
  return svg;
}

/** A short mark for a step type, beside its name. */
export function kindMark(kind) {
  return (
    {
      decision: "◆ decision",
      batchable: "▤ batch",
      batch_worker: "▥ worker",
      deferred_convergence: "⋈ converge",
    }[kind] ?? kind
  );
}
